-- The foreign keys from and to table $1 (not the partitions' clones): outbound, the
-- referencing table, name, definition, validated.
SELECT c.conrelid = $1, n.nspname::text, t.relname::text, c.conname::text,
          pg_get_constraintdef(c.oid), c.convalidated
     FROM pg_constraint c
     JOIN pg_class t ON t.oid = c.conrelid
     JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE c.contype = 'f' AND (c.conrelid = $1 OR c.confrelid = $1) AND c.conparentid = 0
    ORDER BY c.oid
