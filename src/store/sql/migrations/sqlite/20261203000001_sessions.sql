-- sessionkit: sessions and the connections registered under them.
--
-- One row per session holds everything a request needs (its record, its
-- data as a JSON object of JSON values, and its token slots), so a load is
-- one indexed read and every per-session change is one row written with a
-- compare-and-set on `version`. Only token digests are stored.
-- Times are milliseconds since the Unix epoch, given by the application.
CREATE TABLE sessionkit_sessions (
    id                TEXT    PRIMARY KEY,
    user_id           TEXT,
    user_json         TEXT,
    label             TEXT,
    data              TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    idle_timeout      INTEGER NOT NULL,
    absolute_deadline INTEGER,
    -- The earlier of the idle and absolute deadlines: live while now < it.
    expires_at        INTEGER NOT NULL,
    ttg               INTEGER NOT NULL,
    rotated_at        INTEGER,
    renew_token       INTEGER NOT NULL,
    current_hash      TEXT    NOT NULL,
    adopted           INTEGER NOT NULL,
    resend_until      INTEGER NOT NULL,
    previous_hash     TEXT,
    grace_until       INTEGER,
    sealed            TEXT,
    version           INTEGER NOT NULL
);

CREATE UNIQUE INDEX sessionkit_sessions_current_hash ON sessionkit_sessions (current_hash);
-- Partial: most sessions have no previous token, and an index full of NULLs
-- would make planners think a lookup by it matches every row.
CREATE UNIQUE INDEX sessionkit_sessions_previous_hash ON sessionkit_sessions (previous_hash)
    WHERE previous_hash IS NOT NULL;
-- A user's sessions, walked in id order in bounded chunks.
CREATE INDEX sessionkit_sessions_user ON sessionkit_sessions (user_id, id)
    WHERE user_id IS NOT NULL;
CREATE INDEX sessionkit_sessions_expires_at ON sessionkit_sessions (expires_at);

CREATE TABLE sessionkit_connections (
    session_id  TEXT   NOT NULL REFERENCES sessionkit_sessions (id) ON DELETE CASCADE,
    id          TEXT   NOT NULL,
    node        TEXT   NOT NULL,
    opened_at   INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (session_id, id)
);

CREATE INDEX sessionkit_connections_lease_until ON sessionkit_connections (lease_until);
