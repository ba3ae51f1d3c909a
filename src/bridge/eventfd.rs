//! The eventfd the asyncio loop watches: written by the tokio side to wake the loop, read by
//! the loop to re-arm it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::errors::CoreError;

pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> Result<Self, CoreError> {
        // SAFETY: eventfd has no memory-safety preconditions; we check the result.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(CoreError::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn fileno(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Make the descriptor readable.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our own eventfd. EAGAIN (counter
        // saturated) means the loop is already due to wake, so the result can be ignored.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    /// Read the counter (it is zero afterwards); 0 when nothing was signalled.
    pub fn drain(&self) -> u64 {
        let mut counter: u64 = 0;
        // SAFETY: reading 8 bytes into a valid u64 from our own non-blocking eventfd.
        let read = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if read == 8 {
            counter
        } else {
            0
        }
    }
}
