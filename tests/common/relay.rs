//! A TCP relay in front of a real server (PostgreSQL, an upstream) that a test can freeze:
//! connections stay open but no byte moves, as when a server hangs or a network
//! partition drops packets without resetting anything; or sever: every open connection
//! is closed at once, as when the server or a middlebox drops them, while new ones are
//! still relayed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub struct Relay {
    pub addr: std::net::SocketAddr,
    frozen: Arc<AtomicBool>,
    thaw: Arc<Notify>,
    sever: tokio::sync::watch::Sender<u64>,
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
        let (f, t) = (frozen.clone(), thaw.clone());
        let (sever, severed) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let (f, t) = (f.clone(), t.clone());
                let mut severed = severed.clone();
                severed.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    // Returning drops both sockets: each peer sees its connection closed.
                    tokio::select! {
                        _ = async {
                            tokio::join!(pump(dr, uw, f.clone(), t.clone()), pump(ur, dw, f, t))
                        } => {}
                        _ = severed.changed() => {}
                    }
                });
            }
        });
        Relay {
            addr,
            frozen,
            thaw,
            sever,
            task,
        }
    }

    /// From now on, nothing is relayed (in either direction) until [`Relay::thaw`].
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection open now, in both directions; later ones are relayed.
    pub fn sever(&self) {
        self.sever.send_modify(|n| *n += 1);
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
