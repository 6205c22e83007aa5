//! Message framing (RFC 9112 §6): the one rule that refuses a request whose body length
//! hyper could read one way and an upstream or cache another (request smuggling). It runs
//! before anything else reads the request.

/// A request whose body length two parsers could disagree on (RFC 9112 §6.1, §6.3):
/// `Transfer-Encoding` together with `Content-Length`, more than one `Transfer-Encoding`
/// or `Content-Length` field, a length that is not plain digits, or any coding but a lone
/// `chunked`.
pub fn ambiguous(h: &http::HeaderMap) -> bool {
    // `Content-Length` must be one field of digits only (`5, 5` and `+5` are refused,
    // whatever the HTTP parser made of them).
    let mut cl = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = cl.next() {
        let digits = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
        if !digits || cl.next().is_some() {
            return true;
        }
    }
    let mut te = h.get_all(http::header::TRANSFER_ENCODING).iter();
    match te.next() {
        None => false,
        Some(first) => {
            h.contains_key(http::header::CONTENT_LENGTH)
                || te.next().is_some()
                || !first
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked")
        }
    }
}
