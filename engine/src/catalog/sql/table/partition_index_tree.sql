-- The indexes of the tables named in $1 (in that order), each with the index of its parent it
-- is attached to: the table's position, the index's oid and name, the parent index's oid and
-- name (NULL: none).
SELECT t.n::int4, i.indexrelid, ci.relname::text, h.inhparent, pi.relname::text
  FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
  JOIN pg_index i ON i.indrelid = to_regclass(t.name)
  JOIN pg_class ci ON ci.oid = i.indexrelid
  LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid
  LEFT JOIN pg_class pi ON pi.oid = h.inhparent
 ORDER BY t.n, i.indexrelid
