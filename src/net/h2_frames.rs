//! Follows an HTTP/2 frame stream fed in arbitrary pieces, by the 9-byte frame headers alone
//! (payloads are skipped by length, never copied, unless a caller wants a short one): where
//! each frame begins and ends, and whether a header block (HEADERS or PUSH_PROMISE, then its
//! CONTINUATION frames up to END_HEADERS) is under way. The one reader of frame headers: the
//! interim writer follows both directions with it (`net::interim`), and the connection's head
//! clock reads the client's header blocks off the same inbound reader (`conn::HeaderBlockWatch`).

/// The client connection preface (RFC 9113 §3.4) precedes the client's first frame.
pub const CLIENT_PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
/// Payload bytes kept for the frames whose contents a caller wants.
pub const MAX_CAPTURE: usize = 1024;

pub const FRAME_HEADERS: u8 = 0x1;
pub const FRAME_RST_STREAM: u8 = 0x3;
pub const FRAME_SETTINGS: u8 = 0x4;
pub const FRAME_PUSH_PROMISE: u8 = 0x5;
pub const FRAME_CONTINUATION: u8 = 0x9;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;

/// A frame's 9-byte header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub len: usize,
}

impl FrameHead {
    fn parse(h: &[u8; FRAME_HEADER_LEN]) -> Self {
        Self {
            len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        }
    }

    /// A frame that carries (part of) a header block.
    fn in_header_block(&self) -> bool {
        matches!(
            self.kind,
            FRAME_HEADERS | FRAME_PUSH_PROMISE | FRAME_CONTINUATION
        )
    }
}

pub struct FrameReader {
    /// Bytes of the client preface still to pass (inbound only).
    skip: usize,
    head: [u8; FRAME_HEADER_LEN],
    have: usize,
    /// The frame whose payload is being read.
    current: Option<FrameHead>,
    payload_left: usize,
    /// The current frame's payload, when it is one whose contents are wanted and short enough.
    capture: Option<Vec<u8>>,
    /// A header block's last frame so far lacked END_HEADERS: CONTINUATION frames follow.
    awaiting_continuation: bool,
    /// Header blocks ended so far.
    blocks_ended: u64,
}

impl FrameReader {
    /// `preface`: the stream begins with the client connection preface.
    pub fn new(preface: bool) -> Self {
        Self {
            skip: if preface { CLIENT_PREFACE_LEN } else { 0 },
            head: [0; FRAME_HEADER_LEN],
            have: 0,
            current: None,
            payload_left: 0,
            capture: None,
            awaiting_continuation: false,
            blocks_ended: 0,
        }
    }

