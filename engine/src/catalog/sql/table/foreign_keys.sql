-- The foreign keys from and to table $1 (not the partitions' clones): outbound, the
-- referencing table, name, definition, validated, and when the referencing table is
-- partitioned, its leaf partitions (schemas and names, in oid order).
SELECT c.conrelid = $1, n.nspname::text, t.relname::text, c.conname::text,
       pg_get_constraintdef(c.oid), c.convalidated,
       array(SELECT ln.nspname::text
               FROM pg_partition_tree(t.oid::regclass) p
               JOIN pg_class l ON l.oid = p.relid
               JOIN pg_namespace ln ON ln.oid = l.relnamespace
              WHERE t.relkind = 'p' AND p.isleaf ORDER BY l.oid),
       array(SELECT l.relname::text
               FROM pg_partition_tree(t.oid::regclass) p
               JOIN pg_class l ON l.oid = p.relid
              WHERE t.relkind = 'p' AND p.isleaf ORDER BY l.oid)
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE c.contype = 'f' AND (c.conrelid = $1 OR c.confrelid = $1) AND c.conparentid = 0
 ORDER BY c.oid
