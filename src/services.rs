//! Builds what the gateway serves besides proxying: the token service, users API,
//! provider connect, forward-auth, and the authenticator the proxy uses. Called once at
//! start by `tollgate serve` (and `demo`, and the integration tests).

use crate::app::Services;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Keys(String),
    #[error("{0}")]
    Other(String),
}

/// Everything `config` asks for, wired together.
pub async fn build(config: &Config) -> Result<Services, ServicesError> {
    let tokens = crate::oauth::mount(config).await.map_err(|e| match e {
        crate::oauth::MountError::Store(e) => ServicesError::Store(e.to_string()),
        crate::oauth::MountError::Keys(e) => ServicesError::Keys(e.to_string()),
    })?;
    Ok(Services {
        endpoints: tokens.endpoints,
        authenticator: tokens.service.bearer.clone(),
        readiness: vec![tokens.readiness],
    })
}
