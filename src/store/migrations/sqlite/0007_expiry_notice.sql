-- keygate tokens, version 7: the last expiry notice sent for a token, as its window in
-- seconds and the expiry instant (microseconds since the epoch) it was about; both NULL
-- until a notice is sent, which is what every token written before this version has.
ALTER TABLE {prefix}tokens ADD COLUMN expiry_notice_window INTEGER;
ALTER TABLE {prefix}tokens ADD COLUMN expiry_notice_expires_at INTEGER;
