-- The partitions of partitioned table $1, every level, parents before their children: oid,
-- schema, name, the parent's oid, the bound, the partition key when itself partitioned,
-- storage options, relkind.
WITH RECURSIVE tree (oid, parent, depth) AS (
    SELECT inhrelid, inhparent, 1 FROM pg_inherits WHERE inhparent = $1::oid
    UNION ALL
    SELECT i.inhrelid, i.inhparent, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid
)
SELECT c.oid, n.nspname::text, c.relname::text, t.parent, pg_get_expr(c.relpartbound, c.oid),
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       coalesce(c.reloptions, '{}'), c.relkind::text
  FROM tree t
  JOIN pg_class c ON c.oid = t.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 ORDER BY t.depth, c.oid
