//! The opening handshake (RFC 6455 §4.2, and RFC 8441 §4 over HTTP/2): recognising an upgrade
//! request, validating it, and the headers of the server's answer.
//!
//! Every header here is client-controlled: nothing is unwrapped, and a malformed request gets
//! 400 (or 426 for an unsupported version) before the app is involved.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::header::{
    CONNECTION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use sha1::{Digest, Sha1};

use super::deflate::{self, DeflateParams};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("WebSocket upgrade requires GET over HTTP/1.1")]
    BadMethod,
    #[error("missing Sec-WebSocket-Version header")]
    MissingVersion,
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    #[error("missing or repeated Sec-WebSocket-Key header")]
    MissingKey,
    #[error("invalid Sec-WebSocket-Key header")]
    InvalidKey,
    #[error("invalid Sec-WebSocket-Protocol header")]
    InvalidProtocol,
}

impl HandshakeError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The response text (static: the server's plain responses take `&'static str`).
    pub fn text(&self) -> &'static str {
        match self {
            HandshakeError::BadMethod => "WebSocket upgrade requires GET over HTTP/1.1",
            HandshakeError::MissingVersion => "Missing Sec-WebSocket-Version header",
            HandshakeError::UnsupportedVersion => "Unsupported WebSocket version",
            HandshakeError::MissingKey => "Missing Sec-WebSocket-Key header",
            HandshakeError::InvalidKey => "Invalid Sec-WebSocket-Key header",
            HandshakeError::InvalidProtocol => "Invalid Sec-WebSocket-Protocol header",
        }
    }
}

/// What a valid upgrade request leaves for the rest of the connection.
#[derive(Debug)]
pub struct Handshake {
    /// `Sec-WebSocket-Accept` (HTTP/1.1 only; RFC 8441 has no key).
    pub accept: Option<HeaderValue>,
    pub subprotocols: Vec<String>,
    pub deflate: Option<DeflateParams>,
    /// Extended CONNECT over HTTP/2: the answer is 200, not 101.
    pub http2: bool,
}

/// Whether an HTTP/1.1 request asks for a WebSocket upgrade (`Connection: upgrade` and
/// `Upgrade: websocket`, as uvicorn decides it). Other upgrades are served as plain HTTP.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    has_token(headers, &CONNECTION, "upgrade") && has_token(headers, &UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Validate an HTTP/1.1 upgrade request.
pub fn validate_http1(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    deflate_enabled: bool,
) -> Result<Handshake, HandshakeError> {
    if method != Method::GET || version != Version::HTTP_11 {
        return Err(HandshakeError::BadMethod);
    }
    check_version(headers)?;
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key,
        _ => return Err(HandshakeError::MissingKey),
    };
    let key = key.as_bytes().trim_ascii();
    match BASE64.decode(key) {
        Ok(decoded) if decoded.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    Ok(Handshake {
        accept: Some(accept_value(key)),
        subprotocols: subprotocols(headers)?,
        deflate: negotiate(headers, deflate_enabled),
        http2: false,
    })
}

/// Validate an RFC 8441 extended CONNECT (`:protocol` = websocket was checked by the caller).
pub fn validate_http2(
    headers: &HeaderMap,
    deflate_enabled: bool,
) -> Result<Handshake, HandshakeError> {
    check_version(headers)?;
    Ok(Handshake {
        accept: None,
        subprotocols: subprotocols(headers)?,
        deflate: negotiate(headers, deflate_enabled),
        http2: true,
    })
}

fn check_version(headers: &HeaderMap) -> Result<(), HandshakeError> {
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (None, _) => Err(HandshakeError::MissingVersion),
        (Some(version), None) if version.as_bytes().trim_ascii() == b"13" => Ok(()),
        _ => Err(HandshakeError::UnsupportedVersion),
    }
}

fn negotiate(headers: &HeaderMap, enabled: bool) -> Option<DeflateParams> {
    if !enabled {
        return None;
    }
    deflate::negotiate(headers.get_all(SEC_WEBSOCKET_EXTENSIONS).iter())
}

/// The offered subprotocols, in order. Each must be an RFC 9110 token.
fn subprotocols(headers: &HeaderMap) -> Result<Vec<String>, HandshakeError> {
    let mut protocols = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let text = value
            .to_str()
            .map_err(|_| HandshakeError::InvalidProtocol)?;
        for token in text.split(',').map(str::trim) {
            if token.is_empty() {
                continue;
            }
            if !token.bytes().all(is_token_char) {
                return Err(HandshakeError::InvalidProtocol);
            }
            protocols.push(token.to_owned());
        }
    }
    Ok(protocols)
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
pub fn accept_value(key: &[u8]) -> HeaderValue {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(GUID);
    let encoded = BASE64.encode(hasher.finalize());
    // Base64 output is always a valid header value.
    HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"), // ok: test-only
                HeaderValue::from_bytes(value).expect("value"),               // ok: test-only
            );
        }
        map
    }

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_value(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn recognises_upgrades() {
        assert!(is_upgrade_request(&headers(&[
            ("connection", b"keep-alive, Upgrade"),
            ("upgrade", b"WebSocket"),
        ])));
        assert!(!is_upgrade_request(&headers(&[("upgrade", b"websocket")])));
        assert!(!is_upgrade_request(&headers(&[
            ("connection", b"upgrade"),
            ("upgrade", b"h2c"),
        ])));
    }

    #[test]
    fn validates_requests() {
        let ok = |extra: &[(&str, &[u8])]| {
            let mut pairs = vec![
                ("sec-websocket-version", &b"13"[..]),
                ("sec-websocket-key", KEY),
            ];
            pairs.extend_from_slice(extra);
            validate_http1(&Method::GET, Version::HTTP_11, &headers(&pairs), true)
        };
        let handshake = ok(&[("sec-websocket-protocol", b"chat, superchat")]).expect("valid"); // ok: test-only
        assert_eq!(handshake.subprotocols, ["chat", "superchat"]);
        assert_eq!(
            ok(&[("sec-websocket-protocol", "ch\u{e4}t".as_bytes())]).err(),
            Some(HandshakeError::InvalidProtocol)
        );
        assert_eq!(
            ok(&[("sec-websocket-protocol", b"a b")]).err(),
            Some(HandshakeError::InvalidProtocol)
        );
        assert_eq!(
            ok(&[("sec-websocket-key", KEY)]).err(),
            Some(HandshakeError::MissingKey)
        );
        let bad_key = headers(&[
            ("sec-websocket-version", b"13"),
            ("sec-websocket-key", b"short"),
        ]);
        assert_eq!(
            validate_http1(&Method::GET, Version::HTTP_11, &bad_key, true).err(),
            Some(HandshakeError::InvalidKey)
        );
        let old = headers(&[("sec-websocket-version", b"8"), ("sec-websocket-key", KEY)]);
        let err = validate_http1(&Method::GET, Version::HTTP_11, &old, true).err();
        assert_eq!(err, Some(HandshakeError::UnsupportedVersion));
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        let post = headers(&[("sec-websocket-version", b"13"), ("sec-websocket-key", KEY)]);
        assert_eq!(
            validate_http1(&Method::POST, Version::HTTP_11, &post, true).err(),
            Some(HandshakeError::BadMethod)
        );
    }
}
