//! A `CheckRequest` read into the request to decide: `attributes.request.http` (method,
//! path with query, host, scheme, and the headers from `headers` or `header_map`, whichever
//! Envoy filled), the client's address from `attributes.source.address`, its certificate
//! from `attributes.source.certificate`, and the route named by `context_extensions`.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::wire::{self, CheckRequest};
use crate::http::{path, ClientCert};
use crate::proxy::admission::RequestView;

/// The owned parts a [`RequestView`] borrows.
pub struct Described<'a> {
    method: Method,
    scheme: &'static str,
    host: Option<String>,
    path: String,
    query: Option<&'a str>,
    raw_path: &'a str,
    authority: Option<&'a str>,
    headers: HeaderMap,
    peer: IpAddr,
    client_cert: Option<ClientCert>,
    route: Option<&'a str>,
}

impl<'a> Described<'a> {
    /// Reads the check; the reason when it describes no HTTP request Tollgate can decide.
    pub fn read(req: &'a CheckRequest, grpc_peer: SocketAddr) -> Result<Self, &'static str> {
        let attrs = req
            .attributes
            .as_ref()
            .ok_or("the check carries no attributes")?;
        let http = attrs
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .ok_or("the check describes no HTTP request")?;
        let method =
            Method::from_bytes(http.method.as_bytes()).map_err(|_| "the method is not a token")?;
        let headers = headers(http)?;
        // `path` is the request target as sent: path and query, never a fragment.
        let (raw_path, query) = match http.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (http.path.as_str(), None),
        };
        let path = path::normalize_path(raw_path)
            .map_err(|_| "the path is not a valid request path")?
            .into_owned();
        let authority = Some(http.host.as_str())
            .filter(|h| !h.is_empty())
            .or_else(|| last(&http.headers, b":authority"));
        let host = authority
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .map(|h| crate::http::host::host_name(&h).to_owned());
        let scheme = if http.scheme.eq_ignore_ascii_case("https") {
            "https"
        } else {
            "http"
        };
        let source = attrs.source.as_ref();
        let peer = source
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.socket_address.as_ref())
            .and_then(|s| s.address.parse().ok())
            // Envoy always sends the source; without it, the caller is the one counted.
            .unwrap_or_else(|| grpc_peer.ip());
        let client_cert = match source.map(|s| s.certificate.as_str()) {
            Some(pem) if !pem.is_empty() => {
                let decoded = percent_encoding::percent_decode_str(pem).decode_utf8_lossy();
                Some(
                    ClientCert::from_pem_or_base64(&decoded)
                        .ok_or("source.certificate is not a certificate")?,
                )
            }
            _ => None,
        };
        // A map: the last entry for a key is its value.
        let route = attrs
            .context_extensions
            .iter()
            .rev()
            .find(|e| e.key == super::ROUTE_EXTENSION)
            .map(|e| e.value.as_str());
        Ok(Described {
            method,
            scheme,
            host,
            path,
            query,
            raw_path,
            authority,
            headers,
            peer,
            client_cert,
            route,
        })
    }

    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            scheme: self.scheme,
            host: self.host.as_deref(),
            path: &self.path,
            raw_path: self.raw_path,
            authority: self.authority,
            query: self.query,
            headers: &self.headers,
            fields: crate::http::head::Fields::ALL,
            peer: self.peer,
            client_cert: self.client_cert.as_ref(),
        }
    }

    pub fn route_name(&self) -> Option<&'a str> {
        self.route
    }

    pub fn client_cert(&self) -> Option<&ClientCert> {
        self.client_cert.as_ref()
    }
}

/// The request headers from `headers` (one merged value per name; a map, so a name's last
/// entry wins) and `header_map` (raw, repeated; `encode_raw_headers`). Pseudo-headers
/// (`:authority`, `:path`) are left out: the fields above carry them. Names and values
/// are slices of the received message: nothing is copied.
fn headers(http: &wire::HttpRequest) -> Result<HeaderMap, &'static str> {
    let mut map = HeaderMap::with_capacity(http.headers.len());
    for e in &http.headers {
        if let Some((name, value)) = header(&e.key, &e.value)? {
            map.insert(name, value);
        }
    }
    for h in http.header_map.iter().flat_map(|m| m.headers.iter()) {
        let value = if h.raw_value.is_empty() {
            &h.value
        } else {
            &h.raw_value
        };
        if let Some((name, value)) = header(&h.key, value)? {
            map.append(name, value);
        }
    }
    Ok(map)
}

/// One header as `http` types, or `None` for a pseudo-header.
fn header(
    name: &bytes::Bytes,
    value: &bytes::Bytes,
) -> Result<Option<(HeaderName, HeaderValue)>, &'static str> {
    if name.starts_with(b":") {
        return Ok(None);
    }
    let name = HeaderName::from_bytes(name).map_err(|_| "a header name is not valid")?;
    let value =
        HeaderValue::from_maybe_shared(value.clone()).map_err(|_| "a header value is not valid")?;
    Ok(Some((name, value)))
}

/// The value of the last `headers` entry named `name`, when it is text.
fn last<'a>(entries: &'a [wire::HeaderEntry], name: &[u8]) -> Option<&'a str> {
    let e = entries.iter().rev().find(|e| e.key == name)?;
    std::str::from_utf8(&e.value).ok()
}
