//! The HTTP/1.1 header read timeout, kept by the connection's watch rather than by hyper.
//!
//! hyper's own `header_read_timeout` makes a boxed timer for every request head and drops
//! it when the head is parsed: about 1,400 instructions per request, most of the server
//! side's cost beyond the floor's (BENCHMARKS.md, "Sixth round"). The watch already wakes
//! on a tick of its own (`serve_conn`), so the same rule is kept there at the tick's
//! granularity: an HTTP/1.1 connection that has no request in flight, and has started or
//! finished none, for `header_read_timeout` is closed (between 1× and 1.5× the timeout
//! after it began to wait, as the idle timeout is). That covers a head trickled a byte at
//! a time (bytes move, so the idle timeout never fires) and a keep-alive connection that
//! sends no next request, as hyper's timer did.
//!
//! A request is in flight from the moment its head is handed to the gateway until its
//! answer's body has been written or dropped ([`Tracked`]), so a slow upstream or a long
//! stream never counts as waiting for a head.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};

/// One connection's requests, as the watch reads them.
#[derive(Default)]
pub struct Requests {
    /// Requests begun plus requests ended: any change means the connection was not
    /// waiting for a head all along.
    events: AtomicU32,
    in_flight: AtomicU32,
}

impl Requests {
    /// A request's head has arrived; it is in flight until the guard is dropped.
    pub fn begun(self: &Arc<Self>) -> InFlight {
        // Relaxed: the watch runs on the connection's own task, and a stale read only
        // delays a close by one tick.
        self.events.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight; dropped with its answer's body.
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// The watch's side: how many ticks in a row the connection has been waiting for a head.
#[derive(Default)]
pub struct HeadWait {
    last_events: u32,
    quiet_ticks: u8,
}

impl HeadWait {
    /// One tick (every half `header_read_timeout`); true once the connection has waited
    /// for a head for two whole ticks.
    pub fn tick(&mut self, requests: &Requests) -> bool {
        let events = requests.events.load(Ordering::Relaxed);
        if events != self.last_events || requests.in_flight.load(Ordering::Relaxed) > 0 {
            self.last_events = events;
            self.quiet_ticks = 0;
            return false;
        }
        self.quiet_ticks = self.quiet_ticks.saturating_add(1);
        self.quiet_ticks >= 2
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, keeping its request in flight until it is written or dropped.
    /// A plain wrapper (no box): hyper's connection is built for this type.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: Option<InFlight>) -> Self {
        Tracked { inner, in_flight }
    }
}

impl<B: HttpBody> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_is_two_quiet_ticks_with_nothing_in_flight() {
        let requests = Arc::new(Requests::default());
        let mut wait = HeadWait::default();
        assert!(!wait.tick(&requests));
        assert!(wait.tick(&requests), "two quiet ticks: the head is late");
    }

    #[test]
    fn a_request_in_flight_is_never_waiting() {
        let requests = Arc::new(Requests::default());
        let mut wait = HeadWait::default();
        let guard = requests.begun();
        for _ in 0..5 {
            assert!(!wait.tick(&requests));
        }
        drop(guard);
        // The answer just ended: the wait for the next head starts now.
        assert!(!wait.tick(&requests));
        assert!(!wait.tick(&requests));
        assert!(wait.tick(&requests));
    }

    #[test]
    fn a_request_begun_and_ended_between_ticks_restarts_the_wait() {
        let requests = Arc::new(Requests::default());
        let mut wait = HeadWait::default();
        assert!(!wait.tick(&requests));
        drop(requests.begun());
        assert!(!wait.tick(&requests));
        assert!(!wait.tick(&requests));
        assert!(wait.tick(&requests));
    }
}
