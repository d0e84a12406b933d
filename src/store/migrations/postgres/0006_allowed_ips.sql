-- keygate tokens, version 6: per-token IP allowlists. An array of CIDR ranges in their
-- text form (`{10.0.0.0/8,2001:db8::/32}`), stored normalised by the manager; an empty
-- array allows any client, which is what every token written before this version does.
ALTER TABLE {schema}.keygate_tokens ADD COLUMN allowed_ips TEXT[] NOT NULL DEFAULT '{}';
