-- The indexes of table $1 in oid order: oid, name, definition, and the constraint they
-- back (name, kind, deferrable, deferred).
SELECT i.indexrelid, x.relname::text, pg_get_indexdef(i.indexrelid),
          k.conname::text, k.contype::text, k.condeferrable, k.condeferred
     FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
     LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
    WHERE i.indrelid = $1 ORDER BY i.indexrelid
