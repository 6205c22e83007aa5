//! A transport wrapper that notes whether any byte moved, for the idle timeout, and
//! whether the last write is still waiting on the peer (a peer that stopped reading).
//! Relaxed atomic stores per read or write; no clock on the hot path.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The reader side of the flags: `take` says whether bytes moved since the last call,
/// `write_blocked` whether the last write found the peer's window full.
#[derive(Clone)]
pub struct Activity {
    moved: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
}

impl Activity {
    pub fn take(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }

    pub fn write_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }
}

pin_project_lite::pin_project! {
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        flag: Arc<AtomicBool>,
        blocked: Arc<AtomicBool>,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T) -> (Self, Activity) {
        let flag = Arc::new(AtomicBool::new(true));
        let blocked = Arc::new(AtomicBool::new(false));
        (
            ActivityIo {
                inner,
                flag: flag.clone(),
                blocked: blocked.clone(),
            },
            Activity {
                moved: flag,
                blocked,
            },
        )
    }
}

/// Notes the outcome of one write: bytes moved, or the peer is not reading.
fn note_write(r: &Poll<io::Result<usize>>, moved: &AtomicBool, blocked: &AtomicBool) {
    match r {
        Poll::Pending => blocked.store(true, Ordering::Relaxed),
        Poll::Ready(r) => {
            blocked.store(false, Ordering::Relaxed);
            if matches!(r, Ok(n) if *n > 0) {
                moved.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() != before {
            this.flag.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        note_write(&r, this.flag, this.blocked);
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        note_write(&r, this.flag, this.blocked);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
