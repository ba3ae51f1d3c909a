//! What the shutdown and idle logic need to know about one connection: its open requests (for
//! an idle timeout on HTTP/2, where hyper has none; and to tell an HTTP/1.1 connection between
//! requests from a busy one), and whether bytes arrived since it last became idle (so that a
//! drain never closes a connection whose next request is already arriving).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::net::{input_pending, ReadCount, WriteStall};
use crate::stamp::Stamp;

pub struct ConnActivity {
    active: AtomicUsize,
    /// Requests begun on the connection, ever.
    requests: AtomicU64,
    /// Reads from the socket that returned data (counted by the transport).
    reads: Arc<ReadCount>,
    /// Since when the socket has refused writes (noted by the transport).
    write_stall: Arc<WriteStall>,
    /// `reads` when the connection last became idle (no open request).
    reads_at_idle: AtomicU64,
    /// When `active` last fell to zero (the connection's start until it first does).
    idle_since: Stamp,
    /// The socket, to peek for bytes not read yet. Valid for as long as the connection (which
    /// owns the socket) is being served: only the connection's own task peeks.
    fd: RawFd,
    /// What an HTTP/1.1 connection says before the server closes it mid-head (its 408), once
    /// the driver has decided to (`LastWords`).
    last_words: OnceLock<Bytes>,
    /// HTTP/2: when the request header block now open began, none while none is
    /// (`HeaderBlockWatch`).
    header_block_since: Stamp,
}

impl ConnActivity {
    pub fn new(fd: RawFd, reads: Arc<ReadCount>, write_stall: Arc<WriteStall>) -> Arc<Self> {
        let origin = Instant::now();
        Arc::new(Self {
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            reads,
            write_stall,
            reads_at_idle: AtomicU64::new(0),
            idle_since: Stamp::new(origin),
            fd,
            last_words: OnceLock::new(),
            header_block_since: Stamp::new(origin),
        })
    }

    /// A request begins; it counts as open until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> StreamGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// The connection is idle from now on (the idle clock restarts; bytes read so far are not
    /// the start of a request).
    pub fn mark_idle(&self) {
        self.reads_at_idle.store(self.reads(), Ordering::Relaxed);
        self.idle_since.set_now();
    }

    /// Whether bytes arrived since the connection last became idle: read already (hyper may hold
    /// part of a request head) or waiting in the socket.
    pub fn request_arriving(&self) -> bool {
        self.reads() != self.reads_at_idle.load(Ordering::Relaxed) || self.input_pending()
    }

    /// Bytes reached hyper (counted like a read from the socket: TLS may have read them from
    /// the socket with the handshake, before the connection became idle).
    pub fn note_read(&self) {
        self.reads.add_one();
    }

    /// Whether bytes were read since the connection last became idle (hyper may hold part of a
    /// request head); unlike [`Self::request_arriving`], no system call.
    pub fn read_since_idle(&self) -> bool {
        self.reads() != self.reads_at_idle.load(Ordering::Relaxed)
    }

    /// Since when the socket has refused every write, if it does now.
    pub fn write_stalled_since(&self) -> Option<Instant> {
        self.write_stall.since()
    }

    /// Whether the socket holds bytes not read yet.
    pub fn input_pending(&self) -> bool {
        input_pending(self.fd)
    }

    /// When the connection becomes idle for `limit`; `None` while a request is open.
    pub fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.active() > 0 {
            return None;
        }
        Some(self.idle_since() + limit)
    }

    /// The connection is to say `words` and end (HTTP/1.1, see `LastWords`).
    pub fn say_last_words(&self, words: Bytes) {
        let _ = self.last_words.set(words); // said once: a second farewell has nothing to add
    }

    pub fn last_words(&self) -> Option<&Bytes> {
        self.last_words.get()
    }

    /// HTTP/2: a request header block began (`open`) or ended.
    pub fn note_header_block(&self, open: bool) {
        if open {
            self.header_block_since.set_now();
        } else {
            self.header_block_since.clear();
        }
    }

    /// HTTP/2: since when a request header block has been open, if one is.
    pub fn header_block_open_since(&self) -> Option<Instant> {
        self.header_block_since.get()
    }

    fn idle_since(&self) -> Instant {
        self.idle_since.get_or_origin()
    }

    /// Whether a request was open when the server began draining (`drain_began`): the task
    /// that reacts to the drain (a WebSocket session sending 1012) may have ended it before this
    /// connection's task sees the drain.
    pub fn open_at(&self, drain_began: Option<Instant>) -> bool {
        self.active() > 0 || drain_began.is_some_and(|began| self.idle_since() >= began)
    }
}

/// Held for as long as a request is open (until its response body ends or is dropped).
pub struct StreamGuard(Arc<ConnActivity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
        }
    }
}

/// A [`StreamGuard`] carried in a request's extensions (which must be `Clone`), for a stream
/// that outlives its response: an RFC 8441 WebSocket. The stream counts as open until the last
/// clone is dropped.
#[derive(Clone)]
pub struct StreamHold {
    _guard: Arc<StreamGuard>,
}

impl StreamHold {
    pub fn new(guard: StreamGuard) -> Self {
        Self {
            _guard: Arc::new(guard),
        }
    }
}
