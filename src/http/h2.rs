//! HTTP/2 glue: hyper's h2 connection with hardened settings, serving the shared request
//! service, with the RFC 9113 §8 checks h2 leaves to the server and an idle timeout (hyper has
//! none for HTTP/2).
//!
//! The flood defences are h2's (rapid reset, CONTINUATION, empty DATA, SETTINGS and PING
//! floods); they are set explicitly here so that a dependency update cannot quietly relax them.

use std::sync::Arc;

use http::header::HOST;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::service::handle_request;
use super::stream_executor::{Joined, StreamExecutor};
use super::upgrade::is_websocket_request;
use crate::conn::{
    drive, ConnActivity, ConnStream, Protocol, StreamHold, StreamProgress, TrackedBody,
};
use crate::metrics;
use crate::net::interim::{Framing, Interim};
use crate::net::ConnInfo;
use crate::settings::Http2Settings;
use crate::shared::Shared;

/// Streams a client may reset before the server has accepted them (CVE-2023-44487, rapid reset).
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset because of client errors before it sends GOAWAY (MadeYouReset).
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Response bytes buffered per stream for a slow reader.
const MAX_SEND_BUF_SIZE: usize = 400 * 1024;

/// A connection's builder. `extended_connect`: advertise RFC 8441's extended CONNECT (WebSockets are on).
pub fn builder(
    h2: &Http2Settings,
    date_header: bool,
    extended_connect: bool,
    executor: StreamExecutor,
) -> http2::Builder<StreamExecutor> {
    let mut builder = http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .initial_stream_window_size(h2.initial_stream_window_size)
        .initial_connection_window_size(h2.initial_connection_window_size)
        .max_frame_size(h2.max_frame_size)
        .max_header_list_size(h2.max_header_list_size)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS)
        .max_send_buf_size(MAX_SEND_BUF_SIZE)
        .keep_alive_interval(h2.keep_alive_interval)
        .keep_alive_timeout(h2.keep_alive_timeout)
        .auto_date_header(date_header);
    if extended_connect {
        // RFC 8441: WebSockets over HTTP/2 through extended CONNECT (crate::websocket).
        builder.enable_connect_protocol();
    }
    builder
}

/// Serves HTTP/2 on `io` (after the preface was detected, or ALPN chose h2) until the client
/// leaves, the connection idles out, or the server shuts down (GOAWAY, then in-flight streams
/// finish).
pub async fn serve<S>(shared: &Arc<Shared>, io: S, conn: Arc<ConnInfo>, activity: Arc<ConnActivity>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(h2) = &shared.settings.http2 else {
        return;
    };
    let executor = StreamExecutor::new(shared.settings.response_write_timeout);
    let builder = builder(
        h2,
        shared.settings.date_header,
        shared.settings.websocket.is_some(),
        executor.clone(),
    );
    // The idle clock starts with HTTP/2, not with the connection.
    activity.mark_idle();
    // The one stream under hyper: 103 Early Hints written between h2's frames by the interim
    // writer (net/interim_writer.rs), and the slow-head clock's view of the client's frames
    // (conn/header_blocks.rs), both fed by one reader of those frames.
    let interim = Arc::new(Interim::new(Framing::Http2));
    let io = ConnStream::http2(io, activity.clone(), interim.clone());
    let service_shared = shared.clone();
    let service_activity = activity.clone();
    let service_executor = executor.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        // Called once per stream h2 hands to hyper, in order: the interim writer's target for it.
        let hints = interim.accept();
        let guard = service_activity.begin();
        let mut meter = service_shared
            .settings
            .metrics
            .request(metrics::Protocol::Http2);
        // The response's progress, watched by the stream's watchdog (stream_executor.rs).
        let progress = StreamProgress::new();
        service_executor.watch_next(progress.clone());
        if is_websocket_request(&request) {
            // The response ends with the 200, but the stream carries the WebSocket after it:
            // it stays counted as open (no idle timeout, GOAWAY deferred) until the session ends.
            let hold = StreamHold::new(service_activity.begin());
            request.extensions_mut().insert(hold);
        }
        let response = match malformed(&request) {
            // hyper answers a service error carrying an h2 reason with RST_STREAM(reason).
            Some(reason) => Err(h2::Error::from(reason)),
            None => Ok(handle_request(&service_shared, &conn, request, hints)),
        };
        async move {
            let response = match response?.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            meter.responded(response.status().as_u16());
            Ok::<_, h2::Error>(
                response.map(|body| TrackedBody::watched(body, guard, meter, progress)),
            )
        }
    });
    let connection = Joined::new(
        builder.serve_connection(TokioIo::new(io), service),
        executor,
    );
    let protocol = Protocol::Http2 {
        idle_limit: shared.settings.keep_alive_timeout,
    };
    drive(
        shared,
        connection,
        |joined| joined.connection().graceful_shutdown(),
        &activity,
        protocol,
    )
    .await
}

/// The RFC 9113 §8 checks h2 leaves to the server: a request failing one is malformed and its
/// stream is reset with PROTOCOL_ERROR before the app sees it.
fn malformed(request: &Request<Incoming>) -> Option<h2::Reason> {
    // §8.2.1: a field value must not begin or end with whitespace.
    let padded = request.headers().values().any(|value| {
        let bytes = value.as_bytes();
        matches!(bytes.first(), Some(b' ' | b'\t')) || matches!(bytes.last(), Some(b' ' | b'\t'))
    });
    // §8.3.1: a Host header must name the same entity as :authority.
    let host_differs = match (request.uri().authority(), request.headers().get(HOST)) {
        (Some(authority), Some(host)) => !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes()),
        _ => false,
    };
    (padded || host_differs).then_some(h2::Reason::PROTOCOL_ERROR)
}
