-- keygate tokens, version 6: per-token IP allowlists. A JSON array of CIDR ranges
-- (`["10.0.0.0/8", "2001:db8::/32"]`), stored normalised by the manager; `[]` allows any
-- client, which is what every token written before this version does.
ALTER TABLE {prefix}tokens ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
