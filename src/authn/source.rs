//! Where a route's bearer token comes from: the `Authorization` header, a query parameter
//! (the legacy `oauth_token`), or a cookie. A token taken from the query is removed from
//! the query that is forwarded, so it never reaches upstream logs.

use http::{header, HeaderMap};

use crate::config::TokenSource;

/// A token found in a request, and which source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'s, 'r> {
    pub token: &'r str,
    /// The route's source it came from (borrowed from the route, not the request).
    pub source: &'s TokenSource,
    /// `Authorization: DPoP` or Bearer (every other source is Bearer).
    pub scheme: super::Scheme,
}

/// Returns the first token found by the route's sources, in order.
pub fn find_token<'s, 'r>(
    sources: &'s [TokenSource],
    headers: &'r HeaderMap,
    query: Option<&'r str>,
) -> Option<FoundToken<'s, 'r>> {
    for source in sources {
        let (token, scheme) = match source {
            TokenSource::Header => match authorization(headers) {
                Some((t, s)) => (Some(t), s),
                None => (None, super::Scheme::Bearer),
            },
            TokenSource::Query(name) => (
                query.and_then(|q| query_param(q, name)),
                super::Scheme::Bearer,
            ),
            TokenSource::Cookie(name) => (cookie(headers, name), super::Scheme::Bearer),
        };
        if let Some(token) = token.filter(|t| !t.is_empty()) {
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
/// scheme case-insensitive.
pub fn authorization(headers: &HeaderMap) -> Option<(&str, super::Scheme)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((rest.trim(), super::Scheme::Bearer))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((rest.trim(), super::Scheme::Dpop))
    } else {
        None
    }
}

/// `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
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
            find_token(&sources, &h, Some("x=1&oauth_token=qt"))
                .unwrap()
                .token,
            "qt"
        );
        assert_eq!(find_token(&sources, &h, None).unwrap().token, "ck");
        h.insert("authorization", HeaderValue::from_static("bearer hd"));
        assert_eq!(
            find_token(&sources, &h, Some("oauth_token=qt"))
                .unwrap()
                .token,
            "hd"
        );
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert_eq!(find_token(&sources[..1], &h, None), None);
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
