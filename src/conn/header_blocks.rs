//! The stream under hyper's HTTP/2 connection, watching the frames the client sends for the one
//! thing h2 keeps to itself: a request header block that has begun and not ended (a HEADERS frame
//! not all received yet, or one without END_HEADERS still waiting for its CONTINUATION). h2
//! buffers such a block, bounded only by its size, and a connection with no complete stream counts
//! as idle; the connection's clock (`ClientClock`) closes one whose block stays open longer than
//! `--timeout-request-head`, as a slow head is on HTTP/1.1.
//!
//! Only the 9-byte frame headers are looked at (`net::h2_frames`); payloads are skipped by
//! length, never copied.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnActivity;
use crate::net::h2_frames::FrameReader;

pub struct HeaderBlockWatch<S> {
    inner: S,
    activity: Arc<ConnActivity>,
    frames: FrameReader,
}

impl<S> HeaderBlockWatch<S> {
    pub fn new(inner: S, activity: Arc<ConnActivity>) -> Self {
        Self {
            inner,
            activity,
            frames: FrameReader::new(true),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderBlockWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(read) = buf.filled().get(before..).filter(|read| !read.is_empty()) {
            let (was_open, ended) = (this.frames.header_block_open(), this.frames.blocks_ended());
            this.frames.feed(read, |_| false, |_, _| {});
            let open = this.frames.header_block_open();
            // A block that ended and another that began in the same read: the clock restarts.
            if open != was_open || (open && ended != this.frames.blocks_ended()) {
                this.activity.note_header_block(open);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderBlockWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
