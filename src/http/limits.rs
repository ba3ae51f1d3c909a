//! The request limits the service enforces before the app runs: a declared `Content-Length`
//! above `--limit-request-body-size` (413), and more header fields than
//! `--limit-request-headers` on HTTP/2 (431; hyper enforces it itself on HTTP/1.1). A body that
//! grows past the size limit is stopped by the body pump (`exchange::BodyLimits`).

use http::{header, Request, StatusCode, Version};

use super::framing::Refusal;

/// Checks a request head against the limits.
pub fn check_limits<B>(
    request: &Request<B>,
    max_body_size: Option<u64>,
    max_headers: usize,
) -> Result<(), Refusal> {
    if request.version() == Version::HTTP_2 && request.headers().len() > max_headers {
        return Err(Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason: "Request Header Fields Too Large",
        });
    }
    if let Some(max) = max_body_size {
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

#[cfg(test)]
mod tests {
    use super::check_limits;
    use http::{Request, StatusCode, Version};

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

    fn status(request: &Request<()>) -> Option<StatusCode> {
        check_limits(request, Some(10), 5)
            .err()
            .map(|refusal| refusal.status)
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
        assert!(check_limits(&request(Version::HTTP_11, Some("11"), 0), None, 5).is_ok());
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
}
