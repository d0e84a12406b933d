-- keygate tokens, version 5. The fingerprint of each server-key version the store's tokens
-- are digested under (HMAC-SHA256 of a fixed label under the key, never the key), so that a
-- service started with another key says so at startup instead of refusing every token.
CREATE TABLE {schema}.keygate_server_keys (
    version BIGINT NOT NULL PRIMARY KEY CHECK (version BETWEEN 0 AND 4294967295),
    fingerprint BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
