//! `WebSocketProtocol`: the ASGI `receive()`/`send()` of one WebSocket, as seen by the app.
//!
//! Runs on the asyncio thread with the GIL held and talks to the tokio side only through the
//! connection's [`Channel`]. Like `HttpProtocol`, it returns ready awaitables when it can
//! answer at once, and parks the app on an `asyncio.Future` (woken through the bridge) when it
//! must wait.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use http::{HeaderValue, Response, StatusCode};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::awaitable::Ready;
use super::context::PyContext;
use super::messages::{append_headers, bytes_from_py, flag, optional_str};
use super::waiters::{on_wake, Parked, Wakeable};
use crate::bridge::{LogLevel, SendRoom, WaitKind};
use crate::errors::{Disconnected, ProtocolError};
use crate::exchange::{plain_response, ResponseBody};
use crate::websocket::channel::{Channel, ChannelEvent, Inbound, Outbound};
use crate::websocket::frame::is_valid_app_code;
use crate::websocket::handshake::Handshake;

enum State {
    /// `websocket.connect` delivered (or about to be); waiting for the app's answer.
    Connecting,
    /// The app is sending a denial response (`websocket.http.response`).
    Denying {
        head: http::response::Parts,
        body: Vec<u8>,
    },
    Open,
    /// Closed by the app or denied: `send()` raises.
    Closed,
}

#[pyclass(module = "ferrocorn._ferrocorn")]
pub struct WebSocketProtocol {
    ctx: Arc<PyContext>,
    channel: Arc<Channel>,
    handshake: Handshake,
    state: State,
    connect_delivered: bool,
    /// `client - "WebSocket /path"`, for uvicorn's log lines.
    log_prefix: String,
    parked: Parked,
}

impl WebSocketProtocol {
    pub fn new(
        ctx: Arc<PyContext>,
        channel: Arc<Channel>,
        handshake: Handshake,
        log_prefix: String,
    ) -> Self {
        Self {
            ctx,
            channel,
            handshake,
            state: State::Connecting,
            connect_delivered: false,
            log_prefix,
            parked: Parked::default(),
        }
    }

    pub fn on_wake(&mut self, py: Python<'_>, kind: WaitKind) -> PyResult<()> {
        on_wake(self, py, kind)
    }

    fn log_info(&self, py: Python<'_>, outcome: &str) -> PyResult<()> {
        self.ctx.log(
            py,
            LogLevel::Info,
            format!("{} {}", self.log_prefix, outcome),
        )
    }

