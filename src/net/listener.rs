//! Listening sockets. Python binds them (so error messages, `--fd`, `--uds` and sockets shared
//! with worker processes all behave as in uvicorn) and hands the core a file descriptor; the
//! core duplicates it and accepts on it with tokio.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::errors::CoreError;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection with the addresses the ASGI scope reports.
pub enum Accepted {
    Tcp(TcpStream, SocketAddr, Option<SocketAddr>),
    Unix(UnixStream),
}

impl Listener {
    /// Adopt a duplicate of a listening socket; the caller keeps ownership of `fd`.
    /// Must be called inside the tokio runtime.
    pub fn from_fd(fd: RawFd) -> Result<Self, CoreError> {
        // SAFETY: dup has no memory-safety preconditions; the result is checked.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(CoreError::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let socket = socket2::Socket::from(owned);
        socket.set_nonblocking(true)?;
        let family = socket.local_addr()?.family();
        if family == libc::AF_UNIX as libc::sa_family_t {
            let std_listener: std::os::unix::net::UnixListener = socket.into();
            Ok(Listener::Unix(UnixListener::from_std(std_listener)?))
        } else {
            let std_listener: std::net::TcpListener = socket.into();
            Ok(Listener::Tcp(TcpListener::from_std(std_listener)?))
        }
    }

    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Small responses must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                Ok(Accepted::Tcp(stream, peer, local))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok(Accepted::Unix(stream))
            }
        }
    }
}
