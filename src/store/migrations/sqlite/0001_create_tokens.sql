-- keygate tokens, version 1. `{prefix}` is replaced by the validated table prefix.
-- Timestamps are microseconds since the Unix epoch (UTC). No column holds a plaintext token.
CREATE TABLE {prefix}tokens (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    all_projects INTEGER NOT NULL CHECK (all_projects IN (0, 1)),
    metadata TEXT NOT NULL,
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    key_version INTEGER NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),
    previous_digest BLOB CHECK (previous_digest IS NULL OR length(previous_digest) = 32),
    previous_key_version INTEGER,
    previous_valid_until INTEGER,
    last_used_at INTEGER,
    version INTEGER NOT NULL,
    CHECK ((previous_digest IS NULL) = (previous_key_version IS NULL)
       AND (previous_digest IS NULL) = (previous_valid_until IS NULL))
);

-- created_at repeats the token's, so that a listing by scope walks this table's index in
-- listing order and stops at the page limit.
CREATE TABLE {prefix}token_scopes (
    token_id TEXT NOT NULL REFERENCES {prefix}tokens (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, scope)
) WITHOUT ROWID;

CREATE TABLE {prefix}token_projects (
    token_id TEXT NOT NULL REFERENCES {prefix}tokens (id) ON DELETE CASCADE,
    project TEXT NOT NULL,
    PRIMARY KEY (token_id, project)
) WITHOUT ROWID;

-- Listing order (created_at DESC, id DESC) and keyset pagination.
CREATE INDEX {prefix}tokens_created ON {prefix}tokens (created_at, id);
-- One index per list filter.
CREATE INDEX {prefix}tokens_owner ON {prefix}tokens (owner, created_at, id);
CREATE INDEX {prefix}tokens_created_by ON {prefix}tokens (created_by, created_at, id);
CREATE INDEX {prefix}tokens_status ON {prefix}tokens (status, created_at, id);
CREATE INDEX {prefix}tokens_expires ON {prefix}tokens (expires_at);
CREATE INDEX {prefix}tokens_all_projects ON {prefix}tokens (created_at, id) WHERE all_projects = 1;
CREATE INDEX {prefix}token_scopes_scope ON {prefix}token_scopes (scope, created_at, token_id);
CREATE INDEX {prefix}token_projects_project ON {prefix}token_projects (project, token_id);
