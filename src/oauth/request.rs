//! Reading a token-endpoint request the way each legacy client sends it: the body as
//! `application/x-www-form-urlencoded` or JSON, `grant_type` in the body or the query,
//! and the client by HTTP Basic or by `client_id`/`client_secret` in the body.
//!
//! Threat model: hostile input. Bodies are capped before they are buffered (a declared
//! length over the cap before any of it is read); only the form and JSON content types
//! are read, in UTF-8, and a form with a broken escape or non-UTF-8 bytes is refused
//! rather than decoded leniently; a parameter given twice, in a form or as a repeated
//! JSON key, is refused (RFC 6749 §3.2) rather than guessed at; credentials are only
//! ever read from the body or the `Authorization` header, never from the query string,
//! where they would end up in logs; secrets are held in zeroizing buffers.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap};
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
    /// RFC 8707 `resource`, the one parameter that may repeat.
    resources: Vec<String>,
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

    /// Every `resource` given, in order.
    pub fn resources(&self) -> &[String] {
        &self.resources
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

/// The body, at most [`MAX_BODY_BYTES`]. A declared `Content-Length` over the cap is
/// refused before a byte of the body is read; a longer stream is cut off at the cap.
pub async fn read_body(body: Incoming) -> Result<Bytes, OAuthError> {
    crate::http::body::read_small(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| OAuthError::InvalidRequest(TOO_LARGE))
}

const TOO_LARGE: &str = "The request body is too large or was cut off";
const UNSUPPORTED_TYPE: &str =
    "Send the parameters as application/x-www-form-urlencoded or application/json";
const MALFORMED_FORM: &str = "The form body is malformed or not UTF-8";

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Form,
    Json,
}

/// The body's encoding from its one `Content-Type` (RFC 6749 §4.3.2 names the form
/// type; the legacy JSON dialects name `application/json`). Any other type, two
/// `Content-Type` headers, or a charset other than UTF-8 is refused rather than guessed
/// at. Without a content type the body is sniffed: `{` means JSON, anything else form.
fn encoding(headers: &HeaderMap, body: &[u8]) -> Result<Encoding, OAuthError> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(ct) = types.next() else {
        return Ok(
            if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                Encoding::Json
            } else {
                Encoding::Form
            },
        );
    };
    if types.next().is_some() {
        return Err(OAuthError::InvalidRequest(UNSUPPORTED_TYPE));
    }
    let ct = ct
        .to_str()
        .map_err(|_| OAuthError::InvalidRequest(UNSUPPORTED_TYPE))?;
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let value = value.trim().trim_matches('"');
            if !value.eq_ignore_ascii_case("utf-8") {
                return Err(OAuthError::InvalidRequest(
                    "Only UTF-8 request bodies are accepted",
                ));
            }
        }
    }
    if mime == "application/x-www-form-urlencoded" {
        Ok(Encoding::Form)
    } else if mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json"))
    {
        Ok(Encoding::Json)
    } else {
        Err(OAuthError::InvalidRequest(UNSUPPORTED_TYPE))
    }
}

pub fn parse_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let encoding = encoding(headers, body)?;
    let mut params = Params::default();
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(params);
    }
    let mut add = |k: String, v: Zeroizing<String>| -> Result<(), OAuthError> {
        check_value(&v)?;
        if k == "resource" {
            params.resources.push(v.to_string());
            return Ok(());
        }
        if params.map.contains_key(&k) {
            return Err(OAuthError::InvalidRequest("A parameter is repeated"));
        }
        params.map.insert(k, v);
        Ok(())
    };
    match encoding {
        Encoding::Json => {
            let JsonObject(entries) = serde_json::from_slice(body).map_err(|_| {
                OAuthError::InvalidRequest("The request body is not a valid JSON object")
            })?;
            for (k, v) in entries {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    // A null still counts as given: `{"a":null,"a":"x"}` is a repeat.
                    serde_json::Value::Null => String::new(),
                    _ => return Err(OAuthError::InvalidRequest("Parameters must be strings")),
                };
                add(k, Zeroizing::new(s))?;
            }
        }
        Encoding::Form => {
            for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
                let (k, v) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &[][..]),
                };
                let k = form_decode(k).ok_or(OAuthError::InvalidRequest(MALFORMED_FORM))?;
                let v = form_decode(v).ok_or(OAuthError::InvalidRequest(MALFORMED_FORM))?;
                add(k.to_string(), v)?;
            }
        }
    }
    Ok(params)
}

/// A JSON object's members in order, duplicates kept so they can be refused: a
/// `serde_json::Value` keeps only the last of two equal keys.
struct JsonObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(JsonObject(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// One `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` a byte,
/// and the result must be UTF-8. `None` for a broken escape or non-UTF-8 bytes, which
/// the lenient WHATWG decoder would keep literally or replace with U+FFFD, so that two
/// different passwords could decode to the same string.
fn form_decode(raw: &[u8]) -> Option<Zeroizing<String>> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::str::from_utf8(&out).ok()?;
    Some(Zeroizing::new(
        String::from_utf8(std::mem::take(&mut *out)).ok()?,
    ))
}

/// Caps a value's length and refuses NUL, which no identifier, password or token holds
/// and which PostgreSQL cannot store in text.
fn check_value(v: &str) -> Result<(), OAuthError> {
    if v.len() > MAX_PARAM_LEN {
        return Err(OAuthError::InvalidRequest("A parameter is too long"));
    }
    if v.contains('\0') {
        return Err(OAuthError::InvalidRequest("A parameter holds a NUL byte"));
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
    let decode =
        |s: &str| form_decode(s.as_bytes()).ok_or(OAuthError::InvalidClient { basic: true });
    let id = decode(id)?;
    if id.is_empty() {
        return Err(OAuthError::InvalidClient { basic: true });
    }
    Ok((id.to_string(), decode(secret)?))
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
    fn only_form_and_json_in_utf8_are_read() {
        let body = b"grant_type=password";
        for ct in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            "application/json; charset=utf-16",
        ] {
            assert!(
                parse_params(&headers(Some(ct), None), body).is_err(),
                "{ct}"
            );
        }
        for ct in [
            "application/x-www-form-urlencoded; charset=UTF-8",
            "Application/X-WWW-Form-Urlencoded",
        ] {
            let p = parse_params(&headers(Some(ct), None), body).unwrap();
            assert_eq!(p.get("grant_type"), Some("password"), "{ct}");
        }
        let mut two = headers(Some("application/json"), None);
        two.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(parse_params(&two, br#"{"a":"b"}"#).is_err());
    }

    #[test]
    fn forms_are_decoded_strictly() {
        let form = headers(Some("application/x-www-form-urlencoded"), None);
        for bad in [
            &b"password=%zz"[..],
            b"password=%4",
            b"password=%",
            b"password=%FF",
            b"password=\xff",
            b"pass%FFword=x",
            b"password=a%00b",
        ] {
            assert!(parse_params(&form, bad).is_err(), "{bad:?}");
        }
        let p = parse_params(&form, "a=%C3%A9+x&&b&c=\u{e9}".as_bytes()).unwrap();
        assert_eq!(p.get("a"), Some("\u{e9} x"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("\u{e9}"));
    }

    #[test]
    fn repeated_json_keys_are_refused() {
        let json = headers(Some("application/json"), None);
        for bad in [
            &br#"{"a":"1","a":"2"}"#[..],
            br#"{"a":"1","\u0061":"2"}"#,
            br#"{"a":null,"a":"2"}"#,
            br#"{"a":"x\u0000"}"#,
        ] {
            assert!(parse_params(&json, bad).is_err());
        }
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
