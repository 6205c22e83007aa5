//! Serving threads: one single-threaded tokio runtime per worker, each accepting on its own
//! copy of every public listener.
//!
//! Why not the shared multi-threaded runtime: a proxied request wakes three tasks (the
//! client connection, the upstream connection, and back). On a work-stealing runtime those
//! wake-ups hop between threads (futex wake, steal, cache misses) and every shared pool is
//! a lock. With one runtime per worker, a connection, its upstream connections and their
//! wake-ups stay on one thread, like nginx's worker processes. The process-wide runtime
//! keeps the control plane: admin port, reload, background refreshers.
//!
//! Each worker registers a duplicate of the listening socket with its own epoll; the kernel
//! hands each new connection to whichever worker accepts it first, so a busy worker takes
//! fewer.

use std::cell::Cell;
use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the serving worker this thread is, or `None` on any other thread.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Runs `f` as if this thread were serving worker `index`.
#[cfg(test)]
pub(crate) fn as_worker_for_test<T>(index: usize, f: impl FnOnce() -> T) -> T {
    WORKER.with(|w| w.set(Some(index)));
    let out = f();
    WORKER.with(|w| w.set(None));
    out
}

/// How many serving workers `configured` means: 0 is one per available core.
pub fn resolve(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The running worker threads. Dropping it stops them (their open connections with them);
/// drain first for a graceful stop.
pub struct Workers {
    handles: Vec<Handle>,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads (at least one), each running its own runtime.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("tollgate-worker-{index}"))
                .build()?;
            handles.push(rt.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("tollgate-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(Some(index)));
                    rt.block_on(stop.cancelled());
                    // Dropping the runtime drops whatever is still running on it.
                })?;
            threads.push(thread);
        }
        Ok(Workers {
            handles,
            stop,
            threads,
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `make(index)`'s future on every worker.
    pub fn spawn_each<F, Fut>(&self, mut make: F)
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        for (i, h) in self.handles.iter().enumerate() {
            h.spawn(make(i));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        // Not joined: a worker may be finishing a task that waits on the thread dropping
        // this (tests drop gateways from inside a runtime). The threads end on their own.
        self.threads.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_thread() {
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        workers.spawn_each(|i| {
            let tx = tx.clone();
            async move {
                tx.send((i, current())).unwrap();
            }
        });
        let mut seen: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, vec![(0, Some(0)), (1, Some(1))]);
        assert_eq!(current(), None);
    }

    #[test]
    fn zero_means_one_per_core() {
        assert!(resolve(0) >= 1);
        assert_eq!(resolve(3), 3);
    }
}