    fn accept(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let mut response = Response::new(ResponseBody::Full(None));
        let headers = response.headers_mut();
        if let Some(accept) = &self.handshake.accept {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept.clone());
        }
        if let Some(subprotocol) = optional_str(message, intern!(py, "subprotocol"))? {
            let value = HeaderValue::from_str(&subprotocol)
                .map_err(|_| ProtocolError::InvalidSubprotocol(subprotocol.clone()))?;
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        if let Some(deflate) = &self.handshake.deflate {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, deflate.response_header());
        }
        if let Some(extra) = message.get_item(intern!(py, "headers"))? {
            append_headers(headers, &extra, self.ctx.fields_added())?;
        }
        self.ctx.add_default_headers(response.headers_mut());
        *response.status_mut() = if self.handshake.http2 {
            StatusCode::OK
        } else {
            StatusCode::SWITCHING_PROTOCOLS
        };
        self.log_info(py, "[accepted]")?;
        if let Err(gone) = self.channel.respond(response) {
            self.state = State::Closed;
            return Err(gone.into());
        }
        self.state = State::Open;
        Ok(self.ctx.done(py))
    }

    /// `websocket.close` before accept: 403, as the ASGI spec says.
    fn deny(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.log_info(py, "403")?;
        let mut response = plain_response(StatusCode::FORBIDDEN, "");
        self.ctx.add_default_headers(response.headers_mut());
        self.state = State::Closed;
        let sent = self.channel.respond(response);
        self.channel.app_ended(1006, "");
        sent?;
        Ok(self.ctx.done(py))
    }

    fn start_denial(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let status = match message.get_item(intern!(py, "status"))? {
            Some(status) => status.extract::<i64>()?,
            None => 0,
        };
        let code = u16::try_from(status)
            .ok()
            .filter(|code| (100..600).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(ProtocolError::InvalidDenialStatus(status))?;
        let (mut head, ()) = Response::new(()).into_parts();
        head.status = code;
        if let Some(headers) = message.get_item(intern!(py, "headers"))? {
            append_headers(&mut head.headers, &headers, self.ctx.fields_added())?;
        }
        self.log_info(py, &code.as_u16().to_string())?;
        self.state = State::Denying {
            head,
            body: Vec::new(),
        };
        Ok(())
    }

    fn denial_body(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let more = flag(message, intern!(py, "more_body"))?;
        if let (Some(chunk), State::Denying { body, .. }) =
            (message.get_item(intern!(py, "body"))?, &mut self.state)
        {
            body.extend_from_slice(chunk.cast::<PyBytes>()?.as_bytes());
        }
        if more {
            return Ok(self.ctx.done(py));
        }
        let State::Denying { mut head, body } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Ok(self.ctx.done(py));
        };
        if !head.headers.contains_key(CONTENT_TYPE) {
            head.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        if !self.handshake.http2 {
            // The connection cannot go on as HTTP/1.1 after a refused upgrade. (HTTP/2 has no
            // connection-specific headers: only this stream ends.)
            head.headers
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        self.ctx.add_default_headers(&mut head.headers);
        let response = Response::from_parts(head, ResponseBody::Full(Some(Bytes::from(body))));
        let sent = self.channel.respond(response);
        self.channel.app_ended(1006, "");
        sent?;
        Ok(self.ctx.done(py))
    }

    fn send_data(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let outbound = match message.get_item(intern!(py, "bytes"))? {
            Some(data) if !data.is_none() => Outbound::Binary(bytes_from_py(data)?),
            _ => match message.get_item(intern!(py, "text"))? {
                Some(text) if !text.is_none() => {
                    let text = text.cast_into::<PyString>()?;
                    Outbound::Text(Bytes::copy_from_slice(text.to_str()?.as_bytes()))
                }
                _ => return Err(ProtocolError::EmptySend.into()),
            },
        };
        if self.channel.push_out(outbound)? {
            self.parked.park(py, &self.ctx, WaitKind::Send)
        } else {
            Ok(self.ctx.done(py))
        }
    }

    fn close(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let code = match message.get_item(intern!(py, "code"))? {
            Some(code) if !code.is_none() => code.extract::<i64>()?,
            _ => 1000,
        };
        if !is_valid_app_code(code) {
            return Err(ProtocolError::InvalidCloseCode(code).into());
        }
        let code = code as u16;
        let reason = optional_str(message, intern!(py, "reason"))?.unwrap_or_default();
        self.state = State::Closed;
        let queued = self.channel.push_out(Outbound::Close(code, reason.clone()));
        self.channel.app_ended(code, &reason);
        queued?;
        Ok(self.ctx.done(py))
    }

    /// End the connection for an app that is done: 500 before the handshake completed, a
    /// close frame with `code` after.
    fn finish(&mut self, code: u16) {
        self.ctx.release(self.channel.id());
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Connecting | State::Denying { .. } => {
                let mut response =
                    plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                self.ctx.add_default_headers(response.headers_mut());
                let _ = self.channel.respond(response);
                self.channel.app_ended(1006, "");
            }
            State::Open => {
                let _ = self.channel.push_out(Outbound::Close(code, String::new()));
                self.channel.app_ended(code, "");
            }
            State::Closed => {}
        }
    }
}

