//! The stream every protocol stack runs over: a TCP or Unix socket (so each stack is compiled
//! once, not once per socket type) that counts the reads returning data and notes since when
//! the socket has refused writes.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Reads from a socket that returned data: tells a connection on which a request is arriving
/// from a silent one.
#[derive(Default, Debug)]
pub struct ReadCount(AtomicU64);

impl ReadCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// A read above the socket returned data (a layer that buffers, such as TLS, may hand out
    /// bytes it read from the socket earlier).
    pub fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Since when the socket has refused every write: tells a client that stopped reading (its
/// receive window and the socket's send buffer are full) from one that is merely slow.
#[derive(Debug)]
pub struct WriteStall {
    origin: Instant,
    /// Microseconds after `origin` at which writes began to be refused; 0 while they are not.
    since_us: AtomicU64,
}

impl Default for WriteStall {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            since_us: AtomicU64::new(0),
        }
    }
}

impl WriteStall {
    /// When the socket began refusing writes, if it refuses them now.
    pub fn since(&self) -> Option<Instant> {
        match self.since_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.origin + std::time::Duration::from_micros(us)),
        }
    }

    fn note<T>(&self, polled: &Poll<io::Result<T>>, wrote: impl Fn(&T) -> bool) {
        match polled {
            Poll::Pending => {
                if self.since_us.load(Ordering::Relaxed) == 0 {
                    let us = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
                    self.since_us.store(us.max(1), Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(value)) if wrote(value) => self.since_us.store(0, Ordering::Relaxed),
            Poll::Ready(_) => {}
        }
    }
}

pub struct Transport {
    socket: Socket,
    reads: Arc<ReadCount>,
    stall: Arc<WriteStall>,
}

impl Transport {
    /// `reads` and `stall` are shared with the connection's activity (its slow-client clock).
    pub fn new(socket: Socket, reads: Arc<ReadCount>, stall: Arc<WriteStall>) -> Self {
        Self {
            socket,
            reads,
            stall,
        }
    }
}

/// Whether the socket `fd` holds bytes not read yet (`MSG_PEEK`, never blocks).
pub fn input_pending(fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    // SAFETY: recv writes at most one byte into `byte`, which outlives the call; a bad or
    // closed fd only makes recv fail.
    let peeked = unsafe {
        libc::recv(
            fd,
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if buf.filled().len() > before {
            this.reads.0.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        this.stall.note(&polled, |&written| written > 0);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        };
        this.stall.note(&polled, |&written| written > 0);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
