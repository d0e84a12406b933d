-- keygate tokens, version 3. A token keeps the chain of secrets its rotations replaced
-- (newest first, position 0), each found by its digest, in a child table; and the instant
-- its current secret was issued (`secret_issued_at`).
--
-- SQLite cannot drop the `previous_*` columns in place (a table CHECK names them), so the
-- tokens table is rebuilt as https://sqlite.org/lang_altertable.html#otheralter describes:
-- `migrate()` runs this script with foreign keys off, in its transaction, and checks the
-- child tables' foreign keys before it commits. The child tables keep their rows: they
-- refer to the tokens table by name, which the rebuilt table takes over.
--
-- A token rotated before this version gets `secret_issued_at = created_at`: the instant of
-- its last rotation was not recorded, and counting the lifetime cap from creation is the
-- conservative choice (never a longer lifetime than the policy allows).
CREATE TABLE {prefix}tokens_v3 (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    secret_issued_at INTEGER NOT NULL,
    expires_at INTEGER,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    all_projects INTEGER NOT NULL CHECK (all_projects IN (0, 1)),
    metadata TEXT NOT NULL,
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    key_version INTEGER NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),
    last_used_at INTEGER,
    version INTEGER NOT NULL
);

INSERT INTO {prefix}tokens_v3 (id, name, description, owner, created_by, created_at,
    updated_at, secret_issued_at, expires_at, status, all_projects, metadata, digest,
    key_version, last_used_at, version)
SELECT id, name, description, owner, created_by, created_at, updated_at, created_at,
    expires_at, status, all_projects, metadata, digest, key_version, last_used_at, version
FROM {prefix}tokens;

-- Position 0 is the newest retired secret. valid_until: microseconds since the Unix epoch.
CREATE TABLE {prefix}token_retired_secrets (
    token_id TEXT NOT NULL REFERENCES {prefix}tokens (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position >= 0),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    key_version INTEGER NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),
    valid_until INTEGER NOT NULL,
    PRIMARY KEY (token_id, position)
) WITHOUT ROWID;

INSERT INTO {prefix}token_retired_secrets (token_id, position, digest, key_version, valid_until)
SELECT id, 0, previous_digest, previous_key_version, previous_valid_until
FROM {prefix}tokens
WHERE previous_digest IS NOT NULL;

-- Drops the old table's indexes with it (migration 2's partial index on previous_digest
-- included); they are created again below on the rebuilt table.
DROP TABLE {prefix}tokens;
ALTER TABLE {prefix}tokens_v3 RENAME TO {prefix}tokens;

-- Listing order (created_at DESC, id DESC) and keyset pagination.
CREATE INDEX {prefix}tokens_created ON {prefix}tokens (created_at, id);
-- One index per list filter.
CREATE INDEX {prefix}tokens_owner ON {prefix}tokens (owner, created_at, id);
CREATE INDEX {prefix}tokens_created_by ON {prefix}tokens (created_by, created_at, id);
CREATE INDEX {prefix}tokens_status ON {prefix}tokens (status, created_at, id);
CREATE INDEX {prefix}tokens_expires ON {prefix}tokens (expires_at);
CREATE INDEX {prefix}tokens_all_projects ON {prefix}tokens (created_at, id) WHERE all_projects = 1;
-- Verification finds a token by the digest of the presented token: the current one, or any
-- retired one.
CREATE INDEX {prefix}tokens_digest ON {prefix}tokens (digest);
CREATE INDEX {prefix}token_retired_secrets_digest ON {prefix}token_retired_secrets (digest);
