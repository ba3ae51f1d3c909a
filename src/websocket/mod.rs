//! WebSockets: RFC 6455 over HTTP/1.1 upgrades (and RFC 8441 over HTTP/2), permessage-deflate
//! (RFC 7692), and the ASGI `websocket` protocol.
//!
//! | module | job |
//! |---|---|
//! | `handshake` | recognise and validate an upgrade request; `Sec-WebSocket-Accept` |
//! | `deflate` | negotiate permessage-deflate; compress and decompress messages |
//! | `frame` | parse client frames, encode server frames, close payloads |
//! | `channel` | the bounded queues between the session and the app |
//! | `session` | the open connection on the tokio side (frames, ping/pong, closing) |
//! | `upgrade` | the hook in the HTTP service: hand the handshake to Python, start the session |
//! | `protocol` | `WebSocketProtocol`: the ASGI `receive()`/`send()` of one connection |
//! | `scope` | the `websocket` scope dict |

use std::time::Duration;

use pyo3::prelude::*;

pub mod channel;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod protocol;
pub mod scope;
pub mod session;
pub mod upgrade;

/// The `--ws-*` settings, as Python passes them to `Core(websocket=...)`.
#[derive(Clone, Debug, FromPyObject)]
#[pyo3(from_item_all)]
pub struct WsConfig {
    pub max_size: usize,
    pub max_queue: usize,
    pub ping_interval: Option<f64>,
    pub ping_timeout: Option<f64>,
    pub per_message_deflate: bool,
}

/// WebSocket settings fixed at startup.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// `--ws-max-size`: a larger message closes the connection with 1009.
    pub max_size: usize,
    /// `--ws-max-queue`: messages waiting for the app before the socket is no longer read.
    pub max_queue: usize,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    pub per_message_deflate: bool,
}

impl WsSettings {
    pub fn from_config(config: &WsConfig) -> Self {
        let seconds = |value: Option<f64>| {
            value
                .filter(|secs| secs.is_finite() && *secs > 0.0)
                .map(Duration::from_secs_f64)
        };
        Self {
            max_size: config.max_size.max(1),
            max_queue: config.max_queue.max(1),
            ping_interval: seconds(config.ping_interval),
            ping_timeout: seconds(config.ping_timeout),
            per_message_deflate: config.per_message_deflate,
        }
    }
}
