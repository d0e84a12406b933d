-- keygate tokens, version 2. Verification finds a token by the digest of the presented
-- token, under its current or its previous (rotated-out) secret: index both.
CREATE INDEX {prefix}tokens_digest ON {prefix}tokens (digest);
CREATE INDEX {prefix}tokens_previous_digest ON {prefix}tokens (previous_digest)
    WHERE previous_digest IS NOT NULL;
