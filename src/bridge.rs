//! The hand-off from the tokio side to the asyncio side.
//!
//! Rust threads never take the GIL. They push [`Event`]s into one queue and, only when the
//! queue goes from "nobody will look" to "somebody must look", write to an eventfd that the
//! asyncio loop watches with `loop.add_reader`. The loop then drains every queued event in one
//! callback, so under load a single wake-up carries a whole batch of requests.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::errors::CoreError;
use crate::exchange::RequestHead;

/// Something the Python side has to act on.
pub enum Event {
    /// A parsed request whose ASGI app must be started.
    Request(Box<RequestHead>),
    /// The Python future registered under this id can make progress.
    Wake(u64),
    /// A log record produced on the tokio side.
    Log(LogLevel, String),
}

#[derive(Clone, Copy, Debug)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_python_level(self) -> i32 {
        match self {
            LogLevel::Debug => 10,
            LogLevel::Info => 20,
            LogLevel::Warning => 30,
            LogLevel::Error => 40,
        }
    }
}

pub struct Bridge {
    queue: Mutex<Vec<Event>>,
    /// True while a wake-up is pending (the eventfd was written and not yet drained).
    armed: AtomicBool,
    eventfd: OwnedFd,
}

impl Bridge {
    pub fn new() -> Result<Self, CoreError> {
        // SAFETY: eventfd has no memory-safety preconditions; we check the result.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(CoreError::Io(std::io::Error::last_os_error()));
        }
        Ok(Self {
            queue: Mutex::new(Vec::with_capacity(256)),
            armed: AtomicBool::new(false),
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fileno(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Queue an event; wake the loop unless a wake-up is already on its way.
    pub fn push(&self, event: Event) {
        self.queue.lock().push(event);
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.signal();
        }
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.push(Event::Log(level, message));
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our own eventfd. EAGAIN (counter
        // saturated) means the loop is already due to wake, so the result can be ignored.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Take every queued event. `spare` is an empty vector that becomes the new queue, so the
    /// steady state allocates nothing.
    pub fn take(&self, spare: Vec<Event>) -> Vec<Event> {
        // Disarm before taking: a producer that pushes after this point signals again.
        self.armed.store(false, Ordering::Release);
        let mut counter: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our own non-blocking eventfd.
        unsafe {
            libc::read(
                self.eventfd.as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        std::mem::replace(&mut *self.queue.lock(), spare)
    }
}
