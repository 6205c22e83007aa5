//! Message framing (RFC 9112 §6): the one rule that refuses a request whose body length
//! hyper could read one way and an upstream or cache another (request smuggling). It runs
//! before anything else reads the request.

/// A request whose body length two parsers could disagree on (RFC 9112 §6.1, §6.3):
/// `Transfer-Encoding` together with `Content-Length`, more than one `Transfer-Encoding`
/// or `Content-Length` field, a length that is not plain digits, or any coding but a lone
/// `chunked`.
pub fn ambiguous(h: &http::HeaderMap) -> bool {
    // One pass over the head, not a lookup per name: it runs on every request, and most
    // heads are a handful of fields.
    let (mut cl, mut te) = ((0u32, None), (0u32, None));
    for (name, value) in h {
        if *name == http::header::CONTENT_LENGTH {
            cl = (cl.0 + 1, cl.1.or(Some(value)));
        } else if *name == http::header::TRANSFER_ENCODING {
            te = (te.0 + 1, te.1.or(Some(value)));
        }
    }
    // `Content-Length` must be one field of digits only (`5, 5` and `+5` are refused,
    // whatever the HTTP parser made of them).
    if let (n, Some(first)) = cl {
        let digits = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
        if !digits || n > 1 {
            return true;
        }
    }
    match te {
        (_, None) => false,
        (n, Some(first)) => {
            cl.0 > 0
                || n > 1
                || !first
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ambiguous;
    use http::{HeaderMap, HeaderValue};

    fn head(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn one_length_or_one_chunked_is_plain() {
        assert!(!ambiguous(&head(&[])));
        assert!(!ambiguous(&head(&[
            ("host", "a"),
            ("content-length", "42")
        ])));
        assert!(!ambiguous(&head(&[("transfer-encoding", " Chunked ")])));
    }

    #[test]
    fn anything_two_parsers_could_read_apart_is_ambiguous() {
        for fields in [
            &[("content-length", "5, 5")][..],
            &[("content-length", "+5")],
            &[("content-length", "")],
            &[("content-length", "5"), ("content-length", "5")],
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            assert!(ambiguous(&head(fields)), "{fields:?}");
        }
    }
}
