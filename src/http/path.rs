//! The one path normalisation used both to match a route and to build the upstream URI.
//!
//! Threat model: a client crafts a path that matches a public route here but reaches a
//! protected resource at the upstream (`/public/..%2Fadmin`, `/public/%2e%2e/admin`,
//! `/public\..\admin`, `//admin`). Defence: decode exactly the characters that can change
//! the shape of a path (`%2F`, `%5C`, `%2E`, and a literal `\`), then collapse empty
//! segments and resolve dot-segments (RFC 3986 §5.2.4), and forward the result. Nothing
//! that an upstream could later decode into a separator or a dot-segment survives, so the
//! upstream sees the path that was matched. `%00` is refused outright.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with `/`")]
    NotAbsolute,
    #[error("path contains an encoded NUL")]
    EncodedNul,
}

/// Normalises a request path (without the query). Borrows when nothing changes, which is
/// the common case on the hot path.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_shape_chars(path)?;
    let mut out: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(decoded.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if result.is_empty() || (trailing_slash && !out.is_empty()) {
        result.push('/');
    }
    Ok(Cow::Owned(result))
}

/// The normalised path as routes are matched against it: each segment without its `;`
/// parameters (`/api;jsessionid=1/x` → `/api/x`). Servlet containers and others drop
/// them before routing, so `/api;x` must be judged by the `/api` route, not by a public
/// catch-all. Only matching uses this; the normalised path (parameters kept) is what is
/// forwarded. Borrows when there is no `;`, the common case.
pub fn route_key(norm: &str) -> Cow<'_, str> {
    if !norm.contains(';') {
        return Cow::Borrowed(norm);
    }
    let mut out = String::with_capacity(norm.len());
    for (i, seg) in norm.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    // "/a;x/" → "/a/", and ";x" alone (a segment of only parameters) → an empty segment,
    // collapsed as the normalisation would.
    match normalize_path(&out) {
        Ok(Cow::Owned(s)) => Cow::Owned(s),
        _ => Cow::Owned(out),
    }
}

/// True when no rule of [`normalize_path`] would change `p`.
fn is_already_normal(p: &[u8]) -> bool {
    let mut prev_slash = false;
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        // Letters, digits and most punctuation sort above `/`; of the bytes looked for
        // below only `\` does too, so one compare passes over most bytes of a path.
        if c > b'/' && c != b'\\' {
            prev_slash = false;
            i += 1;
            continue;
        }
        match c {
            b'\\' => return false,
            b'%' => return false,
            b'/' => {
                if prev_slash {
                    return false;
                }
                prev_slash = true;
            }
            b'.' if prev_slash => {
                // "/." followed by end, '/', or ".": a dot-segment.
                let rest = &p[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
                {
                    return false;
                }
                prev_slash = false;
            }
            _ => prev_slash = false,
        }
        i += 1;
    }
    true
}

fn hex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        _ => d - b'A' + 10,
    }
}

fn ends_in_partial_escape(out: &str) -> bool {
    let b = out.as_bytes();
    b.last() == Some(&b'%') || (b.len() >= 2 && b[b.len() - 2] == b'%')
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')
}

/// Decodes `%2F` `%5C` `%2E` (either case) and the unreserved characters and turns `\` into `/`; other escapes stay as
/// they are, with their hex digits upper-cased so equal paths compare equal.
fn decode_shape_chars(p: &str) -> Result<String, PathError> {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                out.push('/');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hi = b[i + 1].to_ascii_uppercase();
                let lo = b[i + 2].to_ascii_uppercase();
                match (hi, lo) {
                    (b'2', b'F') | (b'5', b'C') => out.push('/'),
                    (b'2', b'E') => out.push('.'),
                    (b'0', b'0') => return Err(PathError::EncodedNul),
                    // Unreserved characters (RFC 3986 §2.3) mean the same encoded or not,
                    // and every upstream decodes them: `/%61pi` is `/api`, so it is
                    // matched and forwarded as `/api` (§6.2.2.2).
                    // …unless the decoded character would complete an escape with what
                    // precedes it (`%%32%66` must not become `%2f`): decoding never
                    // creates a new escape.
                    _ if hi.is_ascii_hexdigit()
                        && lo.is_ascii_hexdigit()
                        && is_unreserved(hex(hi) << 4 | hex(lo))
                        && !ends_in_partial_escape(&out) =>
                    {
                        out.push((hex(hi) << 4 | hex(lo)) as char)
                    }
                    _ if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                        out.push('%');
                        out.push(hi as char);
                        out.push(lo as char);
                    }
                    _ => out.push('%'),
                }
                if out.ends_with('%') {
                    i += 1;
                } else {
                    i += 3;
                }
            }
            b'%' => {
                out.push('%');
                i += 1;
            }
            _ => {
                // Copy a run of ordinary characters at once (keeps UTF-8 intact).
                let start = i;
                while i < b.len() && b[i] != b'%' && b[i] != b'\\' {
                    i += 1;
                }
                out.push_str(&p[start..i]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p).unwrap().into_owned()
    }

    #[test]
    fn leaves_normal_paths_borrowed() {
        assert!(matches!(
            normalize_path("/api/orders/1"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize_path("/"), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            normalize_path("/a/.well-known/x"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(normalize_path("/a/b..c/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn collapses_and_resolves() {
        assert_eq!(n("//api//orders"), "/api/orders");
        assert_eq!(n("/api/./orders/"), "/api/orders/");
        assert_eq!(n("/api/x/../orders"), "/api/orders");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/a/b/.."), "/a/");
    }

    #[test]
    fn encoded_separators_and_dots_cannot_escape() {
        assert_eq!(n("/public/..%2Fadmin"), "/admin");
        assert_eq!(n("/public/%2e%2e/admin"), "/admin");
        assert_eq!(n("/public/%2E%2E%2fadmin"), "/admin");
        assert_eq!(n("/public\\..\\admin"), "/admin");
        assert_eq!(n("/public/%5c..%5cadmin"), "/admin");
        // Unreserved characters are decoded (RFC 3986 §6.2.2.2); other escapes are kept.
        assert_eq!(n("/a%20b/%7e"), "/a%20b/~");
        assert_eq!(n("/100%"), "/100%");
        assert_eq!(n("/x%4"), "/x%4");
        assert_eq!(normalize_path("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(normalize_path("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn route_key_drops_segment_parameters() {
        assert_eq!(route_key("/api;jsessionid=1/x"), "/api/x");
        assert_eq!(route_key("/api;x"), "/api");
        assert_eq!(route_key("/;x/api"), "/api");
        assert!(matches!(route_key("/plain/path"), Cow::Borrowed(_)));
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(n("/%61pi"), "/api");
        assert_eq!(n("/a%70i/%7Ex%2D%5f"), "/api/~x-_");
        assert_eq!(n("/a%20b%3B"), "/a%20b%3B");
        // Found by the path_route fuzz target: decoding must not form a new escape.
        assert_eq!(n("/%%32%66api"), "/%%32fapi");
        for p in ["/t%4+@m;ece%%e%43i", "/%%32%66api", "/x%4%31"] {
            let once = n(p);
            assert_eq!(n(&once), once, "idempotent for {p}");
        }
    }
}
