-- keygate tokens, version 2. Verification finds a token by the digest of the presented
-- token, under its current or its previous (rotated-out) secret: index both.
CREATE INDEX keygate_tokens_digest ON {schema}.keygate_tokens (digest);
CREATE INDEX keygate_tokens_previous_digest ON {schema}.keygate_tokens (previous_digest)
    WHERE previous_digest IS NOT NULL;
