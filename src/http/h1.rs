//! HTTP/1.1 glue: hyper's h1 connection, configured for an ASGI server, serving the shared
//! request service.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Version};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::service::handle_request;
use crate::conn::{drive, ConnActivity, ConnStream, Protocol, TrackedBody};
use crate::metrics;
use crate::net::interim::{Framing, Interim};
use crate::net::ConnInfo;
use crate::settings::ServerSettings;
use crate::shared::Shared;

/// The HTTP/1.1 connection builder every connection shares (`Shared::http1`).
pub fn builder(settings: &ServerSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper starts this clock when the connection becomes idle, so it cannot tell
        // --timeout-keep-alive from --timeout-request-head: both are the connection's
        // `ClientClock`'s (conn/client_clock.rs), which also runs while the server drains.
        // Off, not a backstop: hyper boxes and registers a timer for every request head,
        // ~10 % of the I/O thread's instructions on a plain GET (docs/performance.md).
        .header_read_timeout(None)
        .auto_date_header(settings.date_header);
    // Not `pipeline_flush`: with it hyper skips the flush while unparsed bytes remain, which
    // loses the automatic 400 for a malformed request (the bad bytes are still buffered).
    builder.max_header_size(settings.max_header_size);
    // Queue body buffers as they are, never copy them into one buffer: a sendfile stand-in
    // (net::sendfile) must reach the transport as the slice it is.
    builder.writev(true);
    // `--limit-request-headers`: hyper answers 431 past it.
    builder.max_headers(settings.limit_request_headers);
    builder
}

/// Serves HTTP/1.1 on `io` until the client leaves or the server shuts down.
pub async fn serve<S>(shared: &Arc<Shared>, io: S, conn: Arc<ConnInfo>, activity: Arc<ConnActivity>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // `--early-hints-http1`: 103 Early Hints are written by the interim writer
    // (net/interim_writer.rs) when hyper's buffer is empty; never to an HTTP/1.0 request
    // (RFC 9110 §15.2).
    let interim = shared
        .settings
        .early_hints_http1
        .then(|| Arc::new(Interim::new(Framing::Http1)));
    // The one stream under hyper: the interim writer if any, and the 408 of a head that took
    // too long (conn/last_words.rs).
    let io = ConnStream::http1(io, activity.clone(), conn.tls.is_some(), interim.clone());
    let service_shared = shared.clone();
    let service_activity = activity.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        // Counted open until hyper is done with the response: the drain tells a connection
        // between requests from a busy one by it.
        let guard = service_activity.begin();
        let hints = match (&interim, request.version()) {
            (Some(interim), Version::HTTP_11) => interim.accept(),
            _ => None,
        };
        let mut meter = service_shared
            .settings
            .metrics
            .request(metrics::Protocol::Http1);
        let response = handle_request(&service_shared, &conn, request, hints);
        async move {
            let response = match response.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            meter.responded(response.status().as_u16());
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, guard, meter)))
        }
    });
    let connection = shared
        .http1
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades(); // WebSockets take over the connection after a 101
    drive(
        shared,
        connection,
        |c| c.graceful_shutdown(),
        &activity,
        Protocol::Http1,
    )
    .await
}
