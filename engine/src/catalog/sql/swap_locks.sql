-- The relations a swap of table $1 with its standby $2 locks, each once, in the order the
-- swap takes them, and the weakest mode that covers what the swap does to it.
--
-- The order is the one application statements lock them in, so a statement that already
-- holds one of them never waits for the swap on another:
--   1. views (and tandem's mirror views) that read either table, and views built on them,
--      outermost first: reading a view locks the view, then the views and tables it reads;
--      the swap re-creates them (ACCESS EXCLUSIVE);
--   2. tables whose foreign keys reference the table: a child's INSERT locks the child, then
--      the parent for its check; the swap drops and re-adds their keys (ACCESS EXCLUSIVE).
--      With $3 (`children_last`), they come after the pair instead (before 5): a transaction
--      that writes the parent, then the child, locks them in that order, and no one order
--      suits both kinds of transaction (the swap chooses per attempt, swap/mod.rs);
--   3. the views' other tables, read when a view is re-created (ACCESS SHARE);
--   4. the table, then its standby (the dual-write trigger writes to the standby after the
--      application's write to the table), renamed (ACCESS EXCLUSIVE); a partitioned table's
--      partitions after it (a statement on the root locks the root, then the partitions),
--      renamed too;
--   5. tables the table references: its own INSERT locks it, then them; the swap adds the
--      keys to the new table (SHARE ROW EXCLUSIVE).
-- A relation named twice keeps its first place and its strongest mode; the pair is only in 4.
WITH RECURSIVE pair(oid) AS (VALUES ($1::oid), ($2::oid)),
-- Views on views too, each at its greatest depth (1 reads the pair): a reader of an outer
-- view locks it before the views it reads, so the outermost come first.
reader(oid, depth) AS (
    SELECT r.ev_class, 1
      FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid IN (SELECT oid FROM pair) AND r.ev_class NOT IN (SELECT oid FROM pair)
    UNION
    SELECT r.ev_class, reader.depth + 1
      FROM reader
      JOIN pg_depend d ON d.refobjid = reader.oid AND d.classid = 'pg_rewrite'::regclass
                      AND d.refclassid = 'pg_class'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> reader.oid AND reader.depth < 64
),
-- Materialized views are left out: the swap does not touch them (the executor builds them
-- again after it, `shadow::matviews`), and LOCK TABLE does not take them.
views AS (SELECT r.oid, max(r.depth) AS depth FROM reader r
            JOIN pg_class c ON c.oid = r.oid AND c.relkind <> 'm' GROUP BY r.oid),
view_tables AS (
    SELECT DISTINCT d.refobjid AS oid
      FROM views v
      JOIN pg_rewrite r ON r.ev_class = v.oid
      JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
                      AND d.refclassid = 'pg_class'::regclass
      JOIN pg_class c ON c.oid = d.refobjid AND c.relkind IN ('r', 'p', 'v', 'f')
     WHERE d.refobjid <> v.oid AND d.refobjid NOT IN (SELECT oid FROM pair)
       AND d.refobjid NOT IN (SELECT oid FROM views)
),
children AS (
    SELECT DISTINCT conrelid AS oid FROM pg_constraint
     WHERE contype = 'f' AND confrelid IN (SELECT oid FROM pair) AND conrelid NOT IN (SELECT oid FROM pair)
),
parents AS (
    SELECT DISTINCT confrelid AS oid FROM pg_constraint
     WHERE contype = 'f' AND conrelid IN (SELECT oid FROM pair) AND confrelid NOT IN (SELECT oid FROM pair)
),
wanted(rank, oid, strength) AS (
    SELECT 1 - depth / 100.0, oid, 8 FROM views
    UNION ALL SELECT CASE WHEN $3::bool THEN 7.5 ELSE 2 END, oid, 8 FROM children
    -- (a view's reader locks its tables in the view's order; with children_last, a child
    -- the view reads waits for its place after the table)
    UNION ALL SELECT 3, oid, 1 FROM view_tables WHERE NOT ($3::bool AND oid IN (SELECT oid FROM children))
    UNION ALL SELECT 4, $1::oid, 8
    UNION ALL SELECT 5, relid, 8 FROM pg_partition_tree($1::oid::regclass) WHERE relid <> $1::oid
    UNION ALL SELECT 6, $2::oid, 8
    UNION ALL SELECT 7, relid, 8 FROM pg_partition_tree($2::oid::regclass) WHERE relid <> $2::oid
    UNION ALL SELECT 8, oid, 6 FROM parents
)
SELECT w.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
       pg_get_userbyid(c.relowner)::text AS owner, max(w.strength) AS strength
  FROM wanted w
  JOIN pg_class c ON c.oid = w.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 GROUP BY w.oid, n.nspname, c.relname, c.relkind, c.relowner
 ORDER BY min(w.rank), w.oid
