//! The stream every protocol stack runs over: a TCP or Unix socket (so each stack is compiled
//! once, not once per socket type) that replays the bytes protocol detection read, counts the
//! reads returning data, notes since when the socket has refused writes, and sends file ranges
//! whose stand-ins hyper writes with `sendfile(2)` (`net::sendfile`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::sendfile::{send_range, Front, SendfileQueue};
use crate::stamp::Stamp;
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
#[derive(Debug, Default)]
pub struct WriteStall(Stamp);

impl WriteStall {
    /// When the socket began refusing writes, if it refuses them now.
    pub fn since(&self) -> Option<Instant> {
        self.0.get()
    }

    fn note<T>(&self, polled: &Poll<io::Result<T>>, wrote: impl Fn(&T) -> bool) {
        match polled {
            Poll::Pending => self.0.set_now_if_none(),
            Poll::Ready(Ok(value)) if wrote(value) => self.0.clear(),
            Poll::Ready(_) => {}
        }
    }
}

impl Socket {
    /// One `sendfile(2)` of the file range once the socket is writable.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        file: RawFd,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let fd = self.as_raw_fd();
        loop {
            let ready = match self {
                Socket::Tcp(s) => s.poll_write_ready(cx),
                Socket::Unix(s) => s.poll_write_ready(cx),
            };
            if let Poll::Ready(Err(err)) = ready {
                return Poll::Ready(Err(err));
            }
            if ready.is_pending() {
                return Poll::Pending;
            }
            let send = || send_range(fd, file, offset, len);
            let sent = match self {
                Socket::Tcp(s) => s.try_io(Interest::WRITABLE, send),
                Socket::Unix(s) => s.try_io(Interest::WRITABLE, send),
            };
            return match sent {
                Ok(0) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before the response's length",
                ))),
                Ok(n) => Poll::Ready(Ok(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => Poll::Ready(Err(err)),
            };
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

pub struct Transport {
    socket: Socket,
    /// Bytes read before the protocol was chosen (HTTP/2 preface detection), read again first.
    replay: Bytes,
    reads: Arc<ReadCount>,
    stall: Arc<WriteStall>,
    /// File ranges to send in place of their stand-ins (cleartext HTTP/1.1 only).
    sendfile: Option<Arc<SendfileQueue>>,
}

impl Transport {
    /// `reads` and `stall` are shared with the connection's activity (its slow-client clock).
    pub fn new(socket: Socket, reads: Arc<ReadCount>, stall: Arc<WriteStall>) -> Self {
        Self {
            socket,
            replay: Bytes::new(),
            reads,
            stall,
            sendfile: None,
        }
    }

    /// `bytes` (read through this transport to choose the protocol) are read again, before the
    /// socket's next bytes.
    pub fn put_back(&mut self, bytes: Bytes) {
        self.replay = bytes;
    }

    /// Send the ranges of `queue` when hyper writes their stand-ins.
    pub fn with_sendfile(mut self, queue: Arc<SendfileQueue>) -> Self {
        self.sendfile = Some(queue);
        self
    }

    /// Write `bufs`, sending a file range with `sendfile` where a stand-in leads them.
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(queue) = &self.sendfile else {
            return self.socket.poll_write_vectored(cx, bufs);
        };
        match queue.front(bufs) {
            Err(err) => Poll::Ready(Err(err)),
            // Ordinary bytes up to the first stand-in (all of them if there is none).
            Ok(Front::Bytes(n)) => self
                .socket
                .poll_write_vectored(cx, bufs.get(..n).unwrap_or(bufs)),
            Ok(Front::File { fd, offset, len }) => {
                let polled = self.socket.poll_sendfile(cx, fd, offset, len);
                if let Poll::Ready(Ok(n)) = polled {
                    queue.sent(n);
                }
                polled
            }
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
        if !this.replay.is_empty() {
            // Counted as reads already, when they came from the socket.
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
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
        let polled = if this.sendfile.is_some() {
            this.poll_write_slices(cx, &[io::IoSlice::new(buf)])
        } else {
            match &mut this.socket {
                Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
                Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            }
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
        let polled = this.poll_write_slices(cx, bufs);
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
