//! Where access lines go: a buffer written to the log's descriptor in one `write(2)` when the
//! I/O thread is about to sleep, when it grows past [`FLUSH_BYTES`], or when its oldest line
//! has waited [`FLUSH_AFTER`].

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buffered bytes past which the lines are written at once.
const FLUSH_BYTES: usize = 64 * 1024;
/// The longest a line waits on a busy I/O thread.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

pub struct AccessSink {
    fd: RawFd,
    state: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    text: String,
    since: Option<Instant>,
}

impl AccessSink {
    /// Lines go to `fd` (the process's standard output, which Python keeps open).
    pub fn new(fd: RawFd) -> Self {
        Self {
            fd,
            state: Mutex::new(Pending::default()),
        }
    }

    /// Append one line, written by `render`.
    pub fn write_line(&self, render: impl FnOnce(&mut String)) {
        let mut pending = self.state.lock();
        render(&mut pending.text);
        pending.text.push('\n');
        let since = *pending.since.get_or_insert_with(Instant::now);
        if pending.text.len() >= FLUSH_BYTES || since.elapsed() >= FLUSH_AFTER {
            self.write_out(&mut pending);
        }
    }

    pub fn flush(&self) {
        let mut pending = self.state.lock();
        if !pending.text.is_empty() {
            self.write_out(&mut pending);
        }
    }

    fn write_out(&self, pending: &mut Pending) {
        let mut rest = pending.text.as_bytes();
        while !rest.is_empty() {
            // SAFETY: writes `rest.len()` bytes from a live buffer; a bad descriptor is EBADF.
            let n = unsafe { libc::write(self.fd, rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                // The log's reader is gone or broken: the lines are lost, as Python's logging
                // would lose them, and the server goes on.
                _ => break,
            }
        }
        pending.text.clear();
        pending.since = None;
    }
}

impl Drop for AccessSink {
    fn drop(&mut self) {
        self.flush();
    }
}
