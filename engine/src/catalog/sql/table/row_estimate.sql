-- The rows of table $1 now, as the planner estimates them: each leaf's rows per page at its
-- last VACUUM or ANALYZE times its pages now. NULL when a leaf has no such figure (never
-- vacuumed nor analyzed, or empty then): only a count knows. A partitioned table's rows are
-- its leaves'.
WITH parts (relid, isleaf) AS (
    SELECT relid::oid, isleaf FROM pg_partition_tree($1::oid::regclass)
    UNION ALL
    SELECT $1::oid, true WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::oid::regclass))
)
SELECT CASE
           WHEN bool_or(c.reltuples < 0 OR c.relpages = 0) THEN NULL
           ELSE sum(c.reltuples / nullif(c.relpages, 0)
                    * (pg_relation_size(c.oid) / current_setting('block_size')::int))::int8
       END
  FROM parts p
  JOIN pg_class c ON c.oid = p.relid
 WHERE p.isleaf
