//! The `Host` header check hyper leaves to the server (RFC 9112 §3.2): an HTTP/1.1 request needs
//! exactly one, and it must be `host[:port]`. The app never sees a request that fails it.

use http::{header, Request};

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host, and it must be `host[:port]`.
/// hyper does not check this; the app never sees such a request.
pub fn validate_host<B>(request: &Request<B>) -> Result<(), &'static str> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if request.version() == http::Version::HTTP_11 => Err("missing Host header"),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err("more than one Host header"),
        (Some(host), None) if is_valid_host(host.as_bytes()) => Ok(()),
        (Some(_), None) => Err("invalid Host header"),
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2): an IP literal in brackets or a reg-name made of
/// unreserved, percent-encoded and sub-delim characters, then optional digits.
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                (&value[..0], &value[end + 1..])
            }
            None => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[..0]),
        }
    };
    let host_ok = host.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::validate_host;
    use http::{Request, Version};

    fn request(version: Version, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri("/");
        for host in hosts {
            builder = builder.header("host", *host);
        }
        builder.body(()).expect("valid test request") // ok: test-only input
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        assert!(validate_host(&request(Version::HTTP_11, &["example.com"])).is_ok());
        assert!(validate_host(&request(Version::HTTP_11, &["example.com:8080"])).is_ok());
        assert!(validate_host(&request(Version::HTTP_11, &["[::1]:8000"])).is_ok());
        assert!(validate_host(&request(Version::HTTP_11, &[])).is_err());
        assert!(validate_host(&request(Version::HTTP_11, &["a", "b"])).is_err());
        assert!(validate_host(&request(Version::HTTP_11, &["user@example.com"])).is_err());
        assert!(validate_host(&request(Version::HTTP_11, &["exa mple.com"])).is_err());
        assert!(validate_host(&request(Version::HTTP_11, &["example.com:port"])).is_err());
    }

    #[test]
    fn http10_may_omit_host() {
        assert!(validate_host(&request(Version::HTTP_10, &[])).is_ok());
    }
}
