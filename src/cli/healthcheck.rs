//! `tollgate healthcheck`: asks the running gateway's admin `/healthz`, for container
//! runtimes whose HEALTHCHECK runs a command inside an image that has no shell or curl.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CmdResult;
use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(config: &Path, addr: Option<SocketAddr>) -> CmdResult {
    let addr = match addr {
        Some(a) => a,
        None => Config::load(config)?
            .listen
            .admin
            .ok_or("listen.admin is not set: there is no /healthz to ask")?,
    };
    let addr = reachable(addr);
    let status = tokio::time::timeout(TIMEOUT, ask(addr))
        .await
        .map_err(|_| format!("{addr}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("{addr}/healthz answered {status}").into())
    }
}

/// A wildcard listen address is asked on the loopback of the same family.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The status code of `GET /healthz`.
async fn ask(addr: SocketAddr) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    // The status line is all that matters; the body is a few bytes.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|code| code.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}
