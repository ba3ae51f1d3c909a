//! Access records formatted and written on the I/O thread when the access logger is the
//! built-in one (Python decides at startup, `native_access_log`): no Python object per request,
//! and one `write(2)` per batch of lines instead of one per request.
//!
//! Three styles, each byte for byte what the Python logging path writes: uvicorn's line (logged
//! when the response starts, as uvicorn does), gunicorn's atoms (`--access-log-format`) and
//! `--log-format json` (both at the response's end: they carry its size and duration).

mod entry;
mod format;
mod render;
mod sink;
mod text;

pub use entry::{AccessEntry, Finished};
pub use format::{AccessFormat, Atom, Segment};
pub use sink::AccessSink;

use std::os::fd::RawFd;

use http::{HeaderName, Request};

use crate::net::{ConnInfo, TrustedProxies};

/// The access log of a server whose records are written by the core.
pub struct AccessLog {
    format: AccessFormat,
    sink: AccessSink,
    /// The request headers a record needs (`entry.request_headers` follows this order).
    request_headers: Vec<HeaderName>,
    /// The response headers a record needs (`%({name}o)s`).
    response_headers: Vec<HeaderName>,
    root_path: String,
    /// HTTP status code → reason phrase, as Python's `http.HTTPStatus` has them.
    phrases: Vec<(u16, String)>,
}

impl AccessLog {
    pub fn new(
        format: AccessFormat,
        fd: RawFd,
        root_path: String,
        phrases: Vec<(u16, String)>,
    ) -> Self {
        let request_headers = format.request_headers();
        let response_headers = format.response_headers();
        Self {
            format,
            sink: AccessSink::new(fd),
            request_headers,
            response_headers,
            root_path,
            phrases,
        }
    }

    /// What a record of this request needs, taken before the request goes to the app.
    pub fn entry<B>(
        &self,
        request: &Request<B>,
        conn: &ConnInfo,
        proxies: Option<&TrustedProxies>,
    ) -> AccessEntry {
        AccessEntry::new(request, conn, proxies, &self.request_headers)
    }

    /// Whether records are written when the response starts (uvicorn's line) rather than at its
    /// end.
    pub fn at_start(&self) -> bool {
        matches!(self.format, AccessFormat::Uvicorn { .. })
    }

    /// The response started with `status`: uvicorn's line.
    pub fn started(&self, entry: &AccessEntry, status: u16) {
        if let AccessFormat::Uvicorn { colors } = &self.format {
            self.sink
                .write_line(|out| render::uvicorn_line(out, entry, status, *colors, self));
        }
    }

    /// The response ended (or was abandoned): gunicorn's atoms or the JSON object.
    pub fn finished(&self, finished: &Finished) {
        match &self.format {
            AccessFormat::Uvicorn { .. } => {}
            AccessFormat::Atoms(segments) => self
                .sink
                .write_line(|out| render::atoms(out, segments, finished, self)),
            AccessFormat::Json { message } => self
                .sink
                .write_line(|out| render::json(out, message.as_deref(), finished, self)),
        }
    }

    /// The response headers a finished record needs.
    pub fn response_headers(&self) -> &[HeaderName] {
        &self.response_headers
    }

    /// Write out the lines buffered so far (the I/O thread, before it sleeps).
    pub fn flush(&self) {
        self.sink.flush();
    }

    fn phrase(&self, status: u16) -> &str {
        self.phrases
            .binary_search_by_key(&status, |(code, _)| *code)
            .ok()
            .and_then(|at| self.phrases.get(at))
            .map_or("", |(_, phrase)| phrase.as_str())
    }
}