    /// Between two frames, and not inside a header block: a whole frame may be inserted here.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && self.have == 0 && self.current.is_none() && !self.awaiting_continuation
    }

    /// A header block has begun (its first frame's header was read) and not ended (the frame
    /// with END_HEADERS not read to its last byte).
    pub fn header_block_open(&self) -> bool {
        self.awaiting_continuation || self.current.is_some_and(|frame| frame.in_header_block())
    }

    /// Header blocks ended so far.
    pub fn blocks_ended(&self) -> u64 {
        self.blocks_ended
    }

    /// Follows `bytes`; `on_frame` gets each frame as it ends, with its payload when `wanted`
    /// says so for its type and it is at most [`MAX_CAPTURE`] bytes long.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        wanted: fn(u8) -> bool,
        mut on_frame: impl FnMut(&FrameHead, Option<&[u8]>),
    ) {
        let skipped = self.skip.min(bytes.len());
        self.skip -= skipped;
        bytes = &bytes[skipped..];
        while !bytes.is_empty() {
            match self.current {
                None => {
                    let take = (FRAME_HEADER_LEN - self.have).min(bytes.len());
                    self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    bytes = &bytes[take..];
                    if self.have < FRAME_HEADER_LEN {
                        return;
                    }
                    self.have = 0;
                    let frame = FrameHead::parse(&self.head);
                    if frame.in_header_block() {
                        self.awaiting_continuation = frame.flags & FLAG_END_HEADERS == 0;
                    }
                    self.capture = (wanted(frame.kind) && frame.len <= MAX_CAPTURE)
                        .then(|| Vec::with_capacity(frame.len));
                    self.payload_left = frame.len;
                    self.current = Some(frame);
                }
                Some(_) => {
                    let take = self.payload_left.min(bytes.len());
                    if let Some(capture) = &mut self.capture {
                        capture.extend_from_slice(&bytes[..take]);
                    }
                    self.payload_left -= take;
                    bytes = &bytes[take..];
                }
            }
            self.end_frame(&mut on_frame);
        }
        // A frame with an empty payload ends with its header.
        self.end_frame(&mut on_frame);
    }

    /// Ends the current frame if its payload is all read.
    fn end_frame(&mut self, on_frame: &mut impl FnMut(&FrameHead, Option<&[u8]>)) {
        if let (Some(frame), 0) = (self.current, self.payload_left) {
            self.current = None;
            if frame.in_header_block() && frame.flags & FLAG_END_HEADERS != 0 {
                self.blocks_ended += 1;
            }
            let capture = self.capture.take();
            on_frame(&frame, capture.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_DATA: u8 = 0x0;
    const FLAG_END_STREAM: u8 = 0x1;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn preface() -> Vec<u8> {
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()
    }

    /// Feeds `bytes`; whether a header block is open after them.
    fn open_after(reader: &mut FrameReader, bytes: &[u8]) -> bool {
        reader.feed(bytes, |_| false, |_, _| {});
        reader.header_block_open()
    }

    /// A tiny deterministic generator (xorshift), so the test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random valid frame stream, with the offsets at which a frame may be inserted.
    fn random_stream(rng: &mut Rng) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut boundaries = vec![0];
        for _ in 0..(1 + rng.below(40)) {
            let stream = 1 + 2 * rng.below(50) as u32;
            let payload = vec![0xab; rng.below(300)];
            match rng.below(4) {
                0 => {
                    // A header block split over CONTINUATION frames: no boundary inside it.
                    let parts = 1 + rng.below(3);
                    for part in 0..parts {
                        let last = part + 1 == parts;
                        let flags = if last { FLAG_END_HEADERS } else { 0 };
                        let kind = if part == 0 {
                            FRAME_HEADERS
                        } else {
                            FRAME_CONTINUATION
                        };
                        bytes.extend(frame(kind, flags, stream, &payload));
                    }
                }
                1 => bytes.extend(frame(FRAME_DATA, FLAG_END_STREAM, stream, &payload)),
                2 => bytes.extend(frame(FRAME_RST_STREAM, 0, stream, &[0, 0, 0, 8])),
                _ => bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[])),
            }
            boundaries.push(bytes.len());
        }
        (bytes, boundaries)
    }

    #[test]
    fn injections_land_only_on_frame_boundaries() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let (bytes, boundaries) = random_stream(&mut rng);
            let mut reader = FrameReader::new(false);
            let mut offset = 0;
            let mut seen = Vec::new();
            assert!(reader.at_boundary());
            while offset < bytes.len() {
                let take = 1 + rng.below((bytes.len() - offset).min(700));
                reader.feed(&bytes[offset..offset + take], |_| false, |_, _| {});
                offset += take;
                if reader.at_boundary() {
                    seen.push(offset);
                }
            }
            // Whenever the reader says "boundary", it is one; and it ends on one.
            for at in &seen {
                assert!(boundaries.contains(at), "{at} is not a frame boundary");
            }
            assert!(reader.at_boundary());
        }
    }

    #[test]
    fn frames_are_reported_with_wanted_payloads() {
        let mut bytes = preface();
        bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
        bytes.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 3, b"xx"));
        let mut reader = FrameReader::new(true);
        let mut frames = Vec::new();
        for byte in &bytes {
            reader.feed(
                std::slice::from_ref(byte),
                |kind| kind == FRAME_SETTINGS,
                |head, payload| frames.push((*head, payload.map(<[u8]>::to_vec))),
            );
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].0.kind, FRAME_SETTINGS);
        assert_eq!(frames[0].1.as_deref(), Some(&[0, 1, 0, 0, 0x10, 0][..]));
        assert_eq!((frames[1].0.kind, frames[1].0.stream), (FRAME_HEADERS, 3));
        assert_eq!(frames[1].1, None);
        assert_eq!(reader.blocks_ended(), 1);
    }

    #[test]
    fn a_complete_block_is_never_open() {
        let mut reader = FrameReader::new(true);
        let mut bytes = preface();
        bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[0; 12]));
        bytes.extend(frame(
            FRAME_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &[0; 30],
        ));
        bytes.extend(frame(FRAME_DATA, FLAG_END_STREAM, 1, &[0; 100]));
        assert!(!open_after(&mut reader, &bytes));
        assert_eq!(reader.blocks_ended(), 1);
    }

    #[test]
    fn a_block_without_end_headers_stays_open_until_its_continuation() {
        let mut reader = FrameReader::new(true);
        let mut bytes = preface();
        bytes.extend(frame(FRAME_HEADERS, 0, 1, &[0; 20]));
        assert!(open_after(&mut reader, &bytes));
        assert!(open_after(
            &mut reader,
            &frame(FRAME_CONTINUATION, 0, 1, &[0; 5])
        ));
        assert!(!open_after(
            &mut reader,
            &frame(FRAME_CONTINUATION, FLAG_END_HEADERS, 1, &[0; 5])
        ));
        assert_eq!(reader.blocks_ended(), 1);
    }

    #[test]
    fn a_trickled_headers_frame_is_open_until_its_last_byte() {
        let mut reader = FrameReader::new(true);
        assert!(!open_after(&mut reader, &preface()));
        let headers = frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &[0; 40]);
        let (head, rest) = headers.split_at(20);
        assert!(open_after(&mut reader, head));
        let (most, last) = rest.split_at(rest.len() - 1);
        assert!(open_after(&mut reader, most));
        assert!(!open_after(&mut reader, last));
        // A trickled DATA frame is the body clock's, not the head clock's.
        let data = frame(FRAME_DATA, 0, 1, &[0; 40]);
        assert!(!open_after(&mut reader, &data[..20]));
        // Part of a frame header opens nothing yet.
        let mut fresh = FrameReader::new(false);
        assert!(!open_after(&mut fresh, &headers[..5]));
        assert!(open_after(&mut fresh, &headers[5..9]));
    }
}
