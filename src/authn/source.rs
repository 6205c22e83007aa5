//! Where a route's bearer token comes from: the `Authorization` header, a query parameter
//! (the legacy `oauth_token`), or a cookie. A token taken from the query is removed from
//! the query that is forwarded, so it never reaches upstream logs.

use http::{header, HeaderMap};

use crate::config::TokenSource;

/// A token's text: as the request carries it, or, for an `Authorization` token that is
/// the last one this thread verified, that token's own text, whose UTF-8 check was made
/// when it was verified (`jwt::known_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenText<'r> {
    Received(&'r str),
    Known(super::jwt::KnownToken),
}

impl TokenText<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            TokenText::Received(t) => t,
            TokenText::Known(k) => k.as_str(),
        }
    }
}

/// A token found in a request, and which source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'s, 'r> {
    pub token: TokenText<'r>,
    /// The route's source it came from (borrowed from the route, not the request).
    pub source: &'s TokenSource,
    /// `Authorization: DPoP` or Bearer (every other source is Bearer).
    pub scheme: super::Scheme,
}

/// Returns the first token found by the route's sources, in order. `known`: the
/// authenticator's verified token for the bytes of an `Authorization` header, if it caches
/// one ([`Authenticator::known_token`](super::Authenticator::known_token)).
pub fn find_token<'s, 'r>(
    sources: &'s [TokenSource],
    headers: &'r HeaderMap,
    query: Option<&'r str>,
    known: &dyn Fn(&[u8]) -> Option<super::jwt::KnownToken>,
) -> Option<FoundToken<'s, 'r>> {
    for source in sources {
        let (token, scheme) = match source {
            TokenSource::Header => match authorization(headers, known) {
                Some((t, s)) => (Some(t), s),
                None => (None, super::Scheme::Bearer),
            },
            TokenSource::Query(name) => (
                query
                    .and_then(|q| query_param(q, name))
                    .map(TokenText::Received),
                super::Scheme::Bearer,
            ),
            TokenSource::Cookie(name) => (
                cookie(headers, name).map(TokenText::Received),
                super::Scheme::Bearer,
            ),
        };
        if let Some(token) = token.filter(|t| !t.as_str().is_empty()) {
            return Some(FoundToken {
                token,
                source,
                scheme,
            });
        }
    }
    None
}

/// `Authorization: Bearer <token>` or `Authorization: DPoP <token>` (RFC 9449 §7.1),
/// scheme case-insensitive. The credentials are the token this thread verified last (a
/// client's next request) or one the authenticator caches (`known`), either compared
/// without its UTF-8 check, or else checked as text ([`credentials`]); all give the same
/// token for the same bytes.
pub fn authorization<'r>(
    headers: &'r HeaderMap,
    known: &dyn Fn(&[u8]) -> Option<super::jwt::KnownToken>,
) -> Option<(TokenText<'r>, super::Scheme)> {
    let (scheme, rest) = raw_credentials(headers)?;
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        super::Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        super::Scheme::Dpop
    } else {
        return None;
    };
    // A token has no whitespace of its own: what `str::trim` would take off around the
    // memo's token is ASCII whitespace, which `trim_ascii` takes off too. Anything else
    // around it is not the memo's token and is checked as text below.
    let bytes = rest.trim_ascii();
    // The UTF-8 check of a ~700-byte token costs as much as the rest of a cache hit
    // (BENCHMARKS.md, "Eleventh round" and "Fourteenth round").
    let token = match super::jwt::known_token(bytes).or_else(|| known(bytes)) {
        Some(known) => TokenText::Known(known),
        None => TokenText::Received(std::str::from_utf8(rest).ok()?.trim()),
    };
    Some((token, scheme))
}

/// `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = credentials(headers)?;
    scheme.eq_ignore_ascii_case(b"bearer").then_some(token)
}

/// The `Authorization` header as its scheme and its credentials (trimmed). The token is
/// most of the header (a JWT is ~700 bytes) and this runs on every request, so it is
/// checked once, as UTF-8 (word at a time for ASCII), not byte by byte for visible ASCII
/// as `HeaderValue::to_str` would (BENCHMARKS.md, "Per-stage budget"). A header value
/// holds no control character but tab; a token with other non-ASCII text is passed on
/// and refused as invalid by every authenticator (a JWT is base64url, an opaque token or
/// a foreign one matches nothing issued).
fn credentials(headers: &HeaderMap) -> Option<(&[u8], &str)> {
    let (scheme, rest) = raw_credentials(headers)?;
    Some((scheme, std::str::from_utf8(rest).ok()?.trim()))
}

/// The `Authorization` header split at its first space: the scheme and the rest.
fn raw_credentials(headers: &HeaderMap) -> Option<(&[u8], &[u8])> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = v.iter().position(|&b| b == b' ')?;
    Some((&v[..space], &v[space + 1..]))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    // Tokens are URL-safe (JWT, hex, base64url), so the raw value is the token; a value
    // that would need decoding is not a token we issue or accept.
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crate::http::cookie::value(headers, name).map(|v| v.trim_matches('"'))
}

/// The query without parameter `name`; `None` when nothing is left.
pub fn remove_query_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn sources_in_order() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; session=ck"));
        let sources = vec![
            TokenSource::Header,
            TokenSource::Query("oauth_token".into()),
            TokenSource::Cookie("session".into()),
        ];
        assert_eq!(
            find_token(&sources, &h, Some("x=1&oauth_token=qt"), &|_| None)
                .unwrap()
                .token
                .as_str(),
            "qt"
        );
        assert_eq!(
            find_token(&sources, &h, None, &|_| None)
                .unwrap()
                .token
                .as_str(),
            "ck"
        );
        h.insert("authorization", HeaderValue::from_static("bearer hd"));
        assert_eq!(
            find_token(&sources, &h, Some("oauth_token=qt"), &|_| None)
                .unwrap()
                .token
                .as_str(),
            "hd"
        );
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(find_token(&sources[..1], &h, None, &|_| None), None);
    }

    #[test]
    fn authorization_schemes_and_credentials() {
        let with = |v: &'static [u8]| {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_bytes(v).unwrap());
            h
        };
        let text =
            |h: &HeaderMap| authorization(h, &|_| None).map(|(t, s)| (t.as_str().to_owned(), s));
        let h = with(b"Bearer  abc.def ");
        assert_eq!(
            text(&h),
            Some(("abc.def".into(), crate::authn::Scheme::Bearer))
        );
        assert_eq!(bearer(&h), Some("abc.def"));
        let h = with(b"dPoP t1");
        assert_eq!(text(&h), Some(("t1".into(), crate::authn::Scheme::Dpop)));
        assert_eq!(bearer(&h), None);
        // Credentials that are not UTF-8 are no token; UTF-8 past ASCII is a token,
        // which no authenticator accepts. A scheme past ASCII is no scheme.
        assert_eq!(authorization(&with(b"Bearer ab\xff"), &|_| None), None);
        assert_eq!(
            text(&with(b"Bearer ab\xc3\xa9")),
            Some(("ab\u{e9}".into(), crate::authn::Scheme::Bearer))
        );
        assert_eq!(authorization(&with(b"B\xc3\xa9arer ab"), &|_| None), None);
        assert_eq!(authorization(&with(b"Bearer"), &|_| None), None);
        assert_eq!(authorization(&with(b"Basic YTpi"), &|_| None), None);
    }

    #[test]
    fn query_token_removed() {
        assert_eq!(
            remove_query_param("a=1&oauth_token=t&b=2", "oauth_token").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(remove_query_param("oauth_token=t", "oauth_token"), None);
    }
}
