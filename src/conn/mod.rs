//! One connection's life under hyper: what is open on it (activity counting, and the guards
//! that keep a request counted until its response ends) and the drain/shutdown state machine
//! that drives the hyper connection to its end.

mod activity;
mod client_clock;
mod drive;
mod tracked_body;

pub use activity::{ConnActivity, StreamGuard, StreamHold};
pub use drive::{drive, Protocol};
pub use tracked_body::TrackedBody;
