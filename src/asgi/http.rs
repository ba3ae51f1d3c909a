//! `HttpProtocol`: the ASGI `receive` and `send` of one HTTP request, as seen by the app.
//!
//! Everything here runs on the asyncio thread with the GIL held. It talks to the tokio side
//! only through the request's [`Exchange`] and the runtime handle. Calls that can answer at
//! once return a ready awaitable; the others park the app on an `asyncio.Future` that a
//! wake-up through the bridge completes.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Incoming;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::awaitable::Ready;
use super::context::PyContext;
use super::messages::{
    append_header, append_headers, bytes_from_py, flag, for_each_header, reserve_headers,
};
use super::waiters::{is_done, on_wake, set_result, Parked, Wakeable};
use crate::bridge::{SendRoom, WaitKind};
use crate::errors::{Disconnected, ProtocolError};
use crate::exchange::{
    dup_file, open_file, plain_response, pump_request_body, BodyBytes, BodyEvent, Exchange,
    RequestBody, ResponseBody,
};

enum ResponseState {
    /// Nothing sent yet.
    Idle,
    /// `http.response.start` received; the head waits for the first body message so that a
    /// single-message response goes out as one fixed-length write.
    Started {
        head: http::response::Parts,
        content_length: Option<u64>,
    },
    Streaming {
        remaining: Option<u64>,
    },
    /// The body has ended and `http.response.trailers` messages are due (the start message
    /// said `trailers: true`); their headers are gathered until `more_trailers` is false.
    Trailers {
        headers: HeaderMap,
    },
    Complete,
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct HttpProtocol {
    ctx: Arc<PyContext>,
    exchange: Arc<Exchange>,
    /// The request body, if it waits for the app's first `receive()` (100-continue).
    body: Option<Incoming>,
    has_body: bool,
    /// The app has been given the message with `more_body=False`.
    body_delivered: bool,
    response: ResponseState,
    /// The start message said `trailers: true`: the last body message does not end the response.
    trailers: bool,
    is_head: bool,
    /// Kept only when access logging needs it.
    scope: Option<Py<PyDict>>,
    parked: Parked,
}

impl HttpProtocol {
    pub fn new(
        ctx: Arc<PyContext>,
        exchange: Arc<Exchange>,
        body: RequestBody,
        is_head: bool,
        scope: Option<Py<PyDict>>,
    ) -> Self {
        Self {
            ctx,
            exchange,
            has_body: !matches!(body, RequestBody::Empty),
            body: match body {
                RequestBody::OnFirstReceive(incoming) => Some(incoming),
                RequestBody::Empty | RequestBody::Pumping => None,
            },
            body_delivered: false,
            response: ResponseState::Idle,
            trailers: false,
            is_head,
            scope,
            parked: Parked::default(),
        }
    }

    pub fn on_wake(&mut self, py: Python<'_>, kind: WaitKind) -> PyResult<()> {
        on_wake(self, py, kind)
    }

    fn start(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let status = match message.get_item(intern!(py, "status"))? {
            Some(status) => status.extract::<i64>()?,
            None => return Err(ProtocolError::InvalidStatus(0).into()),
        };
        let status = u16::try_from(status)
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(ProtocolError::InvalidStatus(status))?;
        let (mut head, ()) = Response::new(()).into_parts();
        head.status = status;
        // The Content-Length the app declared: the last one, each checked (the first bad one
        // is the error, once every header has been checked).
        let mut declared = Ok(None);
        if let Some(headers) = message.get_item(intern!(py, "headers"))? {
            let map = &mut head.headers;
            reserve_headers(map, &headers, self.ctx.fields_added())?;
            for_each_header(&headers, |name, value| {
                if name == TRANSFER_ENCODING {
                    return Ok(()); // the server decides the framing (ASGI spec)
                }
                if name == CONTENT_LENGTH && declared.is_ok() {
                    declared = parse_length(&value).map(Some);
                }
                append_header(map, name, value)
            })?;
        }
        let mut content_length = declared?;
        self.ctx.add_default_headers(&mut head.headers);
        if let (Some(access_log), Some(scope)) = (&self.ctx.access_log, &self.scope) {
            access_log.call1(py, (scope.clone_ref(py), status.as_u16()))?;
        }
        if self.is_head {
            content_length = None; // hyper sends no body for HEAD, whatever the app writes
        }
        self.trailers = flag(message, intern!(py, "trailers"))?;
        self.response = ResponseState::Started {
            head,
            content_length,
        };
        Ok(())
    }

