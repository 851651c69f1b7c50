-- gatehouse store schema 2 (PostgreSQL): the login and client-authentication throttles'
-- failures, shared by every replica (SPEC §3.2). Paired with
-- migrations/sqlite/0002_shared_throttles.sql. `key` is the throttle's fixed-size key (a kind
-- byte, then a SHA-256 digest of a user name or client id and/or a client address), never
-- the name itself. Times are Unix microseconds; a row whose `expires` has passed counts
-- nothing and is deleted by the next sweep.

CREATE TABLE throttle_failures (
    key           BYTEA   PRIMARY KEY,
    failures      INTEGER NOT NULL,
    first_failure BIGINT  NOT NULL,
    blocked_until BIGINT  NOT NULL,
    expires       BIGINT  NOT NULL
);
CREATE INDEX throttle_failures_expires ON throttle_failures (expires);
