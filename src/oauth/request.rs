//! Reading a token-endpoint request the way each legacy client sends it: the body as
//! `application/x-www-form-urlencoded` or JSON, `grant_type` in the body or the query,
//! and the client by HTTP Basic or by `client_id`/`client_secret` in the body.
//!
//! Threat model: hostile input. Bodies are capped before they are buffered; a parameter
//! given twice is refused (RFC 6749 §3.2) rather than guessed at; credentials are only
//! ever read from the body or the `Authorization` header, never from the query string,
//! where they would end up in logs; secrets are held in zeroizing buffers.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use zeroize::Zeroizing;

use super::error::OAuthError;

/// Largest request body the token, revoke, introspect and users endpoints accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest value accepted for any single parameter.
const MAX_PARAM_LEN: usize = 4096;

/// Request parameters, decoded from form or JSON. Values are zeroized on drop because
/// passwords and secrets travel among them.
#[derive(Default)]
pub struct Params {
    map: HashMap<String, Zeroizing<String>>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are credentials.
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Params {
    /// A parameter's value; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.map
            .insert(name.to_string(), Zeroizing::new(value.to_string()));
    }
}

/// Reads the whole body (capped) and decodes it by content type. A body without a
/// content type is sniffed: `{` means JSON, anything else form.
pub async fn read_params(headers: &HeaderMap, body: Incoming) -> Result<Params, OAuthError> {
    let bytes = read_body(body).await?;
    parse_params(headers, &bytes)
}

pub async fn read_body(body: Incoming) -> Result<Bytes, OAuthError> {
    Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| OAuthError::InvalidRequest("The request body is too large or was cut off"))
}

fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) => {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        }
        None => body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
    }
}

pub fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let mut params = Params::default();
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(params);
    }
    if is_json(headers, body) {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| OAuthError::InvalidRequest("The request body is not valid JSON"))?;
        let obj = value.as_object().ok_or(OAuthError::InvalidRequest(
            "The request body must be a JSON object",
        ))?;
        for (k, v) in obj {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(OAuthError::InvalidRequest("Parameters must be strings")),
            };
            check_len(&s)?;
            params.map.insert(k.clone(), Zeroizing::new(s));
        }
    } else {
        for (k, v) in form_urlencoded::parse(body) {
            check_len(&v)?;
            if params.map.contains_key(k.as_ref()) {
                return Err(OAuthError::InvalidRequest("A parameter is repeated"));
            }
            params
                .map
                .insert(k.into_owned(), Zeroizing::new(v.into_owned()));
        }
    }
    Ok(params)
}

fn check_len(v: &str) -> Result<(), OAuthError> {
    if v.len() > MAX_PARAM_LEN {
        return Err(OAuthError::InvalidRequest("A parameter is too long"));
    }
    Ok(())
}

/// `grant_type` from the query string (the `?grant_type=password` dialect).
pub fn query_grant_type(query: Option<&str>) -> Result<Option<String>, OAuthError> {
    let mut found = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "grant_type" {
            if found.is_some() {
                return Err(OAuthError::InvalidRequest("A parameter is repeated"));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// How the client identified itself.
#[derive(Default)]
pub struct ClientCredentials {
    pub id: Option<String>,
    pub secret: Option<Zeroizing<String>>,
    /// The credentials came in an `Authorization: Basic` header.
    pub via_basic: bool,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("via_basic", &self.via_basic)
            .finish()
    }
}

/// The client's credentials from HTTP Basic (RFC 6749 §2.3.1: both parts form-encoded)
/// or the body. Using both methods at once is an error.
pub fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientCredentials, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| OAuthError::InvalidClient { basic: true })?;
            match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
                    Some(parse_basic(rest.trim())?)
                }
                // A bearer token or another scheme on the token endpoint is not client
                // authentication; ignore it like any unrelated header.
                _ => None,
            }
        }
        None => None,
    };
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    match basic {
        Some((id, secret)) => {
            if body_secret.is_some() {
                return Err(OAuthError::InvalidRequest(
                    "Use only one client authentication method",
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id does not match the authenticated client",
                ));
            }
            Ok(ClientCredentials {
                id: Some(id),
                secret: Some(secret),
                via_basic: true,
            })
        }
        None => Ok(ClientCredentials {
            id: body_id.map(str::to_owned),
            secret: body_secret.map(|s| Zeroizing::new(s.to_owned())),
            via_basic: false,
        }),
    }
}

