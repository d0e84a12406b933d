-- keygate tokens, version 4. `name_contains` (a case-insensitive substring of the name, ASCII
-- folding) is served by a trigram GIN index on the folded name, from the `pg_trgm` extension.
--
-- The extension is created if it is missing and the role may create it (it ships with
-- PostgreSQL's contrib; creating it needs the CREATE privilege on the database, or a
-- superuser on servers before PostgreSQL 13). If it cannot be created, the migration still
-- succeeds, raises a WARNING saying so (logged by the client), and the filter stays
-- unindexed: a listing by name then walks the listing order and checks each row. Create
-- the extension as a privileged role (`CREATE EXTENSION pg_trgm;`) and run a later
-- migration, or create the index below by hand, to index it afterwards.
DO $keygate$
BEGIN
    -- One creator at a time across schemas migrating concurrently.
    PERFORM pg_advisory_xact_lock(hashtext('keygate.extension.pg_trgm'));
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'keygate: the pg_trgm extension is not available (%); the name filter of token listings stays unindexed', SQLERRM;
    END;
END
$keygate$;

DO $keygate$
DECLARE
    ext_schema text;
BEGIN
    SELECT n.nspname INTO ext_schema
        FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX keygate_tokens_name_trgm ON {schema}.keygate_tokens USING gin '
            '((translate(name, ''ABCDEFGHIJKLMNOPQRSTUVWXYZ'', ''abcdefghijklmnopqrstuvwxyz'')) %I.gin_trgm_ops)',
            ext_schema);
    END IF;
END
$keygate$;
