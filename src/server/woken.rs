//! A future that is polled only when its own wakers fired.
//!
//! A connection's task is woken by every read and write of the connection; its watch (the
//! idle tick and the shutdown signal) fires twice per idle period at most. Polled beside
//! the connection in one `select!`, the watch was polled on every one of those wakes, and
//! each poll of a timer and of a cancellation future cost about 900 instructions per
//! proxied request (BENCHMARKS.md, "Per-stage budget"). [`OnlyWhenWoken`] gives the
//! watch a waker of its own that notes the wake before waking the task, and skips the
//! poll when nothing it waits on has fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// `inner`, polled only after one of the wakers it registered fired (and once at first,
/// so that it registers them).
pub struct OnlyWhenWoken<F> {
    inner: F,
    flag: Arc<Flag>,
}

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> OnlyWhenWoken<F> {
    pub fn new(inner: F) -> Self {
        OnlyWhenWoken {
            inner,
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future + Unpin> Future for OnlyWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake between the two is not lost.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.flag.clone());
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, waking through the waker it was
    /// last polled with.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn polled_once_to_register_then_only_when_its_own_waker_fired() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let mut watch = OnlyWhenWoken::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
        });
        let task = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&task);
        assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Woken by something else (the connection's traffic): not polled.
        for _ in 0..3 {
            assert!(Pin::new(&mut watch).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its own waker fired: polled, and ready.
        ready.store(true, Ordering::SeqCst);
        Waker::from(watch.flag.clone()).wake_by_ref();
        assert!(Pin::new(&mut watch).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_timer_inside_still_fires() {
        let sleep = Box::pin(tokio::time::sleep(std::time::Duration::from_millis(20)));
        // Completes only if the timer's wake reaches the task through the flag; the
        // outer timeout fails the test instead of hanging it.
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            OnlyWhenWoken::new(sleep),
        )
        .await
        .expect("the timer's wake reached the task");
    }
}
