//! The RFC 9112 message-framing and request-target checks hyper leaves to the server (§6.1,
//! §6.3, §3.2): run on every HTTP/1.x request head before the app sees it. A request failing one
//! is answered by the server (400, or 501 for a transfer coding it does not implement) and the
//! connection is closed, so that no byte after it can be read as another request.
//!
//! What hyper and httparse already refuse (a final coding other than `chunked`,
//! `Transfer-Encoding` in HTTP/1.0, differing or non-numeric `Content-Length`, obs-fold, bad
//! bytes in the request line or a field) never reaches this module: hyper answers 400 itself.
//! `docs/hardening.md` lists every case and who answers it.

use http::{header, HeaderMap, Method, Request, StatusCode, Uri, Version};

/// Why a request head is refused: the status to answer and the text of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

const fn bad_request(reason: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

/// Checks an HTTP/1.x request head; HTTP/2 requests pass (h2 checks their framing).
pub fn check_framing<B>(request: &Request<B>) -> Result<(), Refusal> {
    if !matches!(request.version(), Version::HTTP_10 | Version::HTTP_11) {
        return Ok(());
    }
    check_transfer_encoding(request.headers())?;
    check_target(request.method(), request.uri())
}

/// RFC 9112 §6.1: the only transfer coding Ferrocorn decodes is `chunked`, which must be the
/// final coding and applied once. One `Transfer-Encoding` field line only: a second line is
/// where a proxy and a server most often disagree (request smuggling).
fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), Refusal> {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(line) = lines.next() else {
        return Ok(());
    };
    if lines.next().is_some() {
        return Err(bad_request("more than one Transfer-Encoding header"));
    }
    // RFC 9110 §5.6.1: empty list elements are ignored.
    let codings: Vec<&[u8]> = line
        .as_bytes()
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|coding| !coding.is_empty())
        .collect();
    let Some((last, earlier)) = codings.split_last() else {
        return Err(bad_request("empty Transfer-Encoding header"));
    };
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(bad_request("chunked must be the final transfer coding"));
    }
    if earlier
        .iter()
        .any(|coding| coding_name(coding).eq_ignore_ascii_case(b"chunked"))
    {
        return Err(bad_request("chunked applied more than once"));
    }
    if !earlier.is_empty() {
        // §6.1: a server that receives a transfer coding it does not understand SHOULD answer
        // 501; Ferrocorn decodes none but chunked.
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: "unsupported transfer coding",
        });
    }
    Ok(())
}

/// A transfer coding's name, without its parameters (`gzip;q=1` → `gzip`).
fn coding_name(coding: &[u8]) -> &[u8] {
    let name = coding.split(|&b| b == b';').next().unwrap_or(coding);
    trim_ows(name)
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 9112 §3.2: the request-target's four forms and the methods each belongs to, and its
/// bytes (visible ASCII only: raw UTF-8, controls and spaces are not part of any form).
fn check_target(method: &Method, uri: &Uri) -> Result<(), Refusal> {
    let authority = uri.authority().map(|a| a.as_str());
    let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
    let visible = |text: &str| text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !visible(path_and_query) || !authority.map_or(true, visible) {
        return Err(bad_request("invalid character in request target"));
    }
    let asterisk = uri.scheme().is_none() && authority.is_none() && path_and_query == "*";
    // authority-form (§3.2.3): `host:port`, no scheme and no path.
    let authority_form = uri.scheme().is_none() && authority.is_some();
    if asterisk && method != Method::OPTIONS {
        return Err(bad_request("asterisk-form is only for OPTIONS"));
    }
    if authority_form && method != Method::CONNECT {
        return Err(bad_request("authority-form is only for CONNECT"));
    }
    if method == Method::CONNECT && !(authority_form && path_and_query.is_empty()) {
        return Err(bad_request("CONNECT needs an authority-form target"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_framing, Refusal};
    use http::{Method, Request, StatusCode, Version};

    fn request(method: Method, target: &str, te: &[&str]) -> Request<()> {
        let mut builder = Request::builder()
            .method(method)
            .uri(target)
            .version(Version::HTTP_11);
        for value in te {
            builder = builder.header("transfer-encoding", *value);
        }
        builder.body(()).expect("valid test request") // ok: test-only input
    }

    fn status(result: Result<(), Refusal>) -> Option<StatusCode> {
        result.err().map(|refusal| refusal.status)
    }

    #[test]
    fn transfer_encoding_must_be_one_final_chunked() {
        let check = |te: &[&str]| status(check_framing(&request(Method::POST, "/", te)));
        assert_eq!(check(&[]), None);
        assert_eq!(check(&["chunked"]), None);
        assert_eq!(check(&["Chunked"]), None);
        assert_eq!(check(&[" , chunked"]), None);
        assert_eq!(check(&["chunked, chunked"]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            check(&["chunked", "chunked"]),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check(&["chunked;a=b, chunked"]),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(check(&["chunked, gzip"]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(check(&[","]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(check(&["gzip, chunked"]), Some(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(
            check(&["identity, chunked"]),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
    }

    #[test]
    fn target_forms_belong_to_their_methods() {
        let check =
            |method: Method, target: &str| status(check_framing(&request(method, target, &[])));
        assert_eq!(check(Method::OPTIONS, "*"), None);
        assert_eq!(check(Method::GET, "*"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(check(Method::CONNECT, "example.com:443"), None);
        assert_eq!(
            check(Method::GET, "example.com:443"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check(Method::CONNECT, "/path"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check(Method::CONNECT, "http://example.com/"),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(check(Method::GET, "http://example.com/a?b"), None);
        assert_eq!(check(Method::GET, "/a?b=c"), None);
    }

    #[test]
    fn http2_requests_are_not_checked_here() {
        let mut request = request(Method::POST, "/", &["chunked, chunked"]);
        *request.version_mut() = Version::HTTP_2;
        assert!(check_framing(&request).is_ok());
    }
}