    fn send_body(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let body = match message.get_item(intern!(py, "body"))? {
            Some(body) => bytes_from_py(body)?,
            None => Bytes::new(),
        };
        let more = flag(message, intern!(py, "more_body"))?;
        // Checked before any state change, so that a violation leaves the response to be
        // aborted by the failure path.
        let declared = match &self.response {
            ResponseState::Started { content_length, .. } => *content_length,
            ResponseState::Streaming { remaining } => *remaining,
            _ => None,
        };
        let remaining = check_length(declared, body.len(), more)?;
        // With trailers the body queue stays open after the last body message: the last
        // `http.response.trailers` message ends it.
        let trailers = self.trailers;
        let after_body = || {
            if trailers {
                ResponseState::Trailers {
                    headers: HeaderMap::new(),
                }
            } else {
                ResponseState::Complete
            }
        };
        match std::mem::replace(&mut self.response, ResponseState::Complete) {
            ResponseState::Started { head, .. } => {
                if !more && !trailers {
                    let response = Response::from_parts(head, ResponseBody::Full(Some(body)));
                    self.response_complete(py)?;
                    self.exchange.respond(response)?;
                    return Ok(self.ctx.done(py));
                }
                let stream = ResponseBody::stream(self.exchange.clone());
                self.exchange.respond(Response::from_parts(head, stream))?;
                self.response = if more {
                    ResponseState::Streaming { remaining }
                } else {
                    after_body()
                };
                self.push(py, body, trailers || remaining != Some(0))
            }
            ResponseState::Streaming { .. } => {
                if more {
                    self.response = ResponseState::Streaming { remaining };
                } else if trailers {
                    self.response = after_body();
                } else {
                    self.response_complete(py)?;
                }
                // Once every declared byte is queued the response is complete on the wire (hyper
                // ends it there), even if the app's closing `more_body=False` is still to come.
                self.push(py, body, trailers || (more && remaining != Some(0)))
            }
            other => {
                self.response = other;
                Err(ProtocolError::AfterComplete("http.response.body".to_owned()).into())
            }
        }
    }

    /// `http.response.early_hint`: a `103 Early Hints` with one `Link` field per entry of
    /// `links`, written before the response (the scope offers it only where it can be).
    fn send_early_hint(
        &mut self,
        py: Python<'_>,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<Py<PyAny>> {
        let mut links = Vec::new();
        if let Some(items) = message.get_item(intern!(py, "links"))? {
            for item in items.try_iter()? {
                let item = item?;
                let value = item.cast::<PyBytes>()?.as_bytes();
                let value = http::HeaderValue::from_bytes(value)
                    .map_err(|_| ProtocolError::InvalidHeaderValue("link".to_owned()))?;
                links.push(value);
            }
        }
        if !links.is_empty() {
            // Dropped when too large for one frame: hints are advisory (RFC 8297).
            self.exchange.early_hint(&links);
        }
        Ok(self.ctx.done(py))
    }

    /// `http.response.trailers`: gather the headers; the last message ends the response.
    fn send_trailers(
        &mut self,
        py: Python<'_>,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<Py<PyAny>> {
        let ResponseState::Trailers { headers } = &mut self.response else {
            return Err(ProtocolError::AfterComplete("http.response.trailers".to_owned()).into());
        };
        if let Some(pairs) = message.get_item(intern!(py, "headers"))? {
            append_headers(headers, &pairs, 0)?;
        }
        if flag(message, intern!(py, "more_trailers"))? {
            return Ok(self.ctx.done(py));
        }
        let headers = std::mem::take(headers);
        self.response_complete(py)?;
        self.exchange.push_trailers(headers)?;
        Ok(self.ctx.done(py))
    }

