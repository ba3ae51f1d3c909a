//! The fuzz targets' entry points (`fuzz/fuzz_targets/`, feature `fuzzing`): each feeds
//! arbitrary bytes to one parser of untrusted input and must never panic, hang or read out of
//! bounds, whatever it returns.

use std::sync::Arc;

use http::{HeaderValue, Request};

use crate::access::{AccessFormat, AccessLog, Atom, Finished, Segment};

use crate::http::{check_framing, validate_host};
use crate::net::{ConnInfo, TrustedProxies};
use crate::tls::{parse_pem, private_key, select_ciphers};
use crate::websocket::deflate::{negotiate, Deflate};
use crate::websocket::frame::{parse_close, parse_header, unmask};
use crate::websocket::session::check_utf8;

/// Splits `data` at its first NUL: the first part configures, the second is the input.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// WebSocket frames as the session reads them: header after header, each payload unmasked,
/// close payloads parsed.
pub fn websocket_frames(data: &[u8]) {
    let allow_rsv1 = data.first().is_some_and(|b| b & 1 == 1);
    let mut buf = data.get(1..).unwrap_or_default().to_vec();
    let mut at = 0;
    while at < buf.len() {
        let Ok(Some(header)) = parse_header(&buf[at..], allow_rsv1, 1 << 20) else {
            return;
        };
        let start = at + header.header_len;
        let Some(end) = start.checked_add(header.payload_len) else {
            return;
        };
        let Some(payload) = buf.get_mut(start..end) else {
            return;
        };
        unmask(payload, header.mask);
        if header.opcode == crate::websocket::frame::OpCode::Close {
            let _ = parse_close(payload);
        }
        at = end;
    }
    text_fragments(data);
}

/// The session's incremental UTF-8 check (`check_utf8`), fed a text message in the fragments the
/// input's 0xFF bytes delimit, against the standard library's verdict on the whole message: the
/// check may only pass what is valid so far, and must pass a valid message whole.
fn text_fragments(data: &[u8]) {
    let mut message = Vec::new();
    let mut checked = 0;
    let mut fragments = data.split(|&b| b == 0xff).peekable();
    while let Some(fragment) = fragments.next() {
        message.extend_from_slice(fragment);
        let complete = fragments.peek().is_none();
        match check_utf8(&message, checked, complete) {
            Some(valid) => {
                assert!(valid <= message.len() && std::str::from_utf8(&message[..valid]).is_ok());
                if complete {
                    assert_eq!(valid, message.len());
                }
                checked = valid;
            }
            None => {
                // Rejected: the message so far cannot be the start of valid UTF-8.
                let verdict = std::str::from_utf8(&message);
                assert!(verdict.is_err_and(|err| complete || err.error_len().is_some()));
                return;
            }
        }
    }
    assert!(std::str::from_utf8(&message).is_ok());
}

/// permessage-deflate: an offer (`Sec-WebSocket-Extensions`), then compressed messages
/// inflated under a size limit.
pub fn permessage_deflate(data: &[u8]) {
    let (offer, messages) = split(data);
    let Ok(offer) = HeaderValue::from_bytes(offer) else {
        return;
    };
    // Messages are only inflated under a negotiated offer, as in a session.
    let Some(params) = negotiate(std::iter::once(&offer)) else {
        return;
    };
    let _ = params.response_header();
    let mut inflater = Deflate::new(&params);
    for message in messages.split(|&b| b == 0xff) {
        if inflater.decompress(message, 1 << 16).is_err() {
            return;
        }
    }
}

/// `--forwarded-allow-ips` entries (one a line), then an `X-Forwarded-For` value.
pub fn forwarded(data: &[u8]) {
    let (entries, header) = split(data);
    let entries = String::from_utf8_lossy(entries);
    let trusted = TrustedProxies::parse(&entries.lines().collect::<Vec<_>>());
    let header = String::from_utf8_lossy(header);
    let _ = trusted.client_from_forwarded_for(&header);
    let _ = trusted.trusts(&header);
}

/// A request head's Host and framing checks: a method, a target, a Host value and a
/// Transfer-Encoding value, NUL-separated.
pub fn request_head(data: &[u8]) {
    let mut parts = data.splitn(4, |&b| b == 0);
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut builder = Request::builder().method(method).uri(target);
    if let Some(host) = parts.next() {
        builder = builder.header(http::header::HOST, host);
    }
    if let Some(te) = parts.next() {
        builder = builder.header(http::header::TRANSFER_ENCODING, te);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let _ = validate_host(&request);
    let _ = check_framing(&request);
}

/// A PEM file, and the private key in it (decrypted with a password when encrypted).
pub fn pem_and_keys(data: &[u8]) {
    let (password, text) = split(data);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(blocks) = parse_pem(text) else {
        return;
    };
    let password = std::str::from_utf8(password).ok();
    let _ = private_key(&blocks, password, "fuzz.pem");
}

/// An OpenSSL cipher string (`--ssl-ciphers`).
pub fn cipher_string(data: &[u8]) {
    if let Ok(spec) = std::str::from_utf8(data) {
        let _ = select_ciphers(spec);
    }
}

/// Access records (`access/`): a request of any target and headers, rendered as uvicorn's line
/// (coloured), gunicorn's every atom and JSON, as the core writes them (into /dev/null).
pub fn access_record(data: &[u8]) {
    const HEADERS: [&str; 6] = [
        "user-agent",
        "authorization",
        "referer",
        "x-request-id",
        "x-forwarded-for",
        "x-test",
    ];
    let (target, rest) = split(data);
    let mut builder = Request::builder().uri(target);
    for (name, value) in HEADERS.iter().zip(rest.split(|&b| b == 0)) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            builder = builder.header(*name, value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let Ok(devnull) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let conn = ConnInfo::tcp(([127, 0, 0, 1], 4000).into(), None, true);
    let proxies = TrustedProxies::parse(&["*"]);
    let atoms = || {
        "h u t r m U q H s b f a T D M L {x-test}i {content-type}o"
            .split(' ')
            .filter_map(Atom::parse)
            .map(Segment::Atom)
            .collect::<Vec<_>>()
    };
    let formats = [
        AccessFormat::Uvicorn { colors: true },
        AccessFormat::Atoms(atoms()),
        AccessFormat::Json { message: None },
        AccessFormat::Json {
            message: Some(atoms()),
        },
    ];
    for format in formats {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&devnull);
        let log = Arc::new(AccessLog::new(
            format,
            fd,
            "/root".to_owned(),
            vec![(200, "OK".to_owned())],
        ));
        let entry = log.entry(&request, &conn, Some(&proxies));
        log.started(&entry, 200);
        let mut finished = Finished::new(&log, entry, 599, request.headers());
        finished.bytes = 7;
        finished.end();
        log.finished(&finished);
        log.flush();
    }
}