#[pymethods]
impl WebSocketProtocol {
    /// ASGI `receive()`.
    fn receive(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.connect_delivered {
            self.connect_delivered = true;
            let message = PyDict::new(py);
            message.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Py::new(py, Ready::new(message.into_any().unbind()))?.into_any());
        }
        match self.poll_receive(py)? {
            Some(message) => Ok(Py::new(py, Ready::new(message))?.into_any()),
            None => self.parked.park(py, &self.ctx, WaitKind::Receive),
        }
    }

    /// ASGI `send(message)`.
    fn send(&mut self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let kind = message
            .get_item(intern!(py, "type"))?
            .ok_or(ProtocolError::MissingType)?;
        let kind = kind.cast_into::<PyString>()?;
        let kind = kind.to_str()?;
        match (&self.state, kind) {
            (State::Connecting, "websocket.accept") => self.accept(py, message),
            (State::Connecting, "websocket.close") => self.deny(py),
            (State::Connecting, "websocket.http.response.start") => {
                self.start_denial(py, message)?;
                Ok(self.ctx.done(py))
            }
            (State::Connecting, other) => {
                Err(ProtocolError::ExpectedHandshake(other.to_owned()).into())
            }
            (State::Denying { .. }, "websocket.http.response.body") => {
                self.denial_body(py, message)
            }
            (State::Denying { .. }, other) => {
                Err(ProtocolError::ExpectedResponseBody(other.to_owned()).into())
            }
            (State::Open, "websocket.send") => self.send_data(py, message),
            (State::Open, "websocket.close") => self.close(py, message),
            (State::Open, other) => {
                Err(ProtocolError::ExpectedSendOrClose(other.to_owned()).into())
            }
            // ASGI 2.4: send() on a closed connection raises an OSError subclass.
            (State::Closed, _) => Err(Disconnected::Closed.into()),
        }
    }

    /// The app returned. Returns the error to log, if any.
    fn app_returned(&mut self) -> Option<&'static str> {
        let problem = match self.state {
            State::Connecting if !self.client_gone() => {
                Some("ASGI callable returned without completing handshake.")
            }
            State::Denying { .. } if !self.client_gone() => {
                Some("ASGI callable returned without completing response.")
            }
            _ => None,
        };
        self.finish(1000);
        problem
    }

    /// The app raised: 500 before the handshake completed, close 1011 after.
    fn app_failed(&mut self) {
        self.finish(1011);
    }

    /// Whether the client is known to be gone (so a failure need not be logged).
    #[getter]
    fn client_gone(&self) -> bool {
        self.channel.client_gone()
    }
}

impl Wakeable for WebSocketProtocol {
    fn parked(&mut self) -> &mut Parked {
        &mut self.parked
    }

    fn poll_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.channel.receive() {
            ChannelEvent::Message(message) => receive_message(py, message).map(Some),
            ChannelEvent::Ended(code, reason) => disconnect_message(py, code, &reason).map(Some),
            ChannelEvent::Pending => Ok(None),
        }
    }

    fn send_room(&self) -> SendRoom {
        match self.channel.send_room() {
            // Closed by the app itself: a send() that waited for room just returns.
            SendRoom::Gone if matches!(self.state, State::Closed) => SendRoom::Available,
            room => room,
        }
    }
}

fn receive_message(py: Python<'_>, message: Inbound) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
    match message {
        Inbound::Text(data) => {
            // Checked on the I/O side; a failure here would be a bug, reported as an error.
            let text = std::str::from_utf8(&data)
                .map_err(|_| PyRuntimeError::new_err("invalid UTF-8 in a text message"))?;
            dict.set_item(intern!(py, "text"), PyString::new(py, text))?;
        }
        Inbound::Binary(data) => {
            dict.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
        }
    }
    Ok(dict.into_any().unbind())
}

fn disconnect_message(py: Python<'_>, code: u16, reason: &str) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    dict.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
    dict.set_item(intern!(py, "code"), code)?;
    dict.set_item(intern!(py, "reason"), reason)?;
    Ok(dict.into_any().unbind())
}
