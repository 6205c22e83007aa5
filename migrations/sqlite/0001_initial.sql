-- Timestamps are INTEGER microseconds since the Unix epoch (UTC): compact, sortable,
-- and the same precision as PostgreSQL's timestamptz.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT,
    email         TEXT    NOT NULL,
    -- Lower-cased email: the unique key, so `A@x.io` and `a@x.io` are one account.
    email_key     TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email_key);
CREATE UNIQUE INDEX users_username_key ON users (username);

CREATE TABLE clients (
    id          TEXT    PRIMARY KEY,
    -- NULL for a public client.
    secret_hash TEXT,
    -- Space-separated lists.
    grants      TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Refresh tokens and opaque access tokens, by SHA-256 hash only.
CREATE TABLE tokens (
    kind       TEXT    NOT NULL CHECK (kind IN ('refresh', 'opaque_access')),
    token_hash TEXT    NOT NULL,
    family_id  TEXT    NOT NULL,
    user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT,
    scope      TEXT    NOT NULL,
    alias      TEXT,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER,
    revoked_at INTEGER,
    PRIMARY KEY (kind, token_hash)
);
CREATE INDEX tokens_family ON tokens (family_id);
CREATE INDEX tokens_expires ON tokens (expires_at);

-- Revoked JWT ids, kept until the token would have expired anyway.
CREATE TABLE revoked_jtis (
    jti        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

CREATE TABLE identities (
    provider         TEXT    NOT NULL,
    provider_user_id TEXT    NOT NULL,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email            TEXT,
    tokens_encrypted BLOB    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (provider, provider_user_id)
);
CREATE UNIQUE INDEX identities_user_provider ON identities (user_id, provider);

CREATE TABLE connect_states (
    state_hash    TEXT    PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      TEXT    NOT NULL,
    redirect_uri  TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX connect_states_expires ON connect_states (expires_at);
