//! Sockets and what is known about a connection before HTTP: listeners, the transport every
//! protocol stack runs over (replaying the bytes protocol detection read), file ranges sent
//! with sendfile(2), which peers are trusted proxies, the PROXY protocol header, and the interim
//! writer that puts 103 Early Hints between hyper's messages and frames.

mod conn_info;
pub mod h2_frames;
pub mod interim;
pub mod interim_writer;
mod listener;
pub mod proxy_protocol;
pub mod sendfile;
mod transport;
mod trust;

pub use conn_info::ConnInfo;
pub use listener::{Accepted, Listener};
pub use proxy_protocol::{ProxiedAddresses, ProxyVersions};
pub use transport::{input_pending, ReadCount, Socket, Transport, WriteStall};
pub use trust::{TrustedProxies, X_FORWARDED_FOR, X_FORWARDED_PROTO};
