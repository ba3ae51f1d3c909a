//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) a load balancer sends before
//! the client's bytes: a pure parser over the bytes read so far. Never panics, whatever it is
//! given; every index is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::errors::ProxyHeaderError;

/// The longest version 1 header, CRLF included (the spec's bound).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a version 2 header; its last two bytes give the length of the rest.
pub const V2_HEADER_LEN: usize = 16;
/// What a version 2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";

/// Which versions `--proxy-protocol` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyVersions {
    V1,
    V2,
    /// Either, told apart by the first bytes.
    Any,
}

/// What a complete header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxiedAddresses {
    /// The client's address and the address it connected to, as the proxy saw them.
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// No addresses to use (v2 LOCAL, v2 UNSPEC or AF_UNIX, v1 UNKNOWN): the real peer stays.
    Keep,
}

/// The outcome of parsing the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte so far belongs to a header that is not complete yet. `total` is its full length
    /// once known (a version 2 header after its first 16 bytes).
    Incomplete { total: Option<usize> },
    /// The header is the first `len` bytes; what follows is the client's.
    Complete {
        len: usize,
        addresses: ProxiedAddresses,
    },
}

/// Parse a PROXY header at the start of `buf`, accepting `versions`.
pub fn parse(buf: &[u8], versions: ProxyVersions) -> Result<Parsed, ProxyHeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete { total: None });
    };
    let is_v2 = first == V2_SIGNATURE[0];
    match (is_v2, versions) {
        (true, ProxyVersions::V2 | ProxyVersions::Any) => parse_v2(buf),
        (false, ProxyVersions::V1 | ProxyVersions::Any) => parse_v1(buf),
        (true, ProxyVersions::V1) if starts_like(buf, V2_SIGNATURE) => {
            Err(ProxyHeaderError::WrongVersion("2"))
        }
        (false, ProxyVersions::V2) if starts_like(buf, V1_PREFIX) => {
            Err(ProxyHeaderError::WrongVersion("1"))
        }
        _ => Err(ProxyHeaderError::Missing),
    }
}

/// Whether `buf` starts a PROXY header of either version: `None` while its bytes are a prefix
/// of both a header and something else.
pub fn starts_header(buf: &[u8]) -> Option<bool> {
    if buf.is_empty() {
        return None;
    }
    for signature in [V1_PREFIX, V2_SIGNATURE.as_slice()] {
        let seen = buf.len().min(signature.len());
        if buf.get(..seen) == signature.get(..seen) {
            return (seen == signature.len()).then_some(true);
        }
    }
    Some(false)
}

/// Whether the bytes seen so far agree with `signature` (as far as both go).
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let seen = buf.len().min(signature.len());
    buf.get(..seen) == signature.get(..seen)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if !starts_like(buf, V1_PREFIX) {
        return Err(ProxyHeaderError::Missing);
    }
    let window = buf.get(..buf.len().min(V1_MAX_LEN)).unwrap_or_default();
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if let Some(bad) = window.iter().find(|b| !b.is_ascii_graphic() && **b != b' ') {
            return Err(ProxyHeaderError::Malformed(if *bad == b'\n' {
                "v1 line ends without CR"
            } else {
                "v1 header has a control or non-ASCII byte"
            }));
        }
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyHeaderError::TooLong);
        }
        return Ok(Parsed::Incomplete { total: None });
    };
    match window.get(cr + 1) {
        None if buf.len() < V1_MAX_LEN => return Ok(Parsed::Incomplete { total: None }),
        Some(b'\n') => {}
        _ => return Err(ProxyHeaderError::Malformed("v1 line ends without CRLF")),
    }
    let line = window.get(..cr).unwrap_or_default();
    let text = std::str::from_utf8(line)
        .map_err(|_| ProxyHeaderError::Malformed("v1 header is not ASCII"))?;
    let addresses = parse_v1_line(text)?;
    Ok(Parsed::Complete {
        len: cr + 2,
        addresses,
    })
}

