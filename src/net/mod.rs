//! Sockets and what is known about a connection before HTTP: listeners, the transport every
//! protocol stack runs over, replayed bytes, and which peers are trusted proxies.

mod conn_info;
mod listener;
mod rewind;
mod transport;
mod trust;

pub use conn_info::ConnInfo;
pub use listener::{Accepted, Listener};
pub use rewind::Rewind;
pub use transport::{input_pending, ReadCount, Socket, Transport, WriteStall};
pub use trust::TrustedProxies;
