//! The one body type every response and upstream request uses, and small builders for
//! the JSON answers Tollgate writes itself.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: upstream bodies pass through it unbuffered.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps any body whose errors can be boxed.
pub fn boxed<B>(b: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// `{"error": …, "error_description": …}` with the given status.
pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// Any serialisable value as a JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// A request body longer than an endpoint reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body too large or cut off")]
pub struct TooLarge;

/// The whole of an endpoint's own small request body, at most `max` bytes. A declared
/// `Content-Length` over the cap is refused before a byte is read; a longer stream is cut
/// off at the cap. Proxied bodies never come here: they stream.
pub async fn read_small<B>(body: B, max: usize) -> Result<Bytes, TooLarge>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > max as u64 {
        return Err(TooLarge);
    }
    http_body_util::Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| TooLarge)
}
