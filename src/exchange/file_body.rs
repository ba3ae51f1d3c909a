//! A response body read from a file (`http.response.pathsend`): positional reads of at most
//! [`FILE_CHUNK`] bytes on tokio's blocking pool, one at a time, each started only when hyper
//! asks for the next frame, so a large file to a slow client is never read ahead into memory
//! and the bytes never become Python objects. On cleartext HTTP/1.1 the body reads nothing:
//! each step of up to [`SENDFILE_CHUNK`] bytes hands hyper a stand-in that the transport sends
//! with sendfile(2) (`net::sendfile`): at once when the range is already in the page cache, else
//! after bringing it there on the blocking pool.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use tokio::task::JoinHandle;

use crate::errors::BodyAborted;
use crate::net::sendfile::{cached, prefetch, SendfileQueue, SENDFILE_CHUNK};

/// The most one read takes from the file: hyper writes it before asking for more (HTTP/1.1
/// buffers at most ~400 KiB; HTTP/2 asks only with send capacity left on the stream).
pub const FILE_CHUNK: usize = 256 * 1024;

/// An open file and the byte range of it still to send.
pub struct FileBody {
    /// Shared with the read in flight, which may outlive the body by that one read.
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    read: Option<JoinHandle<io::Result<Step>>>,
    /// The file cannot give the promised bytes. hyper is first given one `Pending` so that it
    /// flushes what it has before the error ends the connection.
    failed: bool,
    /// Cleartext HTTP/1.1: the transport's sendfile queue, which the body feeds instead of
    /// reading the file.
    sendfile: Option<Arc<SendfileQueue>>,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`; the body fails if the file ends before them.
    /// With `sendfile`, the bytes go out through that queue's transport (sendfile(2)).
    pub fn new(file: File, offset: u64, len: u64, sendfile: Option<Arc<SendfileQueue>>) -> Self {
        Self {
            file: Arc::new(file),
            offset,
            remaining: len,
            read: None,
            failed: false,
            sendfile,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        if self.failed {
            return Poll::Ready(Some(Err(BodyAborted)));
        }
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.read.is_none() {
            if let Some(queue) = &self.sendfile {
                let want = usize::try_from(self.remaining)
                    .map_or(SENDFILE_CHUNK, |r| r.min(SENDFILE_CHUNK));
                if cached(&self.file, self.offset, want) {
                    // Already in the page cache: the sendfile will not wait on the disk, so
                    // hyper gets the stand-in now, without a hop to the blocking pool.
                    let chunk = queue.stand_in(self.file.clone(), self.offset, want);
                    return self.advance(chunk);
                }
            }
        }
        let read = match &mut self.read {
            Some(read) => read,
            None => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return Poll::Ready(Some(Err(BodyAborted)));
                };
                let file = self.file.clone();
                let offset = self.offset;
                let step = if self.sendfile.is_some() {
                    SENDFILE_CHUNK
                } else {
                    FILE_CHUNK
                };
                let want = usize::try_from(self.remaining).map_or(step, |r| r.min(step));
                let job = if self.sendfile.is_some() {
                    runtime.spawn_blocking(move || prefetch_range(&file, offset, want))
                } else {
                    runtime.spawn_blocking(move || read_at(&file, offset, want).map(Step::Read))
                };
                self.read.insert(job)
            }
        };
        let result = match Pin::new(read).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        self.read = None;
        let chunk = match result {
            Ok(Ok(Step::Read(chunk))) => Some(chunk),
            // The range is in the page cache: hyper gets its stand-in.
            Ok(Ok(Step::Prefetched(len))) => match &self.sendfile {
                Some(queue) if len > 0 => Some(queue.stand_in(self.file.clone(), self.offset, len)),
                _ => None,
            },
            Ok(Err(_)) | Err(_) => None,
        };
        match chunk {
            Some(chunk) if !chunk.is_empty() => self.advance(chunk),
            // The file ended before the promised length, could not be read, or the read task
            // failed: the client must see a broken body, never one that looks complete.
            _ => {
                self.failed = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl FileBody {
    /// Hand hyper `chunk`, the next bytes of the range (or their stand-in).
    fn advance(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let len = chunk.len() as u64;
        self.offset += len;
        self.remaining = self.remaining.saturating_sub(len);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // A read in flight finishes on its own (a blocking task cannot be stopped) and then
        // drops the last reference: the file is closed within one chunk's read.
        if let Some(read) = self.read.take() {
            read.abort();
        }
    }
}

/// Open a regular file to send, and its size (on the caller's thread: call it without the GIL).
pub fn open_file(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        let errno = if metadata.is_dir() {
            libc::EISDIR
        } else {
            libc::EINVAL
        };
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok((file, metadata.len()))
}

/// A file of the app's (`http.response.zerocopysend`), by descriptor: a duplicate the server
/// owns (the app closes its own whenever it likes), its size and the descriptor's position.
pub fn dup_file(fd: RawFd) -> io::Result<(File, u64, u64)> {
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` only reads `fd`; an invalid one is an EBADF error.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(dup) });
    // SAFETY: lseek on our own descriptor; SEEK_CUR with 0 only reads the position.
    let position = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR) };
    let position = u64::try_from(position).map_err(|_| io::Error::last_os_error())?;
    let size = file.metadata()?.len();
    Ok((file, size, position))
}

/// What one step of the blocking pool produced.
enum Step {
    /// The bytes read (pread).
    Read(Bytes),
    /// This many bytes are in the page cache, for sendfile(2); 0 if the file no longer holds
    /// them (it shrank), which fails the body as a short read does.
    Prefetched(usize),
}

/// Bring `len` bytes at `offset` into the page cache, after checking the file still holds them.
fn prefetch_range(file: &File, offset: u64, len: usize) -> io::Result<Step> {
    if file.metadata()?.len() < offset + len as u64 {
        return Ok(Step::Prefetched(0));
    }
    prefetch(file, offset, len);
    Ok(Step::Prefetched(len))
}

/// Up to `len` bytes at `offset` (fewer only at the end of the file), read straight into a
/// fresh buffer's spare capacity.
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let filled = buf.len();
        let at = libc::off_t::try_from(offset + filled as u64)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let spare = &mut buf.spare_capacity_mut()[..len - filled];
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`; pread writes
        // at most that many bytes into it and returns how many it wrote.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast::<libc::c_void>(),
                spare.len(),
                at,
            )
        };
        match n {
            0 => break,
            n if n > 0 => {
                let n = n as usize;
                // SAFETY: pread initialised the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::read_at;
    use std::io::Write;

    #[test]
    fn reads_a_range_and_stops_at_the_end() {
        let path = std::env::temp_dir().join(format!("ferrocorn-file-body-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap(); // ok: test-only
        file.write_all(b"0123456789").unwrap(); // ok: test-only
        let file = std::fs::File::open(&path).unwrap(); // ok: test-only
        assert_eq!(&read_at(&file, 2, 3).unwrap()[..], b"234"); // ok: test-only
        assert_eq!(&read_at(&file, 8, 5).unwrap()[..], b"89"); // ok: test-only
        assert!(read_at(&file, 10, 5).unwrap().is_empty()); // ok: test-only
        std::fs::remove_file(&path).unwrap(); // ok: test-only
    }
}
