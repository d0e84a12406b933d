-- keygate tokens, version 4 (the PostgreSQL store's trigram index of names). SQLite
-- evaluates `name_contains` on the rows the listing order selects; nothing changes here.
SELECT 1;
