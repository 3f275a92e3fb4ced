-- The pages of a table and how many of them its visibility map marks all-visible (as its
-- last VACUUM left them): $1 is the table's quoted, qualified name.
SELECT c.relpages, c.relallvisible
  FROM pg_catalog.pg_class c
 WHERE c.oid = $1::text::pg_catalog.regclass
