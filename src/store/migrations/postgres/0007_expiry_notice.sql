-- keygate tokens, version 7: the last expiry notice sent for a token, as its window in
-- seconds and the expiry instant it was about; both NULL until a notice is sent, which is
-- what every token written before this version has.
ALTER TABLE {schema}.keygate_tokens
    ADD COLUMN expiry_notice_window BIGINT CHECK (expiry_notice_window >= 0),
    ADD COLUMN expiry_notice_expires_at TIMESTAMPTZ,
    ADD CONSTRAINT keygate_tokens_expiry_notice_whole
        CHECK ((expiry_notice_window IS NULL) = (expiry_notice_expires_at IS NULL));
