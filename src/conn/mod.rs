//! One connection's life under hyper: what is open on it (activity counting, and the guards
//! that keep a request counted until its response ends), the drain/shutdown state machine
//! that drives the hyper connection to its end, and the one stream hyper reads and writes
//! through, with its hooks: the 408 an HTTP/1.1 connection says when its request head is too
//! slow, the HTTP/2 head clock's watch on the client's frames, the interim writer.

mod activity;
mod client_clock;
mod control_wake;
mod drive;
mod header_blocks;
mod last_words;
mod stream;
mod stream_progress;
mod tracked_body;

pub use activity::{ConnActivity, StreamGuard, StreamHold};
pub use drive::{drive, Protocol};
pub use stream::ConnStream;
pub use stream_progress::StreamProgress;
pub use tracked_body::TrackedBody;