/// `PROXY TCP4 src dst sport dport`, `PROXY TCP6 ...` or `PROXY UNKNOWN...` (CRLF removed).
fn parse_v1_line(line: &str) -> Result<ProxiedAddresses, ProxyHeaderError> {
    let rest = line
        .strip_prefix("PROXY ")
        .ok_or(ProxyHeaderError::Missing)?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Ok(ProxiedAddresses::Keep);
    }
    let fields: Vec<&str> = rest.split(' ').collect();
    let [family, source, destination, source_port, destination_port] = fields.as_slice() else {
        return Err(ProxyHeaderError::Malformed(
            "v1 header needs family, two addresses and two ports",
        ));
    };
    let (source, destination) = match *family {
        "TCP4" => (
            IpAddr::V4(v1_address::<Ipv4Addr>(source)?),
            IpAddr::V4(v1_address::<Ipv4Addr>(destination)?),
        ),
        "TCP6" => (
            IpAddr::V6(v1_address::<Ipv6Addr>(source)?),
            IpAddr::V6(v1_address::<Ipv6Addr>(destination)?),
        ),
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v1 family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    Ok(ProxiedAddresses::Tcp {
        source: SocketAddr::new(source, v1_port(source_port)?),
        destination: SocketAddr::new(destination, v1_port(destination_port)?),
    })
}

fn v1_address<A: std::str::FromStr>(text: &str) -> Result<A, ProxyHeaderError> {
    text.parse()
        .map_err(|_| ProxyHeaderError::Malformed("v1 address does not match its family"))
}