fn parse_basic(b64: &str) -> Result<(String, Zeroizing<String>), OAuthError> {
    let bad = OAuthError::InvalidClient { basic: true };
    if b64.len() > MAX_PARAM_LEN {
        return Err(bad);
    }
    let raw = Zeroizing::new(
        STANDARD
            .decode(b64)
            .map_err(|_| OAuthError::InvalidClient { basic: true })?,
    );
    let text = std::str::from_utf8(&raw).map_err(|_| OAuthError::InvalidClient { basic: true })?;
    let (id, secret) = text.split_once(':').ok_or(bad)?;
    let decode = |s: &str| -> String {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let id = decode(id);
    if id.is_empty() {
        return Err(OAuthError::InvalidClient { basic: true });
    }
    Ok((id, Zeroizing::new(decode(secret))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(ct: Option<&str>, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn form_json_and_sniffed_bodies() {
        let h = headers(Some("application/x-www-form-urlencoded"), None);
        let p = parse_params(&h, b"grant_type=password&username=john_doe&password=a%2Bb").unwrap();
        assert_eq!(p.get("password"), Some("a+b"));
        let h = headers(Some("application/json; charset=utf-8"), None);
        let p = parse_params(&h, br#"{"username":"u","client_id":138,"x":null}"#).unwrap();
        assert_eq!(p.get("client_id"), Some("138"));
        assert_eq!(p.get("x"), None);
        let p = parse_params(&headers(None, None), br#" {"username":"u"}"#).unwrap();
        assert_eq!(p.get("username"), Some("u"));
        let p = parse_params(&headers(None, None), b"username=u").unwrap();
        assert_eq!(p.get("username"), Some("u"));
    }

    #[test]
    fn repeated_nested_and_broken_parameters_are_refused() {
        let form = headers(Some("application/x-www-form-urlencoded"), None);
        assert!(parse_params(&form, b"a=1&a=2").is_err());
        let json = headers(Some("application/json"), None);
        assert!(parse_params(&json, br#"{"a":{"b":1}}"#).is_err());
        assert!(parse_params(&json, br#"["a"]"#).is_err());
        assert!(parse_params(&json, b"{").is_err());
    }

    #[test]
    fn basic_credentials_are_decoded_and_exclusive() {
        let h = headers(None, Some("Basic MTM4OmU4Yjk="));
        let c = client_credentials(&h, &Params::default()).unwrap();
        assert_eq!(c.id.as_deref(), Some("138"));
        assert_eq!(c.secret.as_deref().map(String::as_str), Some("e8b9"));
        assert!(c.via_basic);
        let mut p = Params::default();
        p.insert("client_secret", "x");
        assert!(matches!(
            client_credentials(&h, &p),
            Err(OAuthError::InvalidRequest(_))
        ));
        let h = headers(None, Some("Basic !!!"));
        assert!(matches!(
            client_credentials(&h, &Params::default()),
            Err(OAuthError::InvalidClient { basic: true })
        ));
    }

    #[test]
    fn grant_type_from_the_query() {
        assert_eq!(
            query_grant_type(Some("grant_type=password"))
                .unwrap()
                .as_deref(),
            Some("password")
        );
        assert_eq!(query_grant_type(None).unwrap(), None);
        assert!(query_grant_type(Some("grant_type=a&grant_type=b")).is_err());
    }
}
