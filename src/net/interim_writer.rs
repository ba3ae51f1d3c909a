//! The interim writer, a hook of the stream under hyper (`conn::ConnStream`, above TLS): writes
//! a connection's queued 103s into hyper's output where they cannot disturb it (see
//! `net::interim`): on HTTP/2 at a boundary between two of h2's frames, which it finds by
//! following what h2 writes (`net::h2_frames`); on HTTP/1.1 at a `poll_flush` of hyper's, when
//! hyper's buffer is empty. The client's frames reach it from the stream's one inbound reader.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use super::h2_frames::{FrameHead, FrameReader};
use super::interim::{Framing, Interim};

pub struct InterimWriter {
    interim: Arc<Interim>,
    /// What h2 wrote, frame by frame (HTTP/2 only).
    outbound: FrameReader,
    /// Injected bytes not yet written: hyper's next bytes wait behind them.
    out: Bytes,
    /// The waker last given to `interim` (a clone is stored only when it changes).
    task: Option<Waker>,
}

impl InterimWriter {
    pub fn new(interim: Arc<Interim>) -> Self {
        Self {
            interim,
            outbound: FrameReader::new(false),
            out: Bytes::new(),
            task: None,
        }
    }

    /// Gives `interim` the connection task's waker (hyper polls reads and flushes with it), so
    /// that queuing a hint wakes the task that writes it.
    pub fn note_task(&mut self, cx: &Context<'_>) {
        if !self
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            self.task = Some(cx.waker().clone());
            self.interim.note_task(cx.waker());
        }
    }

    /// A frame the client sent (HTTP/2).
    pub fn on_client_frame(&self, frame: &FrameHead, payload: Option<&[u8]>) {
        self.interim.on_inbound(frame, payload);
    }

    /// Writes the injected bytes left; `Ready` once none are.
    pub fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Where hyper's output allows it (`flushing`: hyper is flushing, so its HTTP/1.1 buffer is
    /// empty; on HTTP/2, at a frame boundary), takes the queued hints and writes what it can.
    fn inject<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        flushing: bool,
    ) -> Poll<io::Result<()>> {
        if !self.out.is_empty() {
            return self.poll_drain(inner, cx);
        }
        if !self.interim.has_queued() {
            return Poll::Ready(Ok(()));
        }
        let here = match self.interim.framing() {
            Framing::Http1 => flushing,
            Framing::Http2 => self.outbound.at_boundary(),
        };
        if !here {
            return Poll::Ready(Ok(()));
        }
        let mut out = Vec::new();
        self.interim.commit(&mut out);
        self.out = Bytes::from(out);
        self.poll_drain(inner, cx)
    }

    /// hyper's `n` first bytes of `bufs` were written (followed on HTTP/2 only).
    fn observe_written<'b>(&mut self, bufs: impl IntoIterator<Item = &'b [u8]>, mut n: usize) {
        if self.interim.framing() != Framing::Http2 {
            return;
        }
        let interim = &self.interim;
        for buf in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(buf.len());
            self.outbound
                .feed(&buf[..take], Interim::outbound_wanted, |frame, payload| {
                    interim.on_outbound(frame, payload)
                });
            n -= take;
        }
    }

    /// hyper's write, behind any hint due here.
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.inject(inner, cx, false))?;
        let polled = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.observe_written([buf], n);
        }
        polled
    }

    /// hyper's vectored write, behind any hint due here.
    pub fn poll_write_vectored<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.inject(inner, cx, false))?;
        let polled = Pin::new(inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.observe_written(bufs.iter().map(|b| &**b), n);
        }
        polled
    }

    /// hyper's flush: its output is on a boundary (HTTP/1.1), so the hints go first.
    pub fn poll_flush<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.note_task(cx);
        ready!(self.inject(inner, cx, true))?;
        Pin::new(inner).poll_flush(cx)
    }
}
