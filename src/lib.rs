//! Tollgate: a reverse-proxy authentication gateway.
//!
//! The request path reads top to bottom in `proxy/`: route match → authenticate →
//! authorize → mutate headers → forward. The token service (`oauth/`, `keys/`), the users
//! API (`users/`) and provider linking (`connect/`) sit beside it and share the `store/`.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod authn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod crypto;
pub mod endpoint;
pub mod ext_authz;
pub mod forward_auth;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod proxy;
pub mod revocation;
pub mod server;
pub mod signin;
pub mod store;
pub mod telemetry;
pub mod users;