    /// `http.response.pathsend`: the whole body is the file at `path`, opened here (without
    /// the GIL) and read by the I/O thread as hyper writes it. A file that cannot be opened
    /// gets the client a 500 and the app an `OSError` (logged as the app's failure).
    fn send_path(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let path = match message.get_item(intern!(py, "path"))? {
            Some(path) if !path.is_none() => path.extract::<PathBuf>().ok(),
            _ => None,
        };
        let path = match path {
            Some(path) if path.is_absolute() => path,
            other => {
                // Nothing is on the wire yet: a plain 500, as for a file that cannot be opened.
                self.respond_error(StatusCode::INTERNAL_SERVER_ERROR);
                let shown = other.map_or_else(|| "None".to_owned(), |p| p.display().to_string());
                return Err(ProtocolError::PathNotAbsolute(shown).into());
            }
        };
        let opened = py.detach(|| open_file(&path));
        let ResponseState::Started { mut head, .. } =
            std::mem::replace(&mut self.response, ResponseState::Complete)
        else {
            return Err(ProtocolError::ExpectedBody("http.response.pathsend".to_owned()).into());
        };
        let (file, size) = match opened {
            Ok(opened) => opened,
            Err(err) => {
                self.respond_error(StatusCode::INTERNAL_SERVER_ERROR);
                return Err(file_error(&err, &path));
            }
        };
        // The app's Content-Length (Starlette sets it) wins: a file shorter than that breaks
        // the body off; without one, the file's size is sent.
        let length = match declared_length(&head.headers)? {
            Some(length) => length,
            None => {
                head.headers
                    .insert(CONTENT_LENGTH, http::HeaderValue::from(size));
                size
            }
        };
        let body = ResponseBody::File(self.exchange.file_body(file, 0, length));
        self.response_complete(py)?;
        self.exchange.respond(Response::from_parts(head, body))?;
        Ok(self.ctx.done(py))
    }

    /// `http.response.zerocopysend`: a range of the app's open file joins the body queue (a
    /// duplicate descriptor, so the app may close its own at once), read by the I/O thread as
    /// hyper writes it. Mixes with `http.response.body` messages as the spec allows.
    fn send_zerocopy(
        &mut self,
        py: Python<'_>,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<Py<PyAny>> {
        let fd = match message.get_item(intern!(py, "file"))? {
            Some(file) if !file.is_none() => match file.extract::<RawFd>() {
                Ok(fd) => fd,
                Err(_) => file
                    .call_method0(intern!(py, "fileno"))?
                    .extract::<RawFd>()?,
            },
            _ => return Err(ProtocolError::ZeroCopyFile.into()),
        };
        let offset = optional_u64(message, intern!(py, "offset"))?;
        let count = optional_u64(message, intern!(py, "count"))?;
        let more = flag(message, intern!(py, "more_body"))?;
        let (file, size, position) = dup_file(fd).map_err(PyErr::from)?;
        let offset = offset.unwrap_or(position);
        let count = count.unwrap_or_else(|| size.saturating_sub(offset));
        let declared = match &self.response {
            ResponseState::Started { content_length, .. } => *content_length,
            ResponseState::Streaming { remaining } => *remaining,
            _ => None,
        };
        let len = usize::try_from(count).map_err(|_| ProtocolError::TooLong)?;
        let remaining = check_length(declared, len, more)?;
        let trailers = self.trailers;
        match std::mem::replace(&mut self.response, ResponseState::Complete) {
            ResponseState::Started { head, .. } => {
                let stream = ResponseBody::stream(self.exchange.clone());
                self.exchange.respond(Response::from_parts(head, stream))?;
            }
            ResponseState::Streaming { .. } => {}
            other => {
                self.response = other;
                return Err(
                    ProtocolError::ExpectedBody("http.response.zerocopysend".to_owned()).into(),
                );
            }
        }
        if more {
            self.response = ResponseState::Streaming { remaining };
        } else if trailers {
            self.response = ResponseState::Trailers {
                headers: HeaderMap::new(),
            };
        } else {
            self.response_complete(py)?;
        }
        let body = self.exchange.file_body(file, offset, count);
        let open = trailers || (more && remaining != Some(0));
        if self.exchange.push_out_file(body, open)? {
            self.parked.park(py, &self.ctx, WaitKind::Send)
        } else {
            Ok(self.ctx.done(py))
        }
    }

