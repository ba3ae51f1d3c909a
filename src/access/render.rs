//! One access record as text: uvicorn's line, gunicorn's atoms, or the JSON object.

use std::fmt::Write as _;

use http::{HeaderValue, Version};

use super::entry::{AccessEntry, Client, Finished};
use super::format::{Atom, Segment};
use super::text::{
    ascii_replace, basic_auth_user, gunicorn_time, iso8601_utc, json_string, latin1, python_seconds,
};
use super::AccessLog;
use crate::percent::{percent_decode, quote_into};

const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// `INFO:     127.0.0.1:5000 - "GET /path?q HTTP/1.1" 200 OK`, coloured as uvicorn's
/// `AccessFormatter` does on a terminal.
pub fn uvicorn_line(
    out: &mut String,
    entry: &AccessEntry,
    status: u16,
    colors: bool,
    log: &AccessLog,
) {
    if colors {
        out.push_str("\x1b[32mINFO\x1b[0m:     ");
    } else {
        out.push_str("INFO:     ");
    }
    client(out, &entry.client);
    out.push_str(" - \"");
    if colors {
        out.push_str(BOLD);
    }
    request_line(out, entry, log);
    if colors {
        out.push_str(RESET);
    }
    out.push_str("\" ");
    if colors {
        out.push_str(match status {
            0..=199 => "\x1b[37m",
            200..=299 => "\x1b[32m",
            300..=399 => "\x1b[33m",
            400..=499 => "\x1b[31m",
            _ => "\x1b[91m",
        });
    }
    let _ = write!(out, "{status} {}", log.phrase(status));
    if colors {
        out.push_str(RESET);
    }
}

/// `--access-log-format` with the record's atoms filled in (`-` for a missing value).
pub fn atoms(out: &mut String, segments: &[Segment], finished: &Finished, log: &AccessLog) {
    let entry = &finished.entry;
    for segment in segments {
        let atom = match segment {
            Segment::Literal(text) => {
                out.push_str(text);
                continue;
            }
            Segment::Atom(atom) => atom,
        };
        let start = out.len();
        let known = match atom {
            Atom::Host => match &entry.client {
                Client::Addr(addr) => write!(out, "{}", addr.ip()).is_ok(),
                Client::Forwarded(host) => {
                    out.push_str(host);
                    true
                }
                Client::None => false,
            },
            Atom::User => {
                let user = entry
                    .request_header(log, &http::header::AUTHORIZATION)
                    .and_then(|value| {
                        let mut text = String::new();
                        latin1(&mut text, value.as_bytes());
                        basic_auth_user(&text)
                    });
                user.map(|user| out.push_str(&user)).is_some()
            }
            Atom::Time => {
                gunicorn_time(out, finished.wall_clock);
                true
            }
            Atom::RequestLine => {
                let _ = write!(out, "{} ", entry.method);
                latin1(out, log.root_path.as_bytes());
                latin1(out, entry.uri.path().as_bytes());
                if let Some(query) = entry.uri.query().filter(|query| !query.is_empty()) {
                    out.push('?');
                    latin1(out, query.as_bytes());
                }
                out.push_str(" HTTP/");
                out.push_str(version(entry.version));
                true
            }
            Atom::Method => {
                out.push_str(entry.method.as_str());
                true
            }
            Atom::Path => {
                scope_path(out, entry, log);
                true
            }
            Atom::Query => {
                latin1(out, entry.uri.query().unwrap_or("").as_bytes());
                true
            }
            Atom::Protocol => {
                out.push_str("HTTP/");
                out.push_str(version(entry.version));
                true
            }
            Atom::Status => write!(out, "{}", finished.status).is_ok(),
            Atom::Bytes => write!(out, "{}", finished.bytes).is_ok(),
            Atom::Seconds => write!(out, "{}", finished.micros() / 1_000_000).is_ok(),
            Atom::Micros => write!(out, "{}", finished.micros()).is_ok(),
            Atom::Millis => write!(out, "{}", finished.micros() / 1000).is_ok(),
            Atom::SecondsMicros => {
                let micros = finished.micros();
                write!(out, "{}.{:06}", micros / 1_000_000, micros % 1_000_000).is_ok()
            }
            Atom::RequestHeader(name) => header(out, entry.request_header(log, name)),
            Atom::ResponseHeader(name) => header(out, finished.response_header(log, name)),
        };
        if !known {
            out.truncate(start);
            out.push('-');
        }
    }
}

