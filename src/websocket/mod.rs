//! WebSockets on the tokio side: RFC 6455 over HTTP/1.1 upgrades (and RFC 8441 over HTTP/2), permessage-deflate
//! (RFC 7692), and the queues to the app.
//!
//! | module | job |
//! |---|---|
//! | `handshake` | recognise and validate an upgrade request; `Sec-WebSocket-Accept` |
//! | `deflate` | negotiate permessage-deflate; compress and decompress messages |
//! | `frame` | parse client frames, encode server frames, close payloads |
//! | `channel` | the bounded queues between the session and the app |
//! | `session` | the open connection on the tokio side (frames, ping/pong, closing) |
//!
//! This is the tokio side only. The hook in the HTTP service that hands a handshake to Python
//! and starts the session is `http::upgrade`; the app's `receive()`/`send()` and the scope are
//! in `asgi`.

pub mod channel;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod session;
