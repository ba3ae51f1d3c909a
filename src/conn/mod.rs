//! One connection's life under hyper: what is open on it (activity counting, and the guards
//! that keep a request counted until its response ends), the drain/shutdown state machine
//! that drives the hyper connection to its end, and the 408 an HTTP/1.1 connection says when
//! its request head is too slow.

mod activity;
mod client_clock;
mod drive;
mod header_blocks;
mod last_words;
mod stream_progress;
mod tracked_body;

pub use activity::{ConnActivity, StreamGuard, StreamHold};
pub use drive::{drive, Protocol};
pub use header_blocks::HeaderBlockWatch;
pub use last_words::LastWords;
pub use stream_progress::StreamProgress;
pub use tracked_body::TrackedBody;
