-- Resource indicators (RFC 8707), sender-constrained tokens (RFC 9449 DPoP, RFC 8705
-- mTLS) and dynamic client registration (RFC 7591).

-- Refresh and opaque tokens: the resources they were issued for (space-separated; empty:
-- the gateway's own audience), and the key or certificate they are bound to (the `cnf`
-- claim as JSON; NULL: unbound). A refresh keeps or narrows the resources and keeps the
-- binding.
ALTER TABLE tokens ADD COLUMN audience TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN cnf TEXT;

-- A registered client's registration access token, by SHA-256 hash only.
ALTER TABLE clients ADD COLUMN registration_token_hash TEXT;
