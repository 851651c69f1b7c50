-- gatehouse store schema 3 (SQLite): people who signed in through an OpenID Connect provider
-- (SPEC §7.1). Paired with migrations/postgres/0003_federated_users.sql.

-- One row per federated user name: the provider and subject it belongs to (a name never
-- moves to another identity), and the scope and groups of the latest login, which every
-- session, grant and PAT of the user carries.
CREATE TABLE federated_users (
    name            TEXT    PRIMARY KEY,
    provider        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    max_scope       TEXT    NOT NULL,
    group_names     TEXT    NOT NULL DEFAULT '[]',
    create_time     INTEGER NOT NULL,
    last_login_time INTEGER NOT NULL
);
CREATE INDEX federated_users_identity ON federated_users (provider, subject);

-- The `state` of each finished provider callback (its SHA-256), until its login cookie would
-- have expired: a replayed callback is refused.
CREATE TABLE idp_login_states (
    state_hash  BLOB    PRIMARY KEY,
    expire_time INTEGER NOT NULL
);
CREATE INDEX idp_login_states_expire ON idp_login_states (expire_time);
