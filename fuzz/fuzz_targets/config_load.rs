//! The config loader: any YAML is a validated `Config` or a list of problems, never a
//! panic; a config that validates also builds its route table and identity header set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::from_yaml_with_env(text, None) {
        let _ = tollgate::proxy::route::RouteTable::new(cfg.routes.clone());
        let _ = tollgate::proxy::headers::IdentityHeaderSet::new(cfg.identity.all());
        let _ = cfg.warnings();
    }
});
