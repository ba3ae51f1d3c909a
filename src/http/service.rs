//! The request service both protocols share: called by hyper as soon as a request head is
//! parsed, it answers what the server must answer itself (a bad Host, `--limit-concurrency`)
//! and hands everything else to Python as a job, then waits for the app's response head.
//!
//! The hand-off happens synchronously, in the call: hyper may drop the returned future without
//! polling it (a client that sends a request and closes at once), and the request must still
//! reach the app, which then sees the disconnect.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use tokio::sync::oneshot;

use super::framing::{check_framing, Refusal};
use super::host::validate_host;
use super::limits::{check_limits, HeadLimits};
use super::upgrade;
use crate::access::{AccessEntry, AccessLog, Finished};
use crate::bridge::LogLevel;
use crate::exchange::{
    plain_response, pump_request_body, BodyLimits, Exchange, RequestBody, ResponseBody,
    ResponseReceiver,
};
use crate::jobs::{Event, Job, RequestHead};
use crate::net::interim::HintTarget;
use crate::net::ConnInfo;
use crate::shared::Shared;
use crate::websocket::channel::Channel;

/// `hints`: the connection's interim writer for this request (HTTP/2), if it can send early hints.
pub fn handle_request(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    request: Request<Incoming>,
    hints: Option<HintTarget>,
) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static {
    // RFC 9112 framing and request-target checks, then the Host check, then the limits: a
    // request failing one never reaches the app.
    let host = check_framing(&request)
        .and_then(|()| {
            validate_host(&request).map_err(|reason| Refusal {
                status: StatusCode::BAD_REQUEST,
                reason,
            })
        })
        .and_then(|()| check_limits(&request, &HeadLimits::of(&shared.settings)));
    // Upgrade requests (HTTP/1.1) and extended CONNECTs (HTTP/2) are WebSockets, unless
    // `--ws none` serves them as plain HTTP.
    let websocket = host.is_ok() && upgrade::is_websocket_request(&request);
    if websocket && shared.settings.websocket.is_none() {
        shared
            .bridge
            .log(LogLevel::Warning, "Unsupported upgrade request.".to_owned());
    }
    let handoff = match (host, &shared.settings.websocket) {
        (Err(refusal), _) => {
            // As for hyper's own 400s (and uvicorn's).
            shared.bridge.log(
                LogLevel::Warning,
                "Invalid HTTP request received.".to_owned(),
            );
            Handoff::Respond(Box::new(plain_response(refusal.status, refusal.reason)))
        }
        // As uvicorn: a WebSocket handshake past the limit is refused like a request.
        (Ok(()), _) if shared.over_concurrency_limit() => {
            shared
                .bridge
                .log(LogLevel::Warning, "Exceeded concurrency limit.".to_owned());
            Handoff::Respond(Box::new(plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
            )))
        }
        (Ok(()), Some(settings)) if websocket => {
            match upgrade::hand_over(shared, settings, conn.clone(), request) {
                Ok((response, channel)) => {
                    Handoff::App(response, Unanswered(Some(Abandon::WebSocket(channel))))
                }
                Err(refusal) => Handoff::Respond(Box::new(refusal)),
            }
        }
        (Ok(()), _) => {
            let access = shared.settings.access_log.as_ref().map(|log| {
                let entry = log.entry(&request, conn, shared.settings.proxies.as_ref());
                Box::new((log.clone(), entry))
            });
            let (response, exchange) = hand_over(shared, conn.clone(), request, hints);
            Handoff::Request(AppRequest {
                response,
                unanswered: Unanswered(Some(Abandon::Request(exchange.clone()))),
                exchange,
                access,
            })
        }
    };
    answer(handoff)
}

/// Where the answer to a request comes from. Small, like everything the service future holds:
/// hyper moves that future several times per request (boxed here: the rare answers and the
/// access record).
enum Handoff {
    /// The server answers itself.
    Respond(Box<Response<ResponseBody>>),
    /// The app answers a WebSocket handshake.
    App(ResponseReceiver, Unanswered),
    /// The app answers a request.
    Request(AppRequest),
}

/// A request the app answers: early hints it sends go out before its response, and its access
/// record is written when the core writes the access log.
struct AppRequest {
    response: ResponseReceiver,
    unanswered: Unanswered,
    exchange: Arc<Exchange>,
    access: Option<Box<(Arc<AccessLog>, AccessEntry)>>,
}

async fn answer(handoff: Handoff) -> Result<Response<ResponseBody>, Infallible> {
    let (response, mut unanswered, exchange, access) = match handoff {
        Handoff::Respond(response) => return Ok(*response),
        Handoff::App(response, unanswered) => (response, unanswered, None, None),
        Handoff::Request(request) => (
            request.response,
            request.unanswered,
            Some(request.exchange),
            request.access,
        ),
    };
    let mut response = response.await;
    unanswered.answered();
    // The 103s the app sent go out before the response: hyper gets the response only once
    // the interim writer has written (or dropped) them. Boxed meanwhile, so that the
    // future stays small when there are none (see `Handoff`).
    if let Some(hints) = exchange.as_deref().and_then(Exchange::hints) {
        if hints.waiting() {
            let held = Box::new(response);
            std::future::poll_fn(|cx| hints.poll_written(cx)).await;
            response = *held;
        }
    }
    // An error only if the Python side dropped the job without answering (it always answers,
    // even for a failing app); the client still gets a well-formed reply.
    let response = response.unwrap_or_else(|_| {
        plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    });
    Ok(match access {
        None => response,
        Some(access) => {
            let (log, entry) = *access;
            logged(log, entry, response)
        }
    })
}

/// The response with its access record: written now (uvicorn's line), or when the body ends.
fn logged(
    log: Arc<AccessLog>,
    entry: AccessEntry,
    response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let status = response.status().as_u16();
    if log.at_start() {
        log.started(&entry, status);
        return response;
    }
    let record = Finished::new(&log, entry, status, response.headers());
    response.map(|body| ResponseBody::logged(body, log, record))
}

/// What the app's side must be told if the client leaves before the app answered.
enum Abandon {
    Request(Arc<Exchange>),
    WebSocket(Arc<Channel>),
}

/// Tells the app's side that the client has gone if hyper drops the service future before the
/// app answered: that only happens when the client has gone.
struct Unanswered(Option<Abandon>);

impl Unanswered {
    fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Abandon::Request(exchange)) => exchange.client_gone(),
            Some(Abandon::WebSocket(channel)) => channel.end(1006, ""),
            None => {}
        }
    }
}

fn hand_over(
    shared: &Shared,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
    hints: Option<HintTarget>,
) -> (ResponseReceiver, Arc<Exchange>) {
    let id = shared.next_request_id();
    let (responder, response) = oneshot::channel();
    // HTTP/2 frames body bytes itself: only HTTP/1.x bodies may leave theirs to sendfile(2).
    let sendfile = match request.version() {
        http::Version::HTTP_2 | http::Version::HTTP_3 => None,
        _ => conn.sendfile.clone(),
    };
    let exchange = Arc::new(Exchange::new(
        id,
        shared.wakes(),
        shared.in_flight(),
        responder,
        sendfile,
        hints,
    ));
    exchange.limit_body(BodyLimits {
        max_size: shared.settings.limit_request_body_size,
        idle_timeout: Some(shared.settings.request_body_timeout),
        metrics: shared.settings.metrics,
    });
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
    shared
        .bridge
        .push(Event::Start(Job::Request(Box::new(RequestHead {
            id,
            parts,
            body,
            conn,
            exchange: exchange.clone(),
        }))));
    (response, exchange)
}

fn expects_continue(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}
