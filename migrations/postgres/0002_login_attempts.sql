-- Login throttling shared by every replica: one GCRA "theoretical arrival time" per key
-- ("a:<account>" or "i:<ip>"), in microseconds since the Unix epoch.
CREATE TABLE login_attempts (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
