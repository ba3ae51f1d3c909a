//! Percent-encoding of request paths as Python's `urllib.parse` does it: `unquote` for the
//! scope's `path`, `quote` for the access log's request line.

use std::borrow::Cow;

/// Percent-decode a request path, as `urllib.parse.unquote` does on the bytes level.
/// Malformed escapes are kept literally.
pub fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(hi), Some(lo)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `urllib.parse.quote(text)` (safe `/`): every byte of the UTF-8 text outside letters,
/// digits, `_.-~` and `/` as `%XX` (upper-case hex), appended to `out`.
pub fn quote_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, quote_into};

    #[test]
    fn decodes_escapes_and_utf8() {
        assert_eq!(percent_decode(b"/a%20b").as_ref(), b"/a b");
        assert_eq!(
            String::from_utf8_lossy(&percent_decode(b"/caf%C3%A9")),
            "/caf\u{e9}"
        );
    }

    #[test]
    fn keeps_malformed_escapes() {
        assert_eq!(percent_decode(b"/100%").as_ref(), b"/100%");
        assert_eq!(percent_decode(b"/%zz").as_ref(), b"/%zz");
        assert_eq!(percent_decode(b"/%4").as_ref(), b"/%4");
        assert_eq!(percent_decode(b"%41%42").as_ref(), b"AB");
    }

    #[test]
    fn borrows_when_nothing_to_decode() {
        assert!(matches!(
            percent_decode(b"/plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn quotes_as_python_does() {
        let mut out = Vec::new();
        quote_into(&mut out, "/a b/caf\u{e9}?x=%~_.-");
        assert_eq!(out, b"/a%20b/caf%C3%A9%3Fx%3D%25~_.-");
    }
}
