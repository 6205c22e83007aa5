//! The `Cookie` request header (RFC 6265 §5.4): `name=value` pairs separated by `;`,
//! possibly spread over several header fields.

use ::http::{header, HeaderMap};

/// The value of the first cookie called `name`, as sent (quotes and emptiness are the
/// caller's to judge).
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_across_fields_and_pairs() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; b=2".parse().unwrap());
        h.append(header::COOKIE, "c=\"3\"".parse().unwrap());
        assert_eq!(value(&h, "b"), Some("2"));
        assert_eq!(value(&h, "c"), Some("\"3\""));
        assert_eq!(value(&h, "d"), None);
        assert_eq!(value(&h, "a=1"), None);
    }
}
