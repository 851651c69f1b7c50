-- gatehouse store schema 1 (PostgreSQL). Paired with migrations/sqlite/0001_init.sql.
-- Times are Unix microseconds (UTC); secrets are SHA-256 digests (32-byte BYTEAs);
-- lists and label maps are JSON text.

CREATE TABLE apps (
    id                         TEXT    PRIMARY KEY,
    client_id                  TEXT    NOT NULL UNIQUE,
    display_name               TEXT    NOT NULL,
    description                TEXT    NOT NULL DEFAULT '',
    logo_uri                   TEXT    NOT NULL DEFAULT '',
    allowed_callback_urls      TEXT    NOT NULL DEFAULT '[]',
    allowed_logout_urls        TEXT    NOT NULL DEFAULT '[]',
    allowed_web_origins        TEXT    NOT NULL DEFAULT '[]',
    client_type                TEXT    NOT NULL CHECK (client_type IN ('confidential', 'public')),
    secret_hash                BYTEA,
    previous_secret_hash       BYTEA,
    previous_secret_expires_at BIGINT,
    scopes                     TEXT    NOT NULL DEFAULT '[]',
    skip_consent               BOOLEAN NOT NULL DEFAULT FALSE,
    active                     BOOLEAN NOT NULL DEFAULT TRUE,
    labels                     TEXT    NOT NULL DEFAULT '{}',
    created_by                 TEXT    NOT NULL,
    updated_by                 TEXT    NOT NULL,
    create_time                BIGINT  NOT NULL,
    update_time                BIGINT  NOT NULL,
    managed_by                 TEXT    NOT NULL CHECK (managed_by IN ('api', 'config'))
);
CREATE INDEX apps_list ON apps (create_time, id);

CREATE TABLE personal_tokens (
    id             TEXT    PRIMARY KEY,
    user_name      TEXT    NOT NULL,
    display_name   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    token_hash     BYTEA   NOT NULL UNIQUE,
    create_time    BIGINT  NOT NULL,
    expire_time    BIGINT  NOT NULL,
    last_used_time BIGINT
);
CREATE INDEX personal_tokens_user ON personal_tokens (user_name, create_time);
CREATE INDEX personal_tokens_expire ON personal_tokens (expire_time);

CREATE TABLE sessions (
    id_hash     BYTEA   PRIMARY KEY,
    user_name   TEXT    NOT NULL,
    create_time BIGINT  NOT NULL,
    expire_time BIGINT  NOT NULL
);
CREATE INDEX sessions_expire ON sessions (expire_time);

CREATE TABLE consents (
    id                    TEXT    PRIMARY KEY,
    csrf_hash             BYTEA   NOT NULL,
    user_name             TEXT    NOT NULL,
    client_id             TEXT    NOT NULL REFERENCES apps (client_id) ON DELETE CASCADE,
    redirect_uri          TEXT    NOT NULL,
    scope                 TEXT    NOT NULL,
    state                 TEXT,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    create_time           BIGINT  NOT NULL,
    expire_time           BIGINT  NOT NULL
);
CREATE INDEX consents_client ON consents (client_id);
CREATE INDEX consents_expire ON consents (expire_time);

CREATE TABLE grants (
    id          TEXT    PRIMARY KEY,
    user_name   TEXT    NOT NULL,
    client_id   TEXT    NOT NULL REFERENCES apps (client_id) ON DELETE CASCADE,
    scope       TEXT    NOT NULL,
    create_time BIGINT  NOT NULL,
    expire_time BIGINT  NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_expire ON grants (expire_time);

CREATE TABLE auth_codes (
    hash                  BYTEA   PRIMARY KEY,
    client_id             TEXT    NOT NULL REFERENCES apps (client_id) ON DELETE CASCADE,
    user_name             TEXT    NOT NULL,
    redirect_uri          TEXT    NOT NULL,
    scope                 TEXT    NOT NULL,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    create_time           BIGINT  NOT NULL,
    expire_time           BIGINT  NOT NULL,
    used_at               BIGINT,
    grant_id              TEXT
);
CREATE INDEX auth_codes_client ON auth_codes (client_id);
CREATE INDEX auth_codes_expire ON auth_codes (expire_time);

CREATE TABLE refresh_tokens (
    hash               BYTEA   PRIMARY KEY,
    grant_id           TEXT    NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    generation         BIGINT  NOT NULL,
    parent_hash        BYTEA,
    create_time        BIGINT  NOT NULL,
    expire_time        BIGINT  NOT NULL,
    rotated_at         BIGINT,
    successor_hash     BYTEA,
    revoked_at         BIGINT,
    access_jti         TEXT,
    access_expire_time BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expire ON refresh_tokens (expire_time);

CREATE TABLE token_revocations (
    jti         TEXT    PRIMARY KEY,
    grant_id    TEXT,
    expire_time BIGINT  NOT NULL,
    revoked_at  BIGINT  NOT NULL
);
CREATE INDEX token_revocations_expire ON token_revocations (expire_time);