    fn push(&mut self, py: Python<'_>, body: Bytes, more: bool) -> PyResult<Py<PyAny>> {
        if self.exchange.push_out(body, more)? {
            self.parked.park(py, &self.ctx, WaitKind::Send)
        } else {
            Ok(self.ctx.done(py))
        }
    }

    /// The response is complete: a pending `receive()` now gets `http.disconnect`.
    fn response_complete(&mut self, py: Python<'_>) -> PyResult<()> {
        self.response = ResponseState::Complete;
        if let Some(future) = self.parked.take_receive() {
            if !is_done(py, &future)? {
                set_result(py, &future, disconnect_message(py)?)?;
            }
        }
        Ok(())
    }

    /// Reply with a plain-text error and close the connection.
    fn respond_error(&mut self, status: StatusCode) {
        let text = status.canonical_reason().unwrap_or("Error");
        let mut response = plain_response(status, text);
        self.ctx.add_default_headers(response.headers_mut());
        self.response = ResponseState::Complete;
        let _ = self.exchange.respond(response);
    }

    /// End a response that cannot be completed: the client must see a broken body (the
    /// connection closes), never one that looks complete.
    fn abort_response(&mut self) {
        match std::mem::replace(&mut self.response, ResponseState::Complete) {
            ResponseState::Started { head, .. } => {
                let stream = ResponseBody::stream(self.exchange.clone());
                self.exchange.abort_out();
                let _ = self.exchange.respond(Response::from_parts(head, stream));
            }
            ResponseState::Streaming { .. } | ResponseState::Trailers { .. } => {
                self.exchange.abort_out()
            }
            ResponseState::Idle | ResponseState::Complete => {}
        }
    }

    fn release(&mut self) {
        self.exchange.finish_app();
        self.ctx.release(self.exchange.id());
    }
}

impl Wakeable for HttpProtocol {
    fn parked(&mut self) -> &mut Parked {
        &mut self.parked
    }

    /// A message for `receive()` if one is ready; otherwise the app is parked.
    fn poll_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if matches!(self.response, ResponseState::Complete) {
            return disconnect_message(py).map(Some);
        }
        if !self.has_body && !self.body_delivered {
            self.body_delivered = true;
            return request_message(py, b"", false).map(Some);
        }
        if let Some(body) = self.body.take() {
            // First receive(): only now is the body read (and 100 Continue sent).
            self.ctx
                .runtime
                .spawn(pump_request_body(self.exchange.clone(), body));
        }
        match self.exchange.receive(self.body_delivered) {
            BodyEvent::Chunk { data, more } => {
                if !more {
                    self.body_delivered = true;
                }
                body_message(py, &data, more).map(Some)
            }
            BodyEvent::Disconnected => disconnect_message(py).map(Some),
            BodyEvent::End => {
                self.body_delivered = true;
                request_message(py, b"", false).map(Some)
            }
            BodyEvent::Pending => Ok(None),
        }
    }

    fn send_room(&self) -> SendRoom {
        self.exchange.send_room()
    }
}

