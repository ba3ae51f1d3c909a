//! The stream under hyper's HTTP/2 connection, watching the frames the client sends for the one
//! thing h2 keeps to itself: a request header block that has begun and not ended (a HEADERS frame
//! not all received yet, or one without END_HEADERS still waiting for its CONTINUATION). h2
//! buffers such a block, bounded only by its size, and a connection with no complete stream counts
//! as idle; the connection's clock (`ClientClock`) closes one whose block stays open longer than
//! `--timeout-request-head`, as a slow head is on HTTP/1.1.
//!
//! Only the 9-byte frame headers are looked at; payloads are skipped by length, never copied.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ConnActivity;

/// The client connection preface (RFC 9113 §3.4), before the first frame.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Where the client's byte stream is, frame by frame.
#[derive(Debug)]
pub struct FrameScan {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    /// The frame being read belongs to a header block and ends it.
    ends_block: bool,
    block_open: bool,
    /// Header blocks ended so far.
    blocks_ended: u64,
}

impl Default for FrameScan {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            ends_block: false,
            block_open: false,
            blocks_ended: 0,
        }
    }
}

impl FrameScan {
    /// Takes the next bytes the client sent; whether a header block is open after them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    self.frame_began();
                }
            }
        }
        self.block_open
    }

    fn frame_began(&mut self) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        let in_block = matches!(kind, HEADERS | CONTINUATION);
        if in_block {
            self.block_open = true;
        }
        self.ends_block = in_block && flags & END_HEADERS != 0;
        if self.payload_left == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        if self.ends_block {
            self.block_open = false;
            self.ends_block = false;
            self.blocks_ended += 1;
        }
    }
}

pub struct HeaderBlockWatch<S> {
    inner: S,
    activity: Arc<ConnActivity>,
    scan: FrameScan,
}

impl<S> HeaderBlockWatch<S> {
    pub fn new(inner: S, activity: Arc<ConnActivity>) -> Self {
        Self {
            inner,
            activity,
            scan: FrameScan::default(),
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
            let (was_open, ended) = (this.scan.block_open, this.scan.blocks_ended);
            let open = this.scan.feed(read);
            // A block that ended and another that began in the same read: the clock restarts.
            if open != was_open || (open && ended != this.scan.blocks_ended) {
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

#[cfg(test)]
mod tests {
    use super::FrameScan;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).unwrap_or(0).to_be_bytes();
        let mut bytes = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        bytes.resize(9 + payload, 0xAA);
        bytes
    }

    fn preface() -> Vec<u8> {
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()
    }

    #[test]
    fn a_complete_block_is_never_open() {
        let mut scan = FrameScan::default();
        let mut bytes = preface();
        bytes.extend(frame(0x4, 0, 12)); // SETTINGS
        bytes.extend(frame(0x1, 0x4 | 0x1, 30)); // HEADERS, END_HEADERS | END_STREAM
        bytes.extend(frame(0x0, 0x1, 100)); // DATA
        assert!(!scan.feed(&bytes));
    }

    #[test]
    fn a_block_without_end_headers_stays_open_until_its_continuation() {
        let mut scan = FrameScan::default();
        let mut bytes = preface();
        bytes.extend(frame(0x1, 0, 20)); // HEADERS without END_HEADERS
        assert!(scan.feed(&bytes));
        assert!(scan.feed(&frame(0x9, 0, 5))); // CONTINUATION, not the last
        assert!(!scan.feed(&frame(0x9, 0x4, 5))); // the last CONTINUATION
    }

    #[test]
    fn a_trickled_headers_frame_is_open_until_its_last_byte() {
        let mut scan = FrameScan::default();
        assert!(!scan.feed(&preface()));
        let headers = frame(0x1, 0x4, 40);
        let (head, rest) = headers.split_at(20);
        assert!(scan.feed(head));
        let (most, last) = rest.split_at(rest.len() - 1);
        assert!(scan.feed(most));
        assert!(!scan.feed(last));
        // a trickled DATA frame is the body clock's, not this one's
        let data = frame(0x0, 0, 40);
        assert!(!scan.feed(&data[..20]));
    }
}
