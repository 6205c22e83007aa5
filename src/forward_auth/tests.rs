use std::sync::Arc;
use std::time::Duration;

use super::reuse_for;
use crate::authn::Identity;

fn id(expires_at: Option<u64>) -> Identity {
    Identity {
        user_id: "157".into(),
        expires_at,
        ..Identity::default()
    }
}

const TTL: Duration = Duration::from_secs(5);

#[test]
fn an_allow_is_reused_for_the_ttl_when_the_token_lives_longer() {
    assert_eq!(reuse_for(Some(&id(Some(1_000 + 3600))), TTL, 1_000), 5);
}

#[test]
fn never_beyond_the_tokens_remaining_life() {
    assert_eq!(reuse_for(Some(&id(Some(1_002))), TTL, 1_000), 2);
    assert_eq!(reuse_for(Some(&id(Some(900))), TTL, 1_000), 0);
}

#[test]
fn unknown_expiry_is_not_reused() {
    assert_eq!(reuse_for(Some(&id(None)), TTL, 1_000), 0);
}

#[test]
fn anonymous_allow_depends_on_no_token() {
    assert_eq!(reuse_for(None, TTL, 1_000), 5);
    assert_eq!(reuse_for(None, Duration::ZERO, 1_000), 0);
}

#[test]
fn a_signed_identity_jwt_caps_the_reuse() {
    let mut with_jwt = id(Some(1_000 + 86_400));
    with_jwt.signed_jwt = Some(Arc::from("x.y.z"));
    assert_eq!(
        reuse_for(Some(&with_jwt), Duration::from_secs(3600), 1_000),
        60
    );
}

#[test]
fn a_sender_constrained_allow_is_never_reused() {
    let mut bound = id(Some(1_000 + 3600));
    bound.cnf = Some(crate::authn::Confirmation::Jkt("k".into()));
    assert_eq!(reuse_for(Some(&bound), TTL, 1_000), 0);
}