/// A port: 1 to 5 decimal digits, at most 65535.
fn v1_port(text: &str) -> Result<u16, ProxyHeaderError> {
    let digits_only =
        !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match digits_only {
        true => text
            .parse()
            .map_err(|_| ProxyHeaderError::Malformed("v1 port above 65535")),
        false => Err(ProxyHeaderError::Malformed("v1 port is not a number")),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    if !starts_like(buf, V2_SIGNATURE) {
        return Err(ProxyHeaderError::Missing);
    }
    let Some(fixed) = buf.get(..V2_HEADER_LEN) else {
        return Ok(Parsed::Incomplete { total: None });
    };
    let [_, _, _, _, _, _, _, _, _, _, _, _, version_command, family_protocol, len_hi, len_lo] =
        *fixed
    else {
        return Ok(Parsed::Incomplete { total: None });
    };
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version nibble is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v2 command is not LOCAL or PROXY",
            ))
        }
    };
    let total = V2_HEADER_LEN + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let Some(block) = buf.get(V2_HEADER_LEN..total) else {
        return Ok(Parsed::Incomplete { total: Some(total) });
    };
    let family = family_protocol >> 4;
    let protocol = family_protocol & 0x0f;
    if family > 3 || protocol > 2 {
        return Err(ProxyHeaderError::Malformed("v2 family or protocol unknown"));
    }
    // LOCAL: the proxy's own connection (a health check); the addresses, if any, are ignored.
    if local {
        return Ok(Parsed::Complete {
            len: total,
            addresses: ProxiedAddresses::Keep,
        });
    }
    let addresses = match (family, protocol) {
        // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes; TLVs may follow (skipped).
        (1, 1) => {
            let Some(&[s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1]) = block.get(..12)
            else {
                return Err(ProxyHeaderError::Malformed(
                    "v2 TCP4 address block too short",
                ));
            };
            ProxiedAddresses::Tcp {
                source: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
                    u16::from_be_bytes([sp0, sp1]),
                ),
                destination: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)),
                    u16::from_be_bytes([dp0, dp1]),
                ),
            }
        }
        // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
        (2, 1) => {
            let (Some(source), Some(destination), Some(&[sp0, sp1, dp0, dp1])) = (
                block.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                block.get(16..32).and_then(|b| <[u8; 16]>::try_from(b).ok()),
                block.get(32..36),
            ) else {
                return Err(ProxyHeaderError::Malformed(
                    "v2 TCP6 address block too short",
                ));
            };
            ProxiedAddresses::Tcp {
                source: SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(source)),
                    u16::from_be_bytes([sp0, sp1]),
                ),
                destination: SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(destination)),
                    u16::from_be_bytes([dp0, dp1]),
                ),
            }
        }
        // UNSPEC, AF_UNIX, or a datagram protocol: nothing an HTTP scope can carry; the spec
        // lets the receiver keep the real endpoints.
        _ => ProxiedAddresses::Keep,
    };
    Ok(Parsed::Complete {
        len: total,
        addresses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], versions: ProxyVersions) -> (usize, ProxiedAddresses) {
        match parse(buf, versions) {
            Ok(Parsed::Complete { len, addresses }) => (len, addresses),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn tcp(source: &str, destination: &str) -> ProxiedAddresses {
        ProxiedAddresses::Tcp {
            source: source.parse().unwrap(),           // ok: test-only
            destination: destination.parse().unwrap(), // ok: test-only
        }
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes()); // ok: test-only
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let header = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            complete(header, ProxyVersions::V1),
            (43, tcp("203.0.113.7:51234", "10.0.0.2:443"))
        );
        let header = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 8000\r\n";
        assert_eq!(
            complete(header, ProxyVersions::Any),
            (
                header.len(),
                tcp("[2001:db8::7]:65535", "[2001:db8::1]:8000")
            )
        );
        assert_eq!(
            complete(b"PROXY UNKNOWN\r\n", ProxyVersions::V1),
            (15, ProxiedAddresses::Keep)
        );
        let unknown = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(
            complete(unknown, ProxyVersions::V1),
            (unknown.len(), ProxiedAddresses::Keep)
        );
    }

    #[test]
    fn v1_prefixes_are_incomplete() {
        let header = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 443\r\n";
        for cut in 0..header.len() {
            assert_eq!(
                parse(&header[..cut], ProxyVersions::V1),
                Ok(Parsed::Incomplete { total: None }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.2 51234\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n",
            b"PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 -1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 +1 2\r\n",
            b"PROXY TCP4 10.0.0.1  10.0.0.2 1 2\r\n",
            b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX",
            b"PROXY TCP4 10.0.0.1\x0010.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 \r\n",
        ] {
            assert!(
                matches!(
                    parse(bad, ProxyVersions::V1),
                    Err(ProxyHeaderError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n", ProxyVersions::V1),
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(
            parse(b"PROXZ", ProxyVersions::Any),
            Err(ProxyHeaderError::Missing)
        );
    }

    #[test]
    fn v1_too_long() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'x');
        assert_eq!(
            parse(&long, ProxyVersions::V1),
            Err(ProxyHeaderError::TooLong)
        );
        // Exactly 107 bytes with the CRLF is allowed.
        long.truncate(V1_MAX_LEN - 2);
        long.extend_from_slice(b"\r\n");
        assert_eq!(
            complete(&long, ProxyVersions::V1),
            (V1_MAX_LEN, ProxiedAddresses::Keep)
        );
        // A CR as the 107th byte with no LF after it can never end in time.
        let mut cr_last = b"PROXY UNKNOWN ".to_vec();
        cr_last.resize(V1_MAX_LEN - 1, b'x');
        cr_last.push(b'\r');
        assert_eq!(
            parse(&cr_last, ProxyVersions::V1),
            Err(ProxyHeaderError::Malformed("v1 line ends without CRLF"))
        );
    }

    #[test]
    fn v2_tcp4_tcp6_local_unspec() {
        let block = [203, 0, 113, 7, 10, 0, 0, 2, 0xc8, 0x22, 0x01, 0xbb];
        let header = v2(1, 0x11, &block);
        assert_eq!(
            complete(&header, ProxyVersions::V2),
            (28, tcp("203.0.113.7:51234", "10.0.0.2:443"))
        );
        let mut block6 = Vec::new();
        block6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets()); // ok: test-only
        block6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()); // ok: test-only
        block6.extend_from_slice(&[0x1f, 0x40, 0x00, 0x50]);
        // A TLV (PP2_TYPE_AUTHORITY) after the addresses is skipped.
        block6.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'b', b'c']);
        let header = v2(1, 0x21, &block6);
        assert_eq!(
            complete(&header, ProxyVersions::Any),
            (header.len(), tcp("[2001:db8::7]:8000", "[2001:db8::1]:80"))
        );
        assert_eq!(
            complete(&v2(0, 0x00, &[]), ProxyVersions::V2),
            (16, ProxiedAddresses::Keep)
        );
        // LOCAL with addresses present still keeps the real peer.
        assert_eq!(
            complete(&v2(0, 0x11, &block), ProxyVersions::V2).1,
            ProxiedAddresses::Keep
        );
        assert_eq!(
            complete(&v2(1, 0x00, &[]), ProxyVersions::V2),
            (16, ProxiedAddresses::Keep)
        );
        assert_eq!(
            complete(&v2(1, 0x31, &[0; 216]), ProxyVersions::V2),
            (232, ProxiedAddresses::Keep)
        );
    }

    #[test]
    fn v2_prefixes_are_incomplete_and_report_the_total() {
        let header = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        for cut in 0..V2_HEADER_LEN {
            assert_eq!(
                parse(&header[..cut], ProxyVersions::V2),
                Ok(Parsed::Incomplete { total: None })
            );
        }
        for cut in V2_HEADER_LEN..header.len() {
            assert_eq!(
                parse(&header[..cut], ProxyVersions::V2),
                Ok(Parsed::Incomplete { total: Some(28) })
            );
        }
    }

    #[test]
    fn v2_malformed() {
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        let mut bad_command = v2(1, 0x11, &[0; 12]);
        bad_command[12] = 0x22;
        for bad in [
            bad_version,
            bad_command,
            v2(1, 0x11, &[0; 11]),
            v2(1, 0x21, &[0; 35]),
            v2(1, 0x41, &[0; 12]),
            v2(1, 0x13, &[0; 12]),
        ] {
            assert!(
                matches!(
                    parse(&bad, ProxyVersions::V2),
                    Err(ProxyHeaderError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIX", ProxyVersions::V2),
            Err(ProxyHeaderError::Missing)
        );
    }

    #[test]
    fn versions_not_accepted() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", ProxyVersions::V2),
            Err(ProxyHeaderError::WrongVersion("1"))
        );
        assert_eq!(
            parse(&v2(0, 0, &[]), ProxyVersions::V1),
            Err(ProxyHeaderError::WrongVersion("2"))
        );
        assert_eq!(
            parse(b"\x16\x03\x01", ProxyVersions::V2),
            Err(ProxyHeaderError::Missing)
        );
    }

    #[test]
    fn starts_header_decides_as_soon_as_it_can() {
        assert_eq!(starts_header(b""), None);
        assert_eq!(starts_header(b"GET /"), Some(false));
        assert_eq!(starts_header(b"PRO"), None);
        assert_eq!(starts_header(b"PROP"), Some(false));
        assert_eq!(starts_header(b"PROXY "), Some(true));
        assert_eq!(starts_header(b"\r\n\r\n"), None);
        assert_eq!(starts_header(b"\r\n\r\n\0\r\nQUIT\n"), Some(true));
        assert_eq!(starts_header(b"\x16\x03"), Some(false));
    }

    /// Any bytes at all: an answer, never a panic; a complete header is never longer than given.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: [&[u8]; 3] = [b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", V2_SIGNATURE, b""];
        for round in 0..200_000 {
            let mut buf = seeds[round % 3].to_vec();
            let extra = (next() % 64) as usize;
            for _ in 0..extra {
                buf.push(next() as u8);
            }
            // Mutate a few bytes of the seed too.
            for _ in 0..(next() % 3) {
                if !buf.is_empty() {
                    let at = (next() as usize) % buf.len();
                    buf[at] = next() as u8;
                }
            }
            buf.truncate((next() as usize) % (buf.len() + 1));
            for versions in [ProxyVersions::V1, ProxyVersions::V2, ProxyVersions::Any] {
                if let Ok(Parsed::Complete { len, .. }) = parse(&buf, versions) {
                    assert!(len <= buf.len());
                }
            }
            let _ = starts_header(&buf);
        }
    }
}
