//! Wake-ups of parked Python waiters: which waiter an id names, the flags that say whether one
//! is parked, and the sink the tokio side sends wake-ups to.

use crate::flow::HIGH_WATER;

/// Which Python waiter a wake-up is for. Encoded in the low bit of the wake id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitKind {
    Receive = 0,
    Send = 1,
}

pub fn wake_id(request_id: u64, kind: WaitKind) -> u64 {
    (request_id << 1) | kind as u64
}

pub fn split_wake_id(id: u64) -> (u64, WaitKind) {
    let kind = if id & 1 == 0 {
        WaitKind::Receive
    } else {
        WaitKind::Send
    };
    (id >> 1, kind)
}

/// Where the tokio side sends wake-ups: the bridge, whatever events it otherwise carries.
pub trait WakeSink: Send + Sync {
    fn wake(&self, id: u64);
}

/// Whether the app is parked in `receive()` or `send()` of one exchange or WebSocket. Kept
/// under the exchange's lock, so that a wake-up is sent exactly once per park.
#[derive(Default, Debug)]
pub struct Waiting {
    receive: bool,
    send: bool,
}

impl Waiting {
    fn flag(&mut self, kind: WaitKind) -> &mut bool {
        match kind {
            WaitKind::Receive => &mut self.receive,
            WaitKind::Send => &mut self.send,
        }
    }

    /// The app waits: the next [`Waiting::wake`] of this kind sends a wake-up.
    pub fn park(&mut self, kind: WaitKind) {
        *self.flag(kind) = true;
    }

    /// Whether a `send()` told to wait may go on, with `buffered` bytes still unsent and the
    /// peer `gone` or not; parks it again while the buffer is above the high-water mark.
    pub fn send_room(&mut self, gone: bool, buffered: usize) -> SendRoom {
        if gone {
            SendRoom::Gone
        } else if buffered < HIGH_WATER {
            SendRoom::Available
        } else {
            self.park(WaitKind::Send);
            SendRoom::Parked
        }
    }

    /// Wake the app if it waits for `kind`.
    pub fn wake(&mut self, kind: WaitKind, id: u64, sink: &dyn WakeSink) {
        if std::mem::take(self.flag(kind)) {
            sink.wake(wake_id(id, kind));
        }
    }
}

/// Whether a parked `send()` may go on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendRoom {
    /// The buffer drained: send more.
    Available,
    /// Still full; parked again.
    Parked,
    /// The peer is gone.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::{split_wake_id, wake_id, WaitKind};

    #[test]
    fn wake_ids_round_trip() {
        for id in [1_u64, 2, 12345, u64::MAX >> 1] {
            assert_eq!(
                split_wake_id(wake_id(id, WaitKind::Receive)),
                (id, WaitKind::Receive)
            );
            assert_eq!(
                split_wake_id(wake_id(id, WaitKind::Send)),
                (id, WaitKind::Send)
            );
        }
    }
}
