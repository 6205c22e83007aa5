//! `RouteTable`: host + method + normalised path → route.
//!
//! Rules (explicit and boring, so operators can predict them):
//! 1. A route's `path` matches itself and anything below it on a segment boundary:
//!    `/api/orders` matches `/api/orders` and `/api/orders/7`, never `/api/ordersX`.
//! 2. The longest matching path prefix wins.
//! 3. Among routes with the same prefix: an exact host beats a `*.suffix` host (longer
//!    suffix first), which beats no host; a route listing methods beats one that lists
//!    none; then the earlier route in the file. Exact duplicates are rejected at load, so
//!    there is never an error at request time.
//!
//! Lookup walks the request path's prefixes from the longest down and probes a hash map
//! per prefix, so its cost grows with the number of path segments, not with the number of
//! routes.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use http::Method;

use crate::config::{HostMatch, RouteSpec};

/// Routes indexed by their path prefix, each bucket in priority order.
pub struct RouteTable<R> {
    by_prefix: HashMap<Box<str>, Vec<Arc<R>>, BuildHasherDefault<PrefixHasher>>,
    /// `prefix_lengths[n]`: whether some route's path is `n` bytes long. A prefix of the
    /// request's path of another length cannot be a key of `by_prefix`, and is not
    /// hashed and looked up: most of a path's prefixes (`/api/v1/users/7` for a route
    /// at `/api`) are skipped by a load.
    prefix_lengths: Vec<bool>,
    all: Vec<Arc<R>>,
}

/// FxHash for the prefix map. Its keys come only from the configuration and a lookup
/// never inserts, so a client cannot lengthen a probe sequence by choosing paths;
/// SipHash's flood resistance buys nothing here, and the profile showed it as most of
/// `find`'s cost (one hash per path prefix tried, up to four per request). FxHash takes
/// the prefix a word at a time, where FNV-1a took it byte by byte.
pub type PrefixHasher = rustc_hash::FxHasher;

/// Anything that carries a [`RouteSpec`] can live in a table.
pub trait HasSpec {
    fn spec(&self) -> &RouteSpec;
}

impl HasSpec for RouteSpec {
    fn spec(&self) -> &RouteSpec {
        self
    }
}

/// Why a candidate route was or was not taken, for `tollgate route`.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub normalised_path: String,
    pub considered: Vec<(String, String)>,
    pub chosen: Option<String>,
}

fn host_rank(h: &HostMatch) -> (u8, usize) {
    match h {
        HostMatch::Exact(s) => (2, s.len()),
        HostMatch::Suffix(s) => (1, s.len()),
        HostMatch::Any => (0, 0),
    }
}

impl<R: HasSpec> RouteTable<R> {
    pub fn new(routes: Vec<R>) -> Self {
        let all: Vec<Arc<R>> = routes.into_iter().map(Arc::new).collect();
        let mut by_prefix: HashMap<Box<str>, Vec<Arc<R>>, BuildHasherDefault<PrefixHasher>> =
            HashMap::default();
        for r in &all {
            by_prefix
                .entry(r.spec().path.clone().into_boxed_str())
                .or_default()
                .push(r.clone());
        }
        for bucket in by_prefix.values_mut() {
            bucket.sort_by(|a, b| {
                let (a, b) = (a.spec(), b.spec());
                host_rank(&b.host)
                    .cmp(&host_rank(&a.host))
                    .then(b.methods.is_some().cmp(&a.methods.is_some()))
                    .then(a.index.cmp(&b.index))
            });
        }
        let mut prefix_lengths =
            vec![false; by_prefix.keys().map(|k| k.len() + 1).max().unwrap_or(0)];
        for k in by_prefix.keys() {
            prefix_lengths[k.len()] = true;
        }
        RouteTable {
            by_prefix,
            prefix_lengths,
            all,
        }
    }

    pub fn routes(&self) -> &[Arc<R>] {
        &self.all
    }

    /// The route for a request. `path` must already be normalised; `host` is lower- or
    /// mixed-case without port.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Option<&Arc<R>> {
        let mut end = path.len();
        loop {
            let prefix = if end == 0 { "/" } else { &path[..end] };
            let stored = self.prefix_lengths.get(prefix.len()) == Some(&true);
            if let Some(bucket) = stored.then(|| self.by_prefix.get(prefix)).flatten() {
                if let Some(r) = bucket.iter().find(|r| accepts(r.spec(), host, method)) {
                    return Some(r);
                }
            }
            if end == 0 {
                return None;
            }
            // Next shorter prefix on a segment boundary; a trailing slash is its own step
            // so "/a/" tries "/a/" (never stored) and then "/a". Searched as bytes: `str`'s
            // `rfind` goes through its general searcher and `memrchr`, which cost more than
            // the few bytes of a path segment (BENCHMARKS.md, "Twelfth round").
            end = path.as_bytes()[..end]
                .iter()
                .rposition(|&b| b == b'/')
                .unwrap_or(0);
        }
    }

    /// Like [`find`](Self::find), but records why each candidate was taken or passed over.
    pub fn explain(&self, host: Option<&str>, method: &Method, path: &str) -> Explanation {
        let mut considered = Vec::new();
        let mut chosen = None;
        let mut candidates: Vec<&Arc<R>> = self.all.iter().collect();
        candidates.sort_by_key(|r| std::cmp::Reverse(r.spec().path.len()));
        for r in candidates {
            let s = r.spec();
            let why = if !prefix_matches(&s.path, path) {
                format!("path prefix {} does not match {}", s.path, path)
            } else if !s.host.matches(host) {
                format!(
                    "host {} does not match {}",
                    s.host,
                    host.unwrap_or("(none)")
                )
            } else if !method_ok(s, method) {
                format!("method {method} not in {:?}", s.methods.as_ref().unwrap())
            } else if chosen.is_none() {
                let found = self.find(host, method, path).map(|f| f.spec().name.clone());
                if found.as_deref() == Some(s.name.as_str()) {
                    chosen = found;
                    format!(
                        "CHOSEN: longest matching prefix {} (host {}, methods {})",
                        s.path,
                        s.host,
                        methods_str(s)
                    )
                } else {
                    "matches, but a higher-priority route with the same prefix wins".into()
                }
            } else {
                format!(
                    "matches, but prefix {} is shorter or lower in priority",
                    s.path
                )
            };
            considered.push((s.name.clone(), why));
        }
        Explanation {
            normalised_path: path.to_string(),
            considered,
            chosen,
        }
    }
}

