//! What the tokio side hands the Python side to start an app: a parsed request with its
//! exchange, or a WebSocket handshake with its channel. The bridge carries these.

use std::sync::Arc;

use crate::exchange::{Exchange, RequestBody};
use crate::net::ConnInfo;
use crate::websocket::channel::Channel;
use crate::websocket::handshake::Handshake;

/// A parsed request on its way to the Python side.
pub struct RequestHead {
    pub id: u64,
    pub parts: http::request::Parts,
    pub body: RequestBody,
    pub conn: Arc<ConnInfo>,
    pub exchange: Arc<Exchange>,
}

/// An upgrade request (or RFC 8441 extended CONNECT) on its way to the Python side.
pub struct WebSocketHead {
    pub id: u64,
    pub parts: http::request::Parts,
    pub conn: Arc<ConnInfo>,
    pub channel: Arc<Channel>,
    pub handshake: Handshake,
}

/// An app to start.
pub enum Job {
    Request(Box<RequestHead>),
    WebSocket(Box<WebSocketHead>),
}

/// The bridge of this server: it starts [`Job`]s.
pub type Bridge = crate::bridge::Bridge<Job>;
pub type Event = crate::bridge::Event<Job>;
