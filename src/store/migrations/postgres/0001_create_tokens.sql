-- keygate tokens, version 1. `{schema}` is replaced by the validated, quoted schema name.
-- No column holds a plaintext token. Ids, owners and creators use the "C" collation so
-- that ordering and equality are by bytes, as in the other stores.
CREATE TABLE {schema}.keygate_tokens (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    owner TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'revoked')),
    scopes TEXT[] COLLATE "C" NOT NULL,
    -- NULL: every project; an empty array: no project.
    projects TEXT[] COLLATE "C",
    metadata JSONB NOT NULL,
    digest BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    key_version BIGINT NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),
    previous_digest BYTEA CHECK (previous_digest IS NULL OR octet_length(previous_digest) = 32),
    previous_key_version BIGINT,
    previous_valid_until TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    version BIGINT NOT NULL,
    CHECK ((previous_digest IS NULL) = (previous_key_version IS NULL)
       AND (previous_digest IS NULL) = (previous_valid_until IS NULL))
);

-- Listing order (created_at DESC, id DESC) and keyset pagination.
CREATE INDEX keygate_tokens_created ON {schema}.keygate_tokens (created_at, id);
-- One index per list filter.
CREATE INDEX keygate_tokens_owner ON {schema}.keygate_tokens (owner, created_at, id);
CREATE INDEX keygate_tokens_created_by ON {schema}.keygate_tokens (created_by, created_at, id);
CREATE INDEX keygate_tokens_status ON {schema}.keygate_tokens (status, created_at, id);
CREATE INDEX keygate_tokens_expires ON {schema}.keygate_tokens (expires_at);
CREATE INDEX keygate_tokens_scopes ON {schema}.keygate_tokens USING GIN (scopes);
CREATE INDEX keygate_tokens_projects ON {schema}.keygate_tokens USING GIN (projects);
CREATE INDEX keygate_tokens_all_projects ON {schema}.keygate_tokens (created_at, id) WHERE projects IS NULL;