/// `--log-format json`: one object with stable keys, as `ferrocorn.logging.JsonFormatter`
/// writes an access record.
pub fn json(out: &mut String, message: Option<&[Segment]>, finished: &Finished, log: &AccessLog) {
    let entry = &finished.entry;
    let mut text = String::new();
    out.push_str("{\"time\": \"");
    iso8601_utc(out, finished.wall_clock);
    out.push_str("\", \"level\": \"INFO\", \"logger\": \"ferrocorn.access\", \"message\": ");
    match message {
        Some(segments) => atoms(&mut text, segments, finished, log),
        None => {
            client(&mut text, &entry.client);
            text.push_str(" - \"");
            request_line(&mut text, entry, log);
            let _ = write!(text, "\" {}", finished.status);
        }
    }
    json_string(out, &text);
    out.push_str(", \"client\": ");
    text.clear();
    client(&mut text, &entry.client);
    optional(out, (!text.is_empty()).then_some(text.as_str()));
    out.push_str(", \"method\": ");
    json_string(out, entry.method.as_str());
    out.push_str(", \"path\": ");
    text.clear();
    scope_path(&mut text, entry, log);
    json_string(out, &text);
    out.push_str(", \"query\": ");
    text.clear();
    latin1(&mut text, entry.uri.query().unwrap_or("").as_bytes());
    json_string(out, &text);
    out.push_str(", \"http_version\": ");
    json_string(out, version(entry.version));
    let _ = write!(
        out,
        ", \"status\": {}, \"bytes\": {}, \"duration\": ",
        finished.status, finished.bytes
    );
    python_seconds(out, finished.micros());
    for (key, name) in [
        ("user_agent", http::header::USER_AGENT),
        ("request_id", http::HeaderName::from_static("x-request-id")),
    ] {
        let _ = write!(out, ", \"{key}\": ");
        text.clear();
        let value = entry.request_header(log, &name).map(|value| {
            latin1(&mut text, value.as_bytes());
            text.as_str()
        });
        optional(out, value);
    }
    out.push('}');
}

fn optional(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => json_string(out, value),
        None => out.push_str("null"),
    }
}

fn header(out: &mut String, value: Option<&HeaderValue>) -> bool {
    value.map(|value| latin1(out, value.as_bytes())).is_some()
}

/// The scope's `client` as `host:port` (empty for a Unix socket).
fn client(out: &mut String, client: &Client) {
    let _ = match client {
        Client::Addr(addr) => write!(out, "{}:{}", addr.ip(), addr.port()),
        Client::Forwarded(host) => write!(out, "{host}:0"),
        Client::None => Ok(()),
    };
}

/// `METHOD quoted-path?query HTTP/version`, as uvicorn's access line has it.
fn request_line(out: &mut String, entry: &AccessEntry, log: &AccessLog) {
    out.push_str(entry.method.as_str());
    out.push(' ');
    let mut path = String::new();
    scope_path(&mut path, entry, log);
    let mut quoted = Vec::with_capacity(path.len());
    quote_into(&mut quoted, &path);
    out.push_str(&String::from_utf8_lossy(&quoted));
    if let Some(query) = entry.uri.query().filter(|query| !query.is_empty()) {
        out.push('?');
        ascii_replace(out, query.as_bytes());
    }
    out.push_str(" HTTP/");
    out.push_str(version(entry.version));
}

/// The scope's `path`: the root path, then the request's path percent-decoded.
fn scope_path(out: &mut String, entry: &AccessEntry, log: &AccessLog) {
    out.push_str(&log.root_path);
    out.push_str(&String::from_utf8_lossy(&percent_decode(
        entry.uri.path().as_bytes(),
    )));
}

/// The scope's `http_version`.
fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
