-- RFC 8705 §2: clients that authenticate with a TLS client certificate instead of a
-- secret. `tls_auth_method` is `tls_client_auth` (a certificate from tls.client_ca with
-- the subject DN in `tls_auth_value`) or `self_signed_tls_client_auth` (the certificate
-- whose SHA-256 thumbprint, base64url, is `tls_auth_value`); NULL for every other client.
ALTER TABLE clients ADD COLUMN tls_auth_method TEXT;
ALTER TABLE clients ADD COLUMN tls_auth_value TEXT;