fn methods_str(s: &RouteSpec) -> String {
    match &s.methods {
        None => "any".into(),
        Some(m) => m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
    }
}

fn method_ok(s: &RouteSpec, method: &Method) -> bool {
    match &s.methods {
        None => true,
        // HEAD is served wherever GET is.
        Some(ms) => ms
            .iter()
            .any(|m| m == method || (m == Method::GET && method == Method::HEAD)),
    }
}

fn accepts(s: &RouteSpec, host: Option<&str>, method: &Method) -> bool {
    s.host.matches(host) && method_ok(s, method)
}

/// Segment-boundary prefix test.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table(yaml: &str) -> RouteTable<RouteSpec> {
        let cfg = Config::from_yaml_with_env(yaml, None).expect("valid");
        RouteTable::new(cfg.routes)
    }

    const ROUTES: &str = r#"
routes:
  - { name: root, path: /, upstream: "http://127.0.0.1:1" }
  - { name: api, path: /api, upstream: "http://127.0.0.1:2" }
  - { name: orders, path: /api/orders, upstream: "http://127.0.0.1:3" }
  - { name: orders-get, path: /api/orders, methods: [GET], upstream: "http://127.0.0.1:4" }
  - { name: orders-host, path: /api/orders, host: api.example.com, upstream: "http://127.0.0.1:5" }
  - { name: orders-wild, path: /api/orders, host: "*.example.com", upstream: "http://127.0.0.1:6" }
"#;

    fn name(t: &RouteTable<RouteSpec>, host: Option<&str>, m: Method, p: &str) -> Option<String> {
        t.find(host, &m, p).map(|r| r.name.clone())
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let t = table(ROUTES);
        assert_eq!(
            name(&t, None, Method::POST, "/api/orders/7").as_deref(),
            Some("orders")
        );
        assert_eq!(
            name(&t, None, Method::POST, "/api/ordersX").as_deref(),
            Some("api")
        );
        assert_eq!(name(&t, None, Method::POST, "/api").as_deref(), Some("api"));
        assert_eq!(
            name(&t, None, Method::POST, "/api/").as_deref(),
            Some("api")
        );
        assert_eq!(
            name(&t, None, Method::POST, "/other").as_deref(),
            Some("root")
        );
        assert_eq!(name(&t, None, Method::POST, "/").as_deref(), Some("root"));
    }

    #[test]
    fn ties_are_deterministic() {
        let t = table(ROUTES);
        assert_eq!(
            name(&t, Some("api.example.com"), Method::GET, "/api/orders").as_deref(),
            Some("orders-host")
        );
        assert_eq!(
            name(&t, Some("API.Example.com"), Method::GET, "/api/orders").as_deref(),
            Some("orders-host")
        );
        assert_eq!(
            name(&t, Some("x.example.com"), Method::GET, "/api/orders").as_deref(),
            Some("orders-wild")
        );
        assert_eq!(
            name(&t, Some("example.com"), Method::GET, "/api/orders").as_deref(),
            Some("orders-get")
        );
        assert_eq!(
            name(&t, Some("example.com"), Method::HEAD, "/api/orders").as_deref(),
            Some("orders-get")
        );
        assert_eq!(
            name(&t, None, Method::DELETE, "/api/orders").as_deref(),
            Some("orders")
        );
    }

    #[test]
    fn nothing_matches_without_root() {
        let t = table("routes:\n  - { name: a, path: /a, upstream: \"http://127.0.0.1:1\" }\n");
        assert!(t.find(None, &Method::GET, "/b").is_none());
        assert!(t.find(None, &Method::GET, "/").is_none());
        assert!(t.find(None, &Method::GET, "/ab").is_none());
    }

    #[test]
    fn explain_names_the_winner() {
        let t = table(ROUTES);
        let e = t.explain(None, &Method::GET, "/api/orders/1");
        assert_eq!(e.chosen.as_deref(), Some("orders-get"));
        assert!(e
            .considered
            .iter()
            .any(|(n, why)| n == "orders-host" && why.contains("host")));
    }
}
