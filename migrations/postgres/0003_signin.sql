-- Sign-in for browser and OpenID Connect clients (GET /oauth/authorize).

-- Space-separated exact redirect URIs; first-party clients skip the consent screen.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN first_party BOOLEAN NOT NULL DEFAULT TRUE;

-- Authorization codes and browser sessions, by SHA-256 hash of the value only. `payload`
-- is the JSON the sign-in module keeps with each (client, redirect_uri, PKCE challenge,
-- nonce, user, auth_time, the refresh families issued); `used_at` marks a redeemed code
-- or an ended session.
CREATE TABLE signin_state (
    kind       TEXT        NOT NULL CHECK (kind IN ('code', 'session')),
    value_hash TEXT        NOT NULL,
    payload    TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (kind, value_hash)
);
CREATE INDEX signin_state_expires ON signin_state (expires_at);
