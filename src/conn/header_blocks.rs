//! The head clock's view of an HTTP/2 connection (a hook of the stream under hyper,
//! `ConnStream`): the frames the client sends, watched for the one thing h2 keeps to itself: a
//! request header block that has begun and not ended (a HEADERS frame not all received yet, or
//! one without END_HEADERS still waiting for its CONTINUATION). h2 buffers such a block, bounded
//! only by its size, and a connection with no complete stream counts as idle; the connection's
//! clock (`ClientClock`) closes one whose block stays open longer than `--timeout-request-head`,
//! as a slow head is on HTTP/1.1.
//!
//! Only the 9-byte frame headers are looked at, by the stream's one reader of the client's frames
//! (`net::h2_frames`, shared with the interim writer); payloads are skipped by length, never
//! copied.

use std::sync::Arc;

use super::ConnActivity;
use crate::net::h2_frames::FrameReader;

/// The HTTP/2 hook of the stream under hyper (`ConnStream`): told after each read where the
/// client's frames are.
pub struct HeaderBlockWatch {
    activity: Arc<ConnActivity>,
    open: bool,
    /// Header blocks ended as of the last read.
    ended: u64,
}

impl HeaderBlockWatch {
    pub fn new(activity: Arc<ConnActivity>) -> Self {
        Self {
            activity,
            open: false,
            ended: 0,
        }
    }

    /// `frames` has read the client's latest bytes.
    pub fn observe(&mut self, frames: &FrameReader) {
        let (open, ended) = (frames.header_block_open(), frames.blocks_ended());
        // A block that ended and another that began in the same read: the clock restarts.
        if open != self.open || (open && ended != self.ended) {
            self.activity.note_header_block(open);
        }
        (self.open, self.ended) = (open, ended);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::HeaderBlockWatch;
    use crate::conn::ConnActivity;
    use crate::net::h2_frames::{FrameReader, FLAG_END_HEADERS, FRAME_HEADERS};
    use crate::net::{ReadCount, WriteStall};

    fn headers(flags: u8) -> Vec<u8> {
        let mut bytes = vec![0, 0, 4, FRAME_HEADERS, flags, 0, 0, 0, 1];
        bytes.extend_from_slice(&[0; 4]);
        bytes
    }

    #[test]
    fn the_clock_runs_while_a_block_is_open_and_restarts_with_the_next() {
        let activity = ConnActivity::new(
            -1,
            Arc::new(ReadCount::default()),
            Arc::new(WriteStall::default()),
        );
        let mut frames = FrameReader::new(false);
        let mut watch = HeaderBlockWatch::new(activity.clone());
        let first = headers(FLAG_END_HEADERS);
        frames.feed(&first[..5], |_| false, |_, _| {});
        watch.observe(&frames);
        assert_eq!(
            activity.header_block_open_since(),
            None,
            "a partial frame header"
        );
        frames.feed(&first[5..11], |_| false, |_, _| {});
        watch.observe(&frames);
        let began = activity.header_block_open_since();
        assert!(began.is_some());
        std::thread::sleep(std::time::Duration::from_millis(2));
        // The first block ends and the next begins in one read: the clock restarts.
        let mut read = first[11..].to_vec();
        read.extend_from_slice(&headers(0)[..10]);
        frames.feed(&read, |_| false, |_, _| {});
        watch.observe(&frames);
        let again = activity.header_block_open_since();
        assert!(again.is_some_and(|again| Some(again) > began));
        frames.feed(&headers(0)[10..], |_| false, |_, _| {});
        watch.observe(&frames);
        assert_eq!(
            activity.header_block_open_since(),
            again,
            "awaits its CONTINUATION"
        );
    }
}
