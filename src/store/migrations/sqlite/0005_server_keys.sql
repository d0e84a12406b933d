-- keygate tokens, version 5. The fingerprint of each server-key version the store's tokens
-- are digested under (HMAC-SHA256 of a fixed label under the key, never the key), so that a
-- service started with another key says so at startup instead of refusing every token.
CREATE TABLE {prefix}server_keys (
    version INTEGER NOT NULL PRIMARY KEY CHECK (version BETWEEN 0 AND 4294967295),
    fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
    created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER) * 1000000)
);
