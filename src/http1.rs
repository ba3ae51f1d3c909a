//! HTTP/1.1 glue: hyper's h1 connection, configured for an ASGI server, and the service that
//! turns each request into an [`Exchange`] handed to Python (HTTP/2 uses the same service).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::bridge::{Event, LogLevel};
use crate::conn::{self, ConnActivity, Protocol, TrackedBody};
use crate::exchange::{
    plain_response, pump_request_body, ConnInfo, Exchange, RequestBody, RequestHead, ResponseBody,
};
use crate::server::{Settings, Shared};
use crate::websocket::upgrade as websocket;

/// Request line plus headers, in bytes, above which a request gets 431. uvicorn's h11 uses 16 KiB,
/// which large SSO cookies exceed; nginx allows 4 x 8 KiB per line. `--h11-max-incomplete-event-size`
/// overrides it.
pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

pub fn builder(settings: &Settings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper applies this to idle keep-alive connections too, so it is uvicorn's
        // --timeout-keep-alive and also bounds slow-header (slowloris) clients.
        .header_read_timeout(settings.keep_alive_timeout)
        .auto_date_header(settings.date_header);
    // Not `pipeline_flush`: with it hyper skips the flush while unparsed bytes remain, which
    // loses the automatic 400 for a malformed request (the bad bytes are still buffered).
    builder.max_header_size(settings.max_header_size.unwrap_or(DEFAULT_MAX_HEADER_SIZE));
    builder
}

/// Serves HTTP/1.1 on `io` until the client leaves or the server shuts down.
pub async fn serve<S>(shared: &Arc<Shared>, io: S, conn: Arc<ConnInfo>, activity: Arc<ConnActivity>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service_activity = activity.clone();
    let service = service_fn(move |request| {
        // Counted open until hyper is done with the response: the drain tells a connection
        // between requests from a busy one by it.
        let guard = service_activity.begin();
        let response = handle_request(&service_shared, &conn, request);
        async move {
            let response = match response.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard)))
        }
    });
    let connection = shared
        .http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades(); // WebSockets take over the connection after a 101
    conn::drive(
        shared,
        connection,
        |c| c.graceful_shutdown(),
        &activity,
        Protocol::Http1,
    )
    .await
}

/// Marks the exchange as abandoned if hyper drops the service future before the app answered:
/// that only happens when the client has gone.
struct AnswerGuard {
    exchange: Arc<Exchange>,
    answered: bool,
}

impl Drop for AnswerGuard {
    fn drop(&mut self) {
        if !self.answered {
            self.exchange.client_gone();
        }
    }
}

/// Called by hyper as soon as a request head is parsed. The hand-off to Python happens here,
/// synchronously: hyper may drop the returned future without polling it (a client that sends a
/// request and closes at once), and the request must still reach the app, which then sees the
/// disconnect.
pub fn handle_request(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static {
    // --- WebSocket hook: upgrade requests (HTTP/1.1) and extended CONNECTs (HTTP/2) go to
    // crate::websocket; with `--ws none` they are served as plain HTTP.
    let websocket = if websocket::is_websocket_request(&request) && validate_host(&request).is_ok()
    {
        if shared.websocket.is_none() {
            shared
                .bridge
                .log(LogLevel::Warning, "Unsupported upgrade request.".to_owned());
        }
        shared.websocket.clone()
    } else {
        None
    };
    if let Some(settings) = websocket {
        if shared.over_concurrency_limit() {
            // As uvicorn: a WebSocket handshake past --limit-concurrency is refused like a request.
            shared
                .bridge
                .log(LogLevel::Warning, "Exceeded concurrency limit.".to_owned());
            return answer(Handoff::Respond(plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            )));
        }
        let handoff = match websocket::hand_over(shared, &settings, conn.clone(), request) {
            Ok((response, guard)) => Handoff::WebSocket(response, guard),
            Err(response) => Handoff::Respond(response),
        };
        return answer(handoff);
    }
    // --- end of the WebSocket hook.
    let handoff = match validate_host(&request) {
        Err(reason) => Handoff::Respond(bad_request(reason)),
        Ok(()) if shared.over_concurrency_limit() => {
            shared
                .bridge
                .log(LogLevel::Warning, "Exceeded concurrency limit.".to_owned());
            Handoff::Respond(plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            ))
        }
        Ok(()) => {
            let (response, guard) = hand_over(shared, conn.clone(), request);
            Handoff::Http(response, guard)
        }
    };
    answer(handoff)
}

/// Where the answer to a request comes from.
enum Handoff {
    /// The server answers itself.
    Respond(Response<ResponseBody>),
    /// The app answers through the exchange.
    Http(oneshot::Receiver<Response<ResponseBody>>, AnswerGuard),
    /// The app answers a WebSocket handshake.
    WebSocket(
        oneshot::Receiver<Response<ResponseBody>>,
        websocket::HandshakeGuard,
    ),
}

async fn answer(handoff: Handoff) -> Result<Response<ResponseBody>, Infallible> {
    match handoff {
        Handoff::Respond(response) => Ok(response),
        Handoff::Http(response, mut guard) => {
            let response = response.await;
            guard.answered = true;
            Ok(response.unwrap_or_else(|_| internal_server_error()))
        }
        Handoff::WebSocket(response, mut guard) => {
            let response = response.await;
            guard.answered();
            Ok(response.unwrap_or_else(|_| internal_server_error()))
        }
    }
}

fn hand_over(
    shared: &Shared,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> (oneshot::Receiver<Response<ResponseBody>>, AnswerGuard) {
    let id = shared.next_request_id();
    let (responder, response) = oneshot::channel();
    let exchange = Arc::new(Exchange::new(
        id,
        shared.bridge.clone(),
        shared.in_flight.clone(),
        responder,
    ));
    let (parts, body) = request.into_parts();
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else if expects_continue(&parts) {
        RequestBody::OnFirstReceive(body)
    } else {
        // Start reading now, so that the body is usually there when the app asks for it.
        tokio::spawn(pump_request_body(exchange.clone(), body));
        RequestBody::Pumping
    };
    let guard = AnswerGuard {
        exchange: exchange.clone(),
        answered: false,
    };
    shared.bridge.push(Event::Request(Box::new(RequestHead {
        id,
        parts,
        body,
        conn,
        exchange,
    })));
    (response, guard)
}

fn expects_continue(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host, and it must be `host[:port]`.
/// hyper does not check this; the app never sees such a request.
fn validate_host<B>(request: &Request<B>) -> Result<(), &'static str> {
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

fn bad_request(reason: &'static str) -> Response<ResponseBody> {
    plain_response(StatusCode::BAD_REQUEST, reason)
}

/// Only reached if the Python side dropped an exchange without answering (it always answers,
/// even for a failing app); kept so that the client still gets a well-formed reply.
fn internal_server_error() -> Response<ResponseBody> {
    plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
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