#[pymethods]
impl HttpProtocol {
    /// ASGI `receive()`.
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.poll_receive(py)? {
            Some(message) => Ok(Py::new(py, Ready::new(message))?.into_any()),
            None => self.parked.park(py, &self.ctx, WaitKind::Receive),
        }
    }

    /// ASGI `send(message)`.
    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let kind = match message.get_item(intern!(py, "type"))? {
            Some(kind) => kind,
            None => return Err(ProtocolError::ExpectedStart("None".to_owned()).into()),
        };
        let kind = kind.cast_into::<PyString>()?;
        let kind = kind.to_str()?;
        match (&self.response, kind) {
            (ResponseState::Idle, "http.response.start") => {
                self.start(py, message)?;
                Ok(self.ctx.done(py))
            }
            (ResponseState::Idle, "http.response.early_hint")
                if self.exchange.early_hints_offered() =>
            {
                self.send_early_hint(py, message)
            }
            (ResponseState::Idle, other) => {
                Err(ProtocolError::ExpectedStart(other.to_owned()).into())
            }
            (
                ResponseState::Started { .. } | ResponseState::Streaming { .. },
                "http.response.body",
            ) => self.send_body(py, message),
            (ResponseState::Started { .. }, "http.response.pathsend") => {
                self.send_path(py, message)
            }
            (
                ResponseState::Started { .. } | ResponseState::Streaming { .. },
                "http.response.zerocopysend",
            ) => self.send_zerocopy(py, message),
            (ResponseState::Started { .. } | ResponseState::Streaming { .. }, other) => {
                Err(ProtocolError::ExpectedBody(other.to_owned()).into())
            }
            (ResponseState::Trailers { .. }, "http.response.trailers") => {
                self.send_trailers(py, message)
            }
            (ResponseState::Trailers { .. }, other) => {
                Err(ProtocolError::ExpectedTrailers(other.to_owned()).into())
            }
            (ResponseState::Complete, other) => {
                if self.exchange.is_disconnected() {
                    return Err(Disconnected::Client.into());
                }
                Err(ProtocolError::AfterComplete(other.to_owned()).into())
            }
        }
    }

    /// The app returned. Answers what it left undone; returns the error to log, if any.
    fn app_returned(&mut self) -> Option<&'static str> {
        self.release();
        match self.response {
            ResponseState::Complete => None,
            ResponseState::Idle => {
                if self.exchange.body_failed() {
                    // The request body was malformed, cut off, too large or stalled: the app saw
                    // http.disconnect (400, 413 or 408).
                    self.respond_error(self.exchange.body_failure_status());
                    None
                } else {
                    let gone = self.exchange.is_disconnected();
                    self.respond_error(StatusCode::INTERNAL_SERVER_ERROR);
                    (!gone).then_some("ASGI callable returned without starting response.")
                }
            }
            ResponseState::Started { .. }
            | ResponseState::Streaming { .. }
            | ResponseState::Trailers { .. } => {
                let gone = self.exchange.is_disconnected();
                self.abort_response();
                (!gone).then_some("ASGI callable returned without completing response.")
            }
        }
    }

    /// The app raised: 500 if nothing was sent yet (400/413/408 if the request body failed),
    /// otherwise a broken-off response.
    fn app_failed(&mut self) {
        self.release();
        match self.response {
            ResponseState::Idle if self.exchange.body_failed() => {
                self.respond_error(self.exchange.body_failure_status())
            }
            ResponseState::Idle => self.respond_error(StatusCode::INTERNAL_SERVER_ERROR),
            _ => self.abort_response(),
        }
    }

    /// Whether the client is known to be gone (so a failure need not be logged).
    #[getter]
    fn client_gone(&self) -> bool {
        self.exchange.is_disconnected()
    }
}

/// `message[key]` as a non-negative integer; `None` when missing or `None`.
fn optional_u64(message: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<Option<u64>> {
    match message.get_item(key)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract::<u64>()?)),
        _ => Ok(None),
    }
}

