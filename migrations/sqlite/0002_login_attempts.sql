-- Login throttling counters (used with PostgreSQL for several replicas; kept here so both
-- stores share one schema): one GCRA "theoretical arrival time" per key, in microseconds.
CREATE TABLE login_attempts (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
);
