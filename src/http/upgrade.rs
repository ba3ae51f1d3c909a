//! The WebSocket hook in the HTTP service: an upgrade request is validated here, handed to
//! Python as a [`Job::WebSocket`], and once hyper has sent the app's 101 (or 200 over HTTP/2),
//! the upgraded connection becomes a [`Session`].

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::conn::StreamHold;
use crate::exchange::{plain_response, ResponseBody, ResponseReceiver};
use crate::jobs::{Event, Job, WebSocketHead};
use crate::net::ConnInfo;
use crate::settings::WebSocketSettings;
use crate::shared::Shared;
use crate::websocket::channel::Channel;
use crate::websocket::deflate::DeflateParams;
use crate::websocket::handshake::{self, HandshakeError};
use crate::websocket::session::Session;

/// Whether `request` asks for a WebSocket (HTTP/1.1 upgrade or RFC 8441 extended CONNECT).
pub fn is_websocket_request<B>(request: &Request<B>) -> bool {
    if request.version() == http::Version::HTTP_2 {
        return request.method() == http::Method::CONNECT
            && request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"));
    }
    handshake::is_upgrade_request(request.headers())
}

/// Validate the handshake and hand it to Python. `Err` is the response for a refused request.
#[allow(clippy::result_large_err)]
pub fn hand_over(
    shared: &Arc<Shared>,
    settings: &Arc<WebSocketSettings>,
    conn: Arc<ConnInfo>,
    mut request: Request<Incoming>,
) -> Result<(ResponseReceiver, Arc<Channel>), Response<ResponseBody>> {
    let validated = if request.version() == http::Version::HTTP_2 {
        handshake::validate_http2(request.headers(), settings.per_message_deflate)
    } else {
        handshake::validate_http1(
            request.method(),
            request.version(),
            request.headers(),
            settings.per_message_deflate,
        )
    };
    let handshake = validated.map_err(refusal)?;
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
    // Over HTTP/2 the connection task goes on serving other streams; this keeps the WebSocket's
    // stream counted as open. Over HTTP/1.1 the session counts as the connection instead.
    let stream_hold = request.extensions_mut().remove::<StreamHold>();
    let id = shared.next_request_id();
    let (responder, response) = oneshot::channel();
    let channel = Arc::new(Channel::new(
        id,
        shared.wakes(),
        settings.max_queue,
        responder,
    ));
    tokio::spawn(run_after_upgrade(
        shared.clone(),
        settings.clone(),
        channel.clone(),
        handshake.deflate.clone(),
        on_upgrade,
        stream_hold,
    ));
    let (parts, _body) = request.into_parts();
    shared
        .bridge
        .push(Event::Start(Job::WebSocket(Box::new(WebSocketHead {
            id,
            parts,
            conn,
            channel: channel.clone(),
            handshake,
        }))));
    Ok((response, channel))
}

/// Waits for hyper to hand over the connection (after the app accepted), then runs the
/// session. A refused handshake or a vanished client ends the channel instead.
async fn run_after_upgrade(
    shared: Arc<Shared>,
    settings: Arc<WebSocketSettings>,
    channel: Arc<Channel>,
    deflate: Option<DeflateParams>,
    on_upgrade: Option<OnUpgrade>,
    stream_hold: Option<StreamHold>,
) {
    let upgraded = match on_upgrade {
        Some(on_upgrade) => on_upgrade.await.ok(),
        None => None,
    };
    let Some(upgraded) = upgraded else {
        channel.end(1006, "");
        return;
    };
    // HTTP/1.1: the connection task ends with the upgrade, so the session counts as the
    // connection. HTTP/2: the stream stays counted as open on its connection.
    let _counted = stream_hold.is_none().then(|| shared.track_connection());
    let _open = shared.settings.metrics.websocket_open();
    let _stream_hold = stream_hold;
    Session::new(
        TokioIo::new(upgraded),
        channel,
        settings,
        deflate.as_ref(),
        shared.phase(),
    )
    .run()
    .await;
}

fn refusal(err: HandshakeError) -> Response<ResponseBody> {
    let mut response = plain_response(err.status(), err.text());
    if err == HandshakeError::UnsupportedVersion {
        response.headers_mut().insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    response
}
