//! `GET /api/v1/users/{id}/identities` and `DELETE /api/v1/users/{id}/identities/{provider}`:
//! the linked provider accounts of a user. The access rule is the users API's: the user
//! themself, or a caller with role `admin`; anyone else gets the same 404 as a user that
//! does not exist, so ids cannot be probed. Provider tokens are never part of the output.

use chrono::{DateTime, Utc};
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use super::error::ConnectError;
use super::{authenticate, bearer, Connect};
use crate::authn::Authenticator;
use crate::http::body::{self, Body};
use crate::store::UserId;

/// One linked account as the API shows it.
#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub provider: String,
    pub provider_user_id: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct IdentityList {
    pub identities: Vec<IdentityView>,
}

impl Connect {
    pub async fn list(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<Response<Body>, ConnectError> {
        let user = self.authorize_user(authn, headers, id).await?;
        let identities = self
            .stores
            .identities
            .identities_of(user)
            .await?
            .into_iter()
            .map(|i| IdentityView {
                provider: i.provider,
                provider_user_id: i.provider_user_id,
                email: i.email,
                created_at: i.created_at,
            })
            .collect();
        Ok(body::json(StatusCode::OK, &IdentityList { identities }))
    }

    pub async fn unlink(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
        id: &str,
        provider: &str,
    ) -> Result<Response<Body>, ConnectError> {
        let user = self.authorize_user(authn, headers, id).await?;
        if !self
            .stores
            .identities
            .unlink_identity(user, provider)
            .await?
        {
            return Err(ConnectError::NotFound);
        }
        crate::audit::event("provider_unlinked", crate::audit::Outcome::Success)
            .user(user)
            .field("provider", provider)
            .emit();
        tracing::info!(user_id = %user, provider, "provider account unlinked");
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    }

    /// The user `id` names, when the caller may see them: the user themself, or a caller
    /// whose current role in the store is admin (a demoted admin's token no longer is).
    async fn authorize_user(
        &self,
        authn: &dyn Authenticator,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<UserId, ConnectError> {
        let caller = authenticate(authn, bearer(headers)).await?;
        let target = id
            .parse::<i64>()
            .map(UserId)
            .map_err(|_| ConnectError::NotFound)?;
        if !crate::users::access::self_or_admin(&*self.stores.users, &caller, target).await? {
            return Err(ConnectError::NotFound);
        }
        // An admin naming an account that does not exist gets the same 404.
        if crate::users::access::caller_user(&caller) != Some(target)
            && self.stores.users.user_by_id(target).await?.is_none()
        {
            return Err(ConnectError::NotFound);
        }
        Ok(target)
    }
}
