//! Who may act on a user's account: the user themself, or a caller whose *current* role in
//! the store is admin (a demoted admin's token no longer is). The one rule for the users API
//! and the identities API of provider connect.

use crate::authn::Identity;
use crate::store::{StoreError, UserId, UserStore};

use super::ADMIN_ROLE;

/// The user a self-issued token speaks for. User tokens carry an email; client_credentials
/// tokens do not, and carry the client id as subject, so a client whose id happens to be
/// numeric must not pass for that user.
pub fn caller_user(caller: &Identity) -> Option<UserId> {
    if caller.email.is_none() || caller.client_id.as_deref() == Some(caller.user_id.as_str()) {
        return None;
    }
    caller.user_id.parse::<i64>().ok().map(UserId)
}

/// Whether the caller's current role in the store is admin.
pub async fn is_admin(users: &dyn UserStore, caller: &Identity) -> Result<bool, StoreError> {
    let Some(me) = caller_user(caller) else {
        return Ok(false);
    };
    Ok(users
        .user_by_id(me)
        .await?
        .is_some_and(|u| u.role == ADMIN_ROLE))
}

/// Whether `caller` may act on the account `target`: it is theirs, or they are an admin.
pub async fn self_or_admin(
    users: &dyn UserStore,
    caller: &Identity,
    target: UserId,
) -> Result<bool, StoreError> {
    if caller_user(caller) == Some(target) {
        return Ok(true);
    }
    is_admin(users, caller).await
}
