//! A TCP relay in front of a real server (PostgreSQL, an upstream) that a test can freeze:
//! connections stay open but no byte moves, as when a server hangs or a network
//! partition drops packets without resetting anything. It can also be cut: every relayed
//! connection is closed and new ones are closed as soon as they are accepted, as when the
//! server behind it goes down; or severed: the open connections are closed while new ones
//! are still relayed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Relay {
    pub addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
    thaw: Arc<Notify>,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections accepted, relayed or not.
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let thaw = Arc::new(Notify::new());
        let cut: Arc<AtomicBool> = Arc::default();
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accepted: Arc<AtomicUsize> = Arc::default();
        let (f, t) = (frozen.clone(), thaw.clone());
        let (c, cs, a) = (cut.clone(), conns.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let (f, t) = (f.clone(), t.clone());
                let conn = tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, f.clone(), t.clone()), pump(ur, dw, f, t));
                });
                let mut cs = cs.lock().unwrap();
                cs.retain(|h| !h.is_finished());
                cs.push(conn.abort_handle());
            }
        });
        Relay {
            addr,
            frozen,
            thaw,
            cut,
            conns,
            accepted,
            task,
        }
    }

    /// Closes every relayed connection; until [`Relay::restore`], new connections are
    /// closed as soon as they are accepted.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Closes every open relayed connection at once, as when the server or a middlebox
    /// drops them; new connections are still relayed.
    pub fn sever(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// From now on, nothing is relayed (in either direction) until [`Relay::thaw`].
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.thaw.notify_waiters();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    thaw: Arc<Notify>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            let woken = thaw.notified();
            if !frozen.load(Ordering::SeqCst) {
                break;
            }
            woken.await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
