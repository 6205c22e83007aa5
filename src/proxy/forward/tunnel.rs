//! The tunnel of an upgraded (WebSocket) connection, closed with its token.

use hyper_util::rt::TokioIo;

/// Pipes an upgraded connection both ways until either side closes, `close_at` passes
/// (the token expired) or `close_on` resolves (the token was revoked).
pub(super) async fn tunnel(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    close_at: Option<crate::authn::lifetime::Expiry>,
    close_on: Option<crate::revocation::RevokedFuture>,
) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut down = TokioIo::new(down);
    let mut up = TokioIo::new(up);
    let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
    let expired = async {
        match close_at {
            Some(at) => tokio::time::sleep_until(at.deadline()).await,
            None => std::future::pending().await,
        }
    };
    let revoked = async {
        match close_on {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = expired => tracing::info!("upgraded connection closed: its token expired"),
        _ = revoked => tracing::info!("upgraded connection closed: its token was revoked"),
    }
}
