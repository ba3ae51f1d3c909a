//! Text the way the Python access log turns bytes and times into it: latin-1 and ASCII-replace
//! decoding, `json.dumps` string escaping, Python's float `repr`, ISO 8601 and `strftime` times,
//! and Basic authentication's user.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `bytes.decode("latin-1")`, appended as UTF-8.
pub fn latin1(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&byte| char::from(byte)));
}

/// `bytes.decode("ascii", "replace")`, appended as UTF-8.
pub fn ascii_replace(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&byte| {
        if byte.is_ascii() {
            char::from(byte)
        } else {
            char::REPLACEMENT_CHARACTER
        }
    }));
}

/// `json.dumps(text)` (with `ensure_ascii`): quoted, escaped, every non-ASCII character as
/// `\uXXXX` (a surrogate pair above U+FFFF).
pub fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            '\u{7f}' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(round(seconds, 6))` for a duration of `micros` microseconds: the shortest
/// form, `0.000123`, `1.5`, `2.0`, or `1e-05` below 1e-4.
pub fn python_seconds(out: &mut String, micros: u128) {
    if micros == 0 {
        out.push_str("0.0");
        return;
    }
    if micros < 100 {
        // Below 1e-4 Python switches to exponent notation: 1e-05, 9.9e-05, 5e-06.
        let digits = micros.to_string();
        let exponent = 6 - digits.len() as i32 + 1;
        let (first, rest) = digits.split_at(1);
        let rest = rest.trim_end_matches('0');
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e-{exponent:02}");
        return;
    }
    let whole = micros / 1_000_000;
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    let _ = write!(
        out,
        "{whole}.{}",
        if fraction.is_empty() { "0" } else { fraction }
    );
}

/// `datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")`.
pub fn iso8601_utc(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    );
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `time.strftime("[%d/%b/%Y:%H:%M:%S %z]")`: gunicorn's `%(t)s`, in local time.
pub fn gunicorn_time(out: &mut String, at: SystemTime) {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let Ok(time) = libc::time_t::try_from(secs) else {
        return;
    };
    let mut buf = [0u8; 64];
    // SAFETY: localtime_r fills `tm` from `time`; strftime writes at most `buf.len()` bytes
    // (including the terminating NUL) into `buf` and returns how many it wrote before the NUL.
    let written = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&time, &mut tm).is_null() {
            return;
        }
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"[%d/%b/%Y:%H:%M:%S %z]".as_ptr(),
            &tm,
        )
    };
    if let Some(text) = buf.get(..written) {
        out.push_str(&String::from_utf8_lossy(text));
    }
}

/// The user of `Authorization: Basic ...` (strict base64, then UTF-8, then the part before
/// `:`), as gunicorn's `%(u)s`.
pub fn basic_auth_user(authorization: &str) -> Option<String> {
    let scheme = authorization.get(..6)?;
    if !scheme.eq_ignore_ascii_case("basic ") {
        return None;
    }
    let decoded = base64_strict(authorization.get(6..)?.trim().as_bytes())?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, _) = decoded.split_once(':')?;
    Some(user.to_owned())
}

/// `base64.b64decode(data, validate=True)`: the standard alphabet, padding only at the end.
fn base64_strict(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let groups = data.len() / 4;
    for (index, group) in data.chunks(4).enumerate() {
        let last = index + 1 == groups;
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &group[..4 - padding] {
            bits = bits << 6 | value(c)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn python_float_repr_of_durations() {
        let repr = |micros| {
            let mut out = String::new();
            python_seconds(&mut out, micros);
            out
        };
        assert_eq!(repr(0), "0.0");
        assert_eq!(repr(10), "1e-05");
        assert_eq!(repr(99), "9.9e-05");
        assert_eq!(repr(5), "5e-06");
        assert_eq!(repr(100), "0.0001");
        assert_eq!(repr(123), "0.000123");
        assert_eq!(repr(1_500_000), "1.5");
        assert_eq!(repr(2_000_000), "2.0");
    }

    #[test]
    fn iso_time_and_json_strings() {
        let mut out = String::new();
        iso8601_utc(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_796_263_211_123),
        );
        assert_eq!(out, "2026-12-03T02:00:11.123+00:00"); // Python: datetime.fromtimestamp(1796263211.123, timezone.utc)
        let mut out = String::new();
        json_string(&mut out, "a\"\\\n\u{1}é😀\u{7f}");
        assert_eq!(out, "\"a\\\"\\\\\\n\\u0001\\u00e9\\ud83d\\ude00\u{7f}\"");
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic_auth_user("Basic dXNlcjpwYXNz").as_deref(),
            Some("user")
        );
        assert_eq!(
            basic_auth_user("basic  dXNlcjpwYXNz ").as_deref(),
            Some("user")
        );
        assert_eq!(basic_auth_user("Basic dXNlcg=="), None); // no colon
        assert_eq!(basic_auth_user("Basic dXNlcjpwYXN"), None); // bad length
        assert_eq!(basic_auth_user("Bearer x"), None);
        assert_eq!(basic_auth_user("Basic Zm86"), Some("fo".to_owned()));
    }
}
