-- The indexes of partitions $1 (oids), each with the name of the index of its parent it is
-- attached to (NULL: the partition's own index), in each partition's index order.
SELECT i.indrelid, ci.relname::text, pi.relname::text
  FROM pg_index i
  JOIN pg_class ci ON ci.oid = i.indexrelid
  LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid
  LEFT JOIN pg_class pi ON pi.oid = h.inhparent
 WHERE i.indrelid = ANY ($1::oid[])
 ORDER BY i.indrelid, i.indexrelid
