//! PostgreSQL store (placeholder until the implementation lands).
use super::*;
pub struct PostgresStore;
impl PostgresStore {
    pub async fn connect(_url: &str) -> Result<super::SqliteStore, StoreError> {
        Err(StoreError::Unavailable(
            "the PostgreSQL store is not built yet".into(),
        ))
    }
}
