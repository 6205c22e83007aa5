//! The built-in echo upstream (`echo_upstream:` in the config): answers every request
//! with a JSON description of what reached it — method, path, query and headers — so a
//! new user can see the identity headers Tollgate injects. Not for production traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::http::body::{self, Body};

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        // The echo shows what an upstream would see, except credentials.
        let value = if k == http::header::AUTHORIZATION || k == http::header::COOKIE {
            "[redacted]".to_string()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        headers.insert(k.as_str(), value);
    }
    body::json(
        http::StatusCode::OK,
        &serde_json::json!({
            "echo": "tollgate built-in echo upstream",
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
        }),
    )
}

/// Binds `addr` and serves the echo until the process ends. Returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    service_fn(
                        |req| async move { Ok::<_, std::convert::Infallible>(echo(req).await) },
                    );
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}
