//! Early hints: `103 Early Hints`, which hyper has no API for, written into the plaintext byte
//! stream directly under hyper (by `net::interim_writer`): on HTTP/2 between two of h2's frames,
//! on HTTP/1.1 when hyper has written out everything it had. Here: what the writer and the
//! request services of one connection share ([`Interim`], [`HintTarget`]), and the 103 itself.
//!
//! On HTTP/2 the writer follows both frame streams by their 9-byte headers (`net::h2_frames`),
//! and [`Interim`] keeps what it must know to write a HEADERS frame safely: the streams the
//! client opened, in the order h2 hands them to hyper, and which of them have not had a
//! HEADERS, RST_STREAM or END_STREAM from either side. A hint is queued by the app's `send()`
//! (through [`HintTarget`], held by the request's exchange) and written only where an injected
//! frame cannot disturb h2: at a frame boundary of h2's output, outside a HEADERS +
//! CONTINUATION sequence, on a stream whose final response has not begun. Its header block changes no HPACK table (see
//! [`early_hints_frame`]), so h2's encoder state and the client's decoder stay in step. The
//! request's service future holds its response until its hints are written (or dropped), so
//! the 103 precedes the final HEADERS on the wire.
//!
//! HTTP/1.1 needs no tracking: hyper's buffered writer calls the stream's `poll_flush` only once
//! its write buffer is empty, and it reads (and hands the service) a request only after the
//! previous response was wholly encoded; so at a `poll_flush`, while a request's response is
//! held, hyper's output ends on a message boundary and the `103` can go. See
//! `docs/architecture.md`, "Early hints".

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderValue;
use parking_lot::Mutex;

use super::h2_frames::{
    FrameHead, FLAG_ACK, FLAG_END_HEADERS, FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS,
};

/// The largest header block a 103 may have: one frame no larger than the smallest
/// SETTINGS_MAX_FRAME_SIZE a peer may set (RFC 9113 §4.2), so no CONTINUATION is needed.
pub const MAX_HINT_BLOCK: usize = 16_384;
/// HPACK's initial dynamic table size (RFC 7541 §4.2; SETTINGS_HEADER_TABLE_SIZE's initial value).
const INITIAL_TABLE_SIZE: u32 = 4096;
/// Client streams followed at once; past it (a client that opens streams h2 never accepts),
/// hints are off for the connection.
const MAX_TRACKED_STREAMS: usize = 4096;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const REASON_PROTOCOL_ERROR: u32 = 0x1;
const REASON_REFUSED_STREAM: u32 = 0x7;

/// The frame of a `103 Early Hints` response on `stream`: one HEADERS frame (END_HEADERS, not
/// END_STREAM) whose block holds `:status: 103` and one `link` field per value. Each field is a
/// "literal header field without indexing" (RFC 7541 §6.2.2) naming a static-table entry
/// (`:status` is index 8, `link` index 45), so neither side's dynamic table changes: h2's
/// encoder and the client's decoder stay in step. `None` when the block would exceed
/// [`MAX_HINT_BLOCK`].
pub fn early_hints_frame(stream: u32, links: &[HeaderValue]) -> Option<Bytes> {
    let mut block = Vec::with_capacity(16 + links.iter().map(|l| l.len() + 8).sum::<usize>());
    block.extend_from_slice(&[0x08, 0x03, b'1', b'0', b'3']);
    for link in links {
        // 0000 + 4-bit index prefix: 15, then 45 - 15 = 30.
        block.extend_from_slice(&[0x0f, 0x1e]);
        encode_integer(&mut block, link.len(), 7);
        block.extend_from_slice(link.as_bytes());
    }
    if block.len() > MAX_HINT_BLOCK {
        return None;
    }
    let len = block.len();
    let mut frame = Vec::with_capacity(9 + len);
    frame.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    frame.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS]);
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(&block);
    Some(Bytes::from(frame))
}

