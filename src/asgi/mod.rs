//! Everything that holds the GIL: the ASGI side of the server, on the asyncio thread.
//!
//! | module | job |
//! |---|---|
//! | `dispatch` | start an app task for each job the bridge delivers; route wake-ups |
//! | `context` | what every protocol object of one server shares (loop callbacks, settings) |
//! | `scope` | the `http` and `websocket` scope dicts |
//! | `http` | `HttpProtocol`: `receive()`/`send()` of one HTTP request |
//! | `websocket` | `WebSocketProtocol`: `receive()`/`send()` of one WebSocket |
//! | `waiters` | the futures an app is parked on, and waking them |
//! | `messages` | reading the app's messages: headers, bytes, optional strings |
//! | `awaitable` | awaitables that complete without a trip through the event loop |
//!
//! It talks to the tokio side only through each request's exchange or WebSocket channel.

pub mod awaitable;
pub mod context;
pub mod dispatch;
pub mod http;
mod messages;
pub mod scope;
mod waiters;
pub mod websocket;