/// An `OSError` naming the file (the errno picks its subclass: `FileNotFoundError`, ...).
fn file_error(err: &std::io::Error, path: &std::path::Path) -> PyErr {
    let text = err.to_string();
    let reason = text.split(" (os error").next().unwrap_or(&text).to_owned();
    match err.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, reason, path.display().to_string())),
        None => PyOSError::new_err(format!("{reason}: {}", path.display())),
    }
}

/// The Content-Length the app declared (the last one, each checked), if any.
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ProtocolError> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        length = Some(parse_length(value)?);
    }
    Ok(length)
}

fn parse_length(value: &http::HeaderValue) -> Result<u64, ProtocolError> {
    std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .ok_or(ProtocolError::InvalidContentLength)
}

/// Enforce a declared Content-Length; returns the bytes still owed.
fn check_length(declared: Option<u64>, len: usize, more: bool) -> PyResult<Option<u64>> {
    let Some(declared) = declared else {
        return Ok(None);
    };
    let len = len as u64;
    if len > declared {
        return Err(ProtocolError::TooLong.into());
    }
    let left = declared - len;
    if !more && left > 0 {
        return Err(ProtocolError::TooShort.into());
    }
    Ok(Some(left))
}

fn request_message(py: Python<'_>, body: &[u8], more: bool) -> PyResult<Py<PyAny>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    message.set_item(intern!(py, "body"), PyBytes::new(py, body))?;
    message.set_item(intern!(py, "more_body"), more)?;
    Ok(message.into_any().unbind())
}

/// An `http.request` message carrying `data` as one `bytes` object (one copy, straight into it).
fn body_message(py: Python<'_>, data: &BodyBytes, more: bool) -> PyResult<Py<PyAny>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    message.set_item(intern!(py, "body"), uninit_bytes_from(py, data)?)?;
    message.set_item(intern!(py, "more_body"), more)?;
    Ok(message.into_any().unbind())
}

/// `data` as a new `bytes`, written once: `PyBytes::new_with` would zero the buffer first, a
/// second pass over every body byte.
fn uninit_bytes_from<'py>(py: Python<'py>, data: &BodyBytes) -> PyResult<Bound<'py, PyBytes>> {
    let len = data.len();
    let Ok(py_len) = pyo3::ffi::Py_ssize_t::try_from(len) else {
        return Err(pyo3::exceptions::PyOverflowError::new_err("body too large"));
    };
    // SAFETY: with a null source, PyBytes_FromStringAndSize allocates an uninitialised bytes
    // object of `py_len` bytes (or fails, setting an exception); the GIL is held.
    let object = unsafe { pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), py_len) };
    // SAFETY: `object` is a new reference or null with an exception set, as `from_owned_ptr_or_err` expects.
    let bytes = unsafe { Bound::from_owned_ptr_or_err(py, object)? }.cast_into::<PyBytes>()?;
    // SAFETY: the object was created just now and nothing else refers to it, so its buffer of
    // exactly `len` bytes may be written before it is shared.
    let out = unsafe {
        std::slice::from_raw_parts_mut(
            pyo3::ffi::PyBytes_AsString(bytes.as_ptr()).cast::<u8>(),
            len,
        )
    };
    data.copy_to(out);
    Ok(bytes)
}

fn disconnect_message(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let message = PyDict::new(py);
    message.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(message.into_any().unbind())
}

#[cfg(test)]
mod tests {
    use super::check_length;

    #[test]
    fn content_length_is_enforced() {
        assert_eq!(check_length(None, 10, false).ok(), Some(None));
        assert_eq!(check_length(Some(10), 4, true).ok(), Some(Some(6)));
        assert_eq!(check_length(Some(10), 10, false).ok(), Some(Some(0)));
        assert!(
            check_length(Some(10), 11, true).is_err(),
            "longer than declared"
        );
        assert!(check_length(Some(10), 9, false).is_err(), "ended short");
    }
}