/// An HPACK integer (RFC 7541 §5.1) with a `prefix`-bit prefix and the other bits of its first
/// byte zero (a string literal without Huffman coding, for a 7-bit prefix).
fn encode_integer(dst: &mut Vec<u8>, mut value: usize, prefix: u32) {
    let max = (1usize << prefix) - 1;
    if value < max {
        dst.push(value as u8);
        return;
    }
    dst.push(max as u8);
    value -= max;
    while value >= 128 {
        dst.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    dst.push(value as u8);
}

/// Which protocol the interim writer serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1: a `103` goes out at a `poll_flush` of hyper's (its buffer is empty then).
    Http1,
    /// HTTP/2: a HEADERS frame goes out between two of h2's frames.
    Http2,
}

/// The `103` of HTTP/1.1 (RFC 8297), with one `Link` field per value.
pub fn early_hints_message(links: &[HeaderValue]) -> Bytes {
    let mut message = Vec::with_capacity(32 + links.iter().map(|l| l.len() + 8).sum::<usize>());
    message.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\n");
    for link in links {
        message.extend_from_slice(b"Link: ");
        message.extend_from_slice(link.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    Bytes::from(message)
}

/// Stream ids in ascending order.
#[derive(Default)]
struct LiveStreams(VecDeque<u32>);

impl LiveStreams {
    /// `stream` is above every id held.
    fn push(&mut self, stream: u32) {
        self.0.push_back(stream);
    }

    fn remove(&mut self, stream: u32) {
        if let Ok(at) = self.0.binary_search(&stream) {
            self.0.remove(at);
        }
    }

    fn contains(&self, stream: u32) -> bool {
        self.0.binary_search(&stream).is_ok()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[derive(Default)]
struct InterimState {
    /// Hints are off for the connection: the client lowered its HPACK table size (its decoder
    /// may then require a table size update at the start of the next block, which only h2's
    /// encoder can give), or it opened more streams than are followed.
    disabled: bool,
    /// The largest SETTINGS_HEADER_TABLE_SIZE the client has set (at least the initial 4096).
    table_size: u32,
    /// The highest stream id the client has opened.
    last_opened: u32,
    /// Client streams not yet handed to hyper, in the order h2 accepts them.
    opened: VecDeque<u32>,
    /// Streams h2 refused (REFUSED_STREAM, PROTOCOL_ERROR) before hyper accepted them: h2 never
    /// hands them to hyper.
    refused: HashSet<u32>,
    /// Client streams on which neither side has begun to end the exchange: no HEADERS,
    /// RST_STREAM or END_STREAM from the server, no RST_STREAM from the client. In ascending
    /// order (a client opens streams in ascending order): looked up by binary search, no hashing
    /// of ids the client chose.
    live: LiveStreams,
    /// Hints to write: (stream, frame).
    queue: Vec<(u32, Bytes)>,
    /// The connection task, woken when a hint is queued.
    task: Option<Waker>,
    /// Service futures waiting for their hints to be written.
    waiters: Vec<Waker>,
    /// Hints dropped because their stream's response had begun or hints were off.
    dropped: u64,
}

/// What the interim writer and the request service of one connection share.
pub struct Interim {
    framing: Framing,
    state: Mutex<InterimState>,
    /// `state.queue` is not empty (read without the lock on every write).
    queued: AtomicBool,
}

impl Interim {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            state: Mutex::new(InterimState {
                table_size: INITIAL_TABLE_SIZE,
                ..InterimState::default()
            }),
            queued: AtomicBool::new(false),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Hints wait to be written (no lock taken).
    pub fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// The payloads [`Self::on_inbound`] needs: the client's SETTINGS.
    pub fn inbound_wanted(kind: u8) -> bool {
        kind == FRAME_SETTINGS
    }

    /// The payloads [`Self::on_outbound`] needs: h2's RST_STREAM (its reason).
    pub fn outbound_wanted(kind: u8) -> bool {
        kind == FRAME_RST_STREAM
    }

    /// hyper accepted its next request (its service is being called): that request's target,
    /// or `None` when hints are off. On HTTP/2, called once per accepted stream, in order.
    pub fn accept(self: &Arc<Self>) -> Option<HintTarget> {
        match self.framing {
            Framing::Http1 => {
                return Some(HintTarget {
                    interim: self.clone(),
                    stream: 0,
                })
            }
            Framing::Http2 => {}
        }
        let mut state = self.state.lock();
        while let Some(stream) = state.opened.pop_front() {
            if !state.refused.is_empty() && state.refused.remove(&stream) {
                continue;
            }
            if state.disabled {
                return None;
            }
            return Some(HintTarget {
                interim: self.clone(),
                stream,
            });
        }
        None
    }

    /// Hints dropped so far (their stream's response had begun, or hints were off).
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    fn wake_task(state: &InterimState) {
        if let Some(task) = &state.task {
            task.wake_by_ref();
        }
    }

    /// A frame the client sent.
    pub fn on_inbound(&self, frame: &FrameHead, payload: Option<&[u8]>) {
        if !matches!(
            frame.kind,
            FRAME_HEADERS | FRAME_RST_STREAM | FRAME_SETTINGS
        ) {
            return; // DATA, WINDOW_UPDATE, PING...: nothing to note, no lock to take
        }
        let mut state = self.state.lock();
        match frame.kind {
            FRAME_HEADERS if frame.stream > state.last_opened => {
                state.last_opened = frame.stream;
                if state.opened.len() >= MAX_TRACKED_STREAMS
                    || state.live.len() >= MAX_TRACKED_STREAMS
                {
                    state.disabled = true;
                    state.opened.clear();
                    state.live.clear();
                    state.refused.clear();
                    return;
                }
                state.opened.push_back(frame.stream);
                if !state.disabled {
                    state.live.push(frame.stream);
                }
            }
            FRAME_RST_STREAM => {
                state.live.remove(frame.stream);
            }
            FRAME_SETTINGS if frame.flags & FLAG_ACK == 0 => match payload {
                Some(params) => {
                    for param in params.chunks_exact(6) {
                        let id = u16::from_be_bytes([param[0], param[1]]);
                        let value = u32::from_be_bytes([param[2], param[3], param[4], param[5]]);
                        if id == SETTINGS_HEADER_TABLE_SIZE {
                            if value < state.table_size {
                                state.disabled = true;
                            }
                            state.table_size = state.table_size.max(value);
                        }
                    }
                }
                None => state.disabled = true,
            },
            _ => {}
        }
        if state.disabled {
            state.live.clear();
        }
    }

    /// A frame h2 wrote.
    pub fn on_outbound(&self, frame: &FrameHead, payload: Option<&[u8]>) {
        // A server's END_STREAM is on a HEADERS frame or on DATA, and DATA follows the
        // response's HEADERS, which ended the stream's hints already: DATA changes nothing
        // here (no lock taken for it).
        if !matches!(frame.kind, FRAME_HEADERS | FRAME_RST_STREAM) {
            return;
        }
        let mut state = self.state.lock();
        state.live.remove(frame.stream);
        if frame.kind == FRAME_RST_STREAM {
            let reason = payload
                .and_then(|p| p.get(..4))
                .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
            if matches!(reason, Some(REASON_REFUSED_STREAM | REASON_PROTOCOL_ERROR))
                && state.opened.contains(&frame.stream)
            {
                state.refused.insert(frame.stream);
            }
        }
    }

    /// Takes the queued hints whose streams may still get one, as the bytes to write now;
    /// wakes the service futures waiting for them.
    pub fn commit(&self, out: &mut Vec<u8>) {
        let mut state = self.state.lock();
        self.queued.store(false, Ordering::Release);
        let queue = std::mem::take(&mut state.queue);
        for (stream, frame) in queue {
            // HTTP/1.1: the request's response is held until its hints are out (see the module).
            if self.framing == Framing::Http1 || (!state.disabled && state.live.contains(stream)) {
                out.extend_from_slice(&frame);
            } else {
                state.dropped += 1;
            }
        }
        for waiter in state.waiters.drain(..) {
            waiter.wake();
        }
    }

    pub fn note_task(&self, waker: &Waker) {
        let mut state = self.state.lock();
        match &state.task {
            Some(task) if task.will_wake(waker) => {}
            _ => state.task = Some(waker.clone()),
        }
    }
}

/// One accepted stream's way to its connection's interim writer: held by the request's exchange.
pub struct HintTarget {
    interim: Arc<Interim>,
    stream: u32,
}

impl HintTarget {
    /// Queues a `103` with these `Link` values. False (nothing queued) when the block is too
    /// large or hints are off.
    pub fn send(&self, links: &[HeaderValue]) -> bool {
        let frame = match self.interim.framing {
            Framing::Http1 => early_hints_message(links),
            Framing::Http2 => match early_hints_frame(self.stream, links) {
                Some(frame) => frame,
                None => return false,
            },
        };
        let mut state = self.interim.state.lock();
        if state.disabled {
            return false;
        }
        state.queue.push((self.stream, frame));
        self.interim.queued.store(true, Ordering::Release);
        Interim::wake_task(&state);
        true
    }

    /// Whether a hint of this stream waits to be written.
    pub fn waiting(&self) -> bool {
        let state = self.interim.state.lock();
        self.waiting_in(&state)
    }

    fn waiting_in(&self, state: &InterimState) -> bool {
        state.queue.iter().any(|(stream, _)| *stream == self.stream)
    }

    /// Ready once no hint of this stream waits to be written.
    pub fn poll_written(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.interim.state.lock();
        if !self.waiting_in(&state) {
            return Poll::Ready(());
        }
        state.waiters.push(cx.waker().clone());
        Poll::Pending
    }

    /// The connection's hints dropped so far.
    pub fn dropped(&self) -> u64 {
        self.interim.dropped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_frame_is_a_static_literal_block() {
        let link = HeaderValue::from_static("</a.css>; rel=preload; as=style");
        let frame = early_hints_frame(5, std::slice::from_ref(&link)).unwrap(); // ok: test-only
        assert_eq!(&frame[3..9], &[FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 5]);
        let block = &frame[9..];
        assert_eq!(&block[..5], b"\x08\x03103");
        assert_eq!(&block[5..7], &[0x0f, 0x1e]);
        assert_eq!(usize::from(block[7]), link.len());
        assert_eq!(&block[8..], link.as_bytes());
        // A value of 127 bytes or more takes a multi-byte length.
        let mut long = Vec::new();
        encode_integer(&mut long, 1337, 7);
        assert_eq!(long, [0x7f, 0xba, 0x09]);
        let huge = HeaderValue::from_bytes(&vec![b'a'; MAX_HINT_BLOCK]).unwrap(); // ok: test-only
        assert!(early_hints_frame(1, &[huge]).is_none());
    }

    #[test]
    fn lowered_table_size_turns_hints_off() {
        let interim = Arc::new(Interim::new(Framing::Http2));
        let head = |kind, stream| FrameHead {
            kind,
            flags: 0,
            stream,
            len: 0,
        };
        interim.on_inbound(&head(FRAME_SETTINGS, 0), Some(&[0, 1, 0, 1, 0, 0]));
        interim.on_inbound(&head(FRAME_HEADERS, 1), None);
        let target = interim.accept().unwrap(); // ok: test-only
        assert!(target.send(&[HeaderValue::from_static("</x>")]));
        interim.on_inbound(&head(FRAME_SETTINGS, 0), Some(&[0, 1, 0, 0, 0, 0]));
        let mut out = Vec::new();
        interim.commit(&mut out);
        assert!(out.is_empty(), "dropped once the client lowered its table");
        assert_eq!(interim.dropped(), 1);
    }

    #[test]
    fn refused_streams_are_skipped_and_ended_streams_get_no_hint() {
        let interim = Arc::new(Interim::new(Framing::Http2));
        let head = |kind, flags, stream| FrameHead {
            kind,
            flags,
            stream,
            len: 0,
        };
        for stream in [1, 3, 5] {
            interim.on_inbound(&head(FRAME_HEADERS, FLAG_END_HEADERS, stream), None);
        }
        interim.on_outbound(&head(FRAME_RST_STREAM, 0, 1), Some(&[0, 0, 0, 7]));
        let three = interim.accept().unwrap(); // ok: test-only
        assert_eq!(three.stream, 3);
        let five = interim.accept().unwrap(); // ok: test-only
        assert!(three.send(&[HeaderValue::from_static("</x>")]));
        assert!(five.send(&[HeaderValue::from_static("</y>")]));
        interim.on_outbound(&head(FRAME_HEADERS, FLAG_END_HEADERS, 5), None);
        let mut out = Vec::new();
        interim.commit(&mut out);
        assert_eq!(
            out,
            early_hints_frame(3, &[HeaderValue::from_static("</x>")]).unwrap() // ok: test-only
        );
        assert_eq!(interim.dropped(), 1);
    }
}
