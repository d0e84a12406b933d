-- keygate tokens, version 3. A token keeps the chain of secrets its rotations replaced,
-- newest first, as three arrays of equal length (element i of each describes one retired
-- secret), the digests GIN-indexed so that verification finds a token by any of them; and
-- the instant its current secret was issued (`secret_issued_at`).
--
-- A token rotated before this version keeps its previous secret as element 1 and gets
-- `secret_issued_at = created_at`: the instant of its last rotation was not recorded, and
-- counting the lifetime cap from creation is the conservative choice (never a longer
-- lifetime than the policy allows).
ALTER TABLE {schema}.keygate_tokens
    ADD COLUMN secret_issued_at TIMESTAMPTZ,
    ADD COLUMN retired_digests BYTEA[] NOT NULL DEFAULT '{}',
    ADD COLUMN retired_key_versions BIGINT[] NOT NULL DEFAULT '{}',
    ADD COLUMN retired_valid_until TIMESTAMPTZ[] NOT NULL DEFAULT '{}';

UPDATE {schema}.keygate_tokens SET
    secret_issued_at = created_at,
    retired_digests = CASE WHEN previous_digest IS NULL THEN '{}' ELSE ARRAY[previous_digest] END,
    retired_key_versions =
        CASE WHEN previous_digest IS NULL THEN '{}' ELSE ARRAY[previous_key_version] END,
    retired_valid_until =
        CASE WHEN previous_digest IS NULL THEN '{}' ELSE ARRAY[previous_valid_until] END;

ALTER TABLE {schema}.keygate_tokens
    ALTER COLUMN secret_issued_at SET NOT NULL,
    ALTER COLUMN retired_digests DROP DEFAULT,
    ALTER COLUMN retired_key_versions DROP DEFAULT,
    ALTER COLUMN retired_valid_until DROP DEFAULT,
    ADD CONSTRAINT keygate_tokens_retired_lengths CHECK (
        cardinality(retired_digests) = cardinality(retired_key_versions)
        AND cardinality(retired_digests) = cardinality(retired_valid_until));

-- Migration 2's index goes first; dropping the columns also drops the CHECK that named them.
DROP INDEX {schema}.keygate_tokens_previous_digest;
ALTER TABLE {schema}.keygate_tokens
    DROP COLUMN previous_digest,
    DROP COLUMN previous_key_version,
    DROP COLUMN previous_valid_until;

CREATE INDEX keygate_tokens_retired_digests ON {schema}.keygate_tokens USING GIN (retired_digests);
