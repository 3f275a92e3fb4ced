-- The size of table $1 with its indexes and toast, and its estimated rows. A partitioned
-- table's are its partitions' (pg_partition_tree lists no row for a table that is neither
-- partitioned nor a partition: the table stands for itself then).
WITH parts (relid, isleaf) AS (
    SELECT relid::oid, isleaf FROM pg_partition_tree($1::oid::regclass)
    UNION ALL
    SELECT $1::oid, true WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::oid::regclass))
)
SELECT coalesce(sum(pg_total_relation_size(p.relid)), 0)::int8,
       coalesce(sum(greatest(c.reltuples, 0)) FILTER (WHERE p.isleaf), 0)::float8
  FROM parts p
  JOIN pg_class c ON c.oid = p.relid
