//! The wait for an upstream's response head, on timers a serving worker reuses.
//!
//! `tokio::time::timeout` makes a timer per request: registered in the runtime's timer
//! wheel when first polled and taken out again when dropped, each under the wheel's lock
//! (about 870 instructions per request; BENCHMARKS.md, "Sixth round"). A worker instead
//! keeps the timers of finished requests and resets the next request's deadline on one.
//! A deadline later than the one a timer is registered for is a plain store, with no
//! lock: the wheel meets the old deadline first, finds the new one, and files the timer
//! again, once per `timeout` rather than once per request. A worker's runtime lives as
//! long as its thread, so its timers never outlive it; other threads (tests, the
//! control plane) make a timer per request as before.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Spare timers kept per worker: more than the requests a worker has in flight at once
/// in any benchmark, and a few KiB at most.
const MAX_SPARE: usize = 256;

thread_local! {
    static SPARE: RefCell<Vec<Pin<Box<Sleep>>>> = const { RefCell::new(Vec::new()) };
}

/// A request's deadline; its timer goes back to the worker's spares when dropped.
pub(super) struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether this thread is a serving worker, whose spares the timer goes back to.
    reuse: bool,
}

impl Deadline {
    pub(super) fn after(timeout: Duration) -> Deadline {
        let at = Instant::now() + timeout;
        let reuse = crate::server::workers::current().is_some();
        let sleep = match reuse
            .then(|| SPARE.with(|s| s.borrow_mut().pop()))
            .flatten()
        {
            Some(mut sleep) => {
                sleep.as_mut().reset(at);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(at)),
        };
        Deadline {
            sleep: Some(sleep),
            reuse,
        }
    }

    /// `future`, or `Err(Elapsed)` once the deadline has passed first.
    pub(super) fn within<F: Future>(&mut self, future: F) -> Within<'_, F> {
        Within {
            future,
            sleep: self
                .sleep
                .as_mut()
                .expect("a deadline has its timer until dropped"),
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let (true, Some(sleep)) = (self.reuse, self.sleep.take()) {
            SPARE.with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < MAX_SPARE {
                    spare.push(sleep);
                }
            });
        }
    }
}

/// The deadline passed before the upstream answered.
#[derive(Debug)]
pub(super) struct Elapsed;

pin_project_lite::pin_project! {
    /// A future raced against its deadline; the future is polled first, as
    /// `tokio::time::timeout` does.
    pub(super) struct Within<'a, F> {
        #[pin]
        future: F,
        sleep: &'a mut Pin<Box<Sleep>>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_future_wins_before_the_deadline_and_loses_after_it() {
        let mut d = Deadline::after(Duration::from_secs(5));
        assert!(d.within(async { 7 }).await.is_ok());
        let mut d = Deadline::after(Duration::from_millis(20));
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert!(d.within(slow).await.is_err());
    }

    /// Runs `deadline` to its end with nothing else to wait for; how long it took.
    async fn expire(mut deadline: Deadline) -> Duration {
        let started = Instant::now();
        assert!(deadline.within(std::future::pending::<()>()).await.is_err());
        started.elapsed()
    }

    /// Registers the deadline's timer (as waiting on an upstream does) and drops it.
    async fn use_briefly(mut deadline: Deadline) {
        assert!(deadline.within(tokio::task::yield_now()).await.is_ok());
    }

    /// On a serving worker a finished deadline's timer is reused, and keeps the new
    /// deadline whether it is earlier or later than the one it was filed for.
    #[test]
    fn a_reused_timer_keeps_the_new_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        crate::server::workers::as_worker_for_test(0, || {
            rt.block_on(async {
                use_briefly(Deadline::after(Duration::from_secs(60))).await;
                assert_eq!(SPARE.with(|s| s.borrow().len()), 1);
                // Earlier than the one its timer is filed for: fires then, not at 60 s.
                let d = Deadline::after(Duration::from_millis(50));
                assert_eq!(SPARE.with(|s| s.borrow().len()), 0, "the spare was taken");
                let took = expire(d).await;
                assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(30));
                // Later than the one its timer is filed for: not at the old deadline.
                use_briefly(Deadline::after(Duration::from_millis(50))).await;
                let took = expire(Deadline::after(Duration::from_millis(300))).await;
                assert!(took >= Duration::from_millis(300), "{took:?}");
                assert!(took < Duration::from_secs(30), "{took:?}");
                assert_eq!(SPARE.with(|s| s.borrow().len()), 1, "one timer all along");
            })
        });
    }
}
