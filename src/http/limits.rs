//! The request limits the service enforces on a parsed head before the app runs, the same
//! helper for both protocols:
//!
//! * `--limit-request-line`: an HTTP/1.x request line (method, target, version) or an HTTP/2
//!   `:path` longer than it → 414;
//! * `--limit-request-headers`: more header fields → 431 (HTTP/2; hyper enforces it itself on
//!   HTTP/1.1, with the same status);
//! * `--limit-request-field-size`: one field whose name and value together are longer → 431;
//! * `--limit-request-body-size`: a declared `Content-Length` above it → 413. A body that grows
//!   past it is stopped by the body pump (`exchange::BodyLimits`).
//!
//! The request line is measured from the parsed head: hyper keeps no copy of the raw line, so the
//! target is measured as the `http` crate kept it (a `#fragment`, which it drops, is not counted;
//! the head as a whole is bounded by hyper's `max_header_size`, which answers 431).

use http::{header, Request, StatusCode, Version};

use super::framing::Refusal;
use crate::settings::ServerSettings;

/// The limits a request head is checked against (`None`: no limit).
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_line: Option<usize>,
    pub max_headers: usize,
    pub max_field_size: Option<usize>,
    pub max_body_size: Option<u64>,
}

impl HeadLimits {
    pub fn of(settings: &ServerSettings) -> Self {
        Self {
            max_line: settings.limit_request_line,
            max_headers: settings.limit_request_headers,
            max_field_size: settings.limit_request_field_size,
            max_body_size: settings.limit_request_body_size,
        }
    }
}

const URI_TOO_LONG: Refusal = Refusal {
    status: StatusCode::URI_TOO_LONG,
    reason: "URI Too Long",
};

const FIELDS_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    reason: "Request Header Fields Too Large",
};

/// Checks a request head against the limits: the line first (as it arrives first), then the
/// fields, then the declared body.
pub fn check_limits<B>(request: &Request<B>, limits: &HeadLimits) -> Result<(), Refusal> {
    if limits
        .max_line
        .is_some_and(|max| request_line_len(request) > max)
    {
        return Err(URI_TOO_LONG);
    }
    if request.version() == Version::HTTP_2 && request.headers().len() > limits.max_headers {
        return Err(FIELDS_TOO_LARGE);
    }
    if let Some(max) = limits.max_field_size {
        let too_large = request
            .headers()
            .iter()
            .any(|(name, value)| name.as_str().len() + value.len() > max);
        if too_large {
            return Err(FIELDS_TOO_LARGE);
        }
    }
    if let Some(max) = limits.max_body_size {
        // hyper has checked the value on HTTP/1.1 (one number); h2 checks it against the DATA.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > max) {
            return Err(Refusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: "Payload Too Large",
            });
        }
    }
    Ok(())
}

/// What `--limit-request-line` measures: on HTTP/1.x the request line without its CRLF
/// (`GET /path HTTP/1.1`, as gunicorn counts it); on HTTP/2, which has no request line, the
/// `:path`.
fn request_line_len<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if request.version() == Version::HTTP_2 {
        return path_and_query;
    }
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let target = match uri.scheme_str() {
        // absolute-form: `http://host/path`
        Some(scheme) => scheme.len() + "://".len() + authority + path_and_query,
        // origin-form `/path`, asterisk-form `*`, or authority-form `host:port` (CONNECT)
        None => authority + path_and_query,
    };
    request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len()
}

#[cfg(test)]
mod tests {
    use super::{check_limits, HeadLimits};
    use http::{Method, Request, StatusCode, Version};

    fn request(version: Version, length: Option<&str>, headers: usize) -> Request<()> {
        let mut builder = Request::builder().version(version).uri("/");
        if let Some(length) = length {
            builder = builder.header("content-length", length);
        }
        for i in 0..headers {
            builder = builder.header(format!("x-{i}"), "v");
        }
        builder.body(()).expect("valid test request") // ok: test-only input
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_line: None,
        max_headers: 5,
        max_field_size: None,
        max_body_size: Some(10),
    };

    fn status_with(request: &Request<()>, limits: &HeadLimits) -> Option<StatusCode> {
        check_limits(request, limits)
            .err()
            .map(|refusal| refusal.status)
    }

    fn status(request: &Request<()>) -> Option<StatusCode> {
        status_with(request, &LIMITS)
    }

    #[test]
    fn declared_body_over_the_limit_is_413() {
        assert_eq!(status(&request(Version::HTTP_11, Some("10"), 0)), None);
        assert_eq!(
            status(&request(Version::HTTP_11, Some("11"), 0)),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(
            status(&request(Version::HTTP_2, Some("11"), 0)),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        let unlimited = HeadLimits {
            max_body_size: None,
            ..LIMITS
        };
        assert!(check_limits(&request(Version::HTTP_11, Some("11"), 0), &unlimited).is_ok());
    }

    #[test]
    fn header_count_is_checked_on_http2_only() {
        assert_eq!(status(&request(Version::HTTP_2, None, 5)), None);
        assert_eq!(
            status(&request(Version::HTTP_2, None, 6)),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert_eq!(status(&request(Version::HTTP_11, None, 6)), None);
    }

    fn target(version: Version, method: Method, target: &str) -> Request<()> {
        Request::builder()
            .version(version)
            .method(method)
            .uri(target)
            .body(())
            .expect("valid test request") // ok: test-only input
    }

    #[test]
    fn request_line_is_measured_as_sent() {
        // `GET /abc HTTP/1.1` is 17 bytes.
        let at = |max| HeadLimits {
            max_line: Some(max),
            ..LIMITS
        };
        let get = target(Version::HTTP_11, Method::GET, "/abc");
        assert_eq!(status_with(&get, &at(17)), None);
        assert_eq!(status_with(&get, &at(16)), Some(StatusCode::URI_TOO_LONG));
        // `GET http://h/abc HTTP/1.1`: 25 bytes.
        let absolute = target(Version::HTTP_11, Method::GET, "http://h/abc");
        assert_eq!(status_with(&absolute, &at(25)), None);
        assert_eq!(
            status_with(&absolute, &at(24)),
            Some(StatusCode::URI_TOO_LONG)
        );
        // `CONNECT h:1 HTTP/1.1`: 20 bytes.
        let connect = target(Version::HTTP_11, Method::CONNECT, "h:1");
        assert_eq!(status_with(&connect, &at(20)), None);
        assert_eq!(
            status_with(&connect, &at(19)),
            Some(StatusCode::URI_TOO_LONG)
        );
        // HTTP/2: the :path alone.
        let h2 = target(Version::HTTP_2, Method::GET, "/abc");
        assert_eq!(status_with(&h2, &at(4)), None);
        assert_eq!(status_with(&h2, &at(3)), Some(StatusCode::URI_TOO_LONG));
    }

    #[test]
    fn one_field_over_the_size_is_431() {
        let limits = HeadLimits {
            max_field_size: Some(6),
            ..LIMITS
        };
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let field = |value: &str| {
                Request::builder()
                    .version(version)
                    .uri("/")
                    .header("x-a", "1")
                    .header("x-b", value)
                    .body(())
                    .expect("valid test request") // ok: test-only input
            };
            assert_eq!(status_with(&field("abc"), &limits), None);
            assert_eq!(
                status_with(&field("abcd"), &limits),
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            );
        }
    }
}
