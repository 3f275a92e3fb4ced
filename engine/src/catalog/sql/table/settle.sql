-- Whether the log method's copy of table $1 vacuums its pages as it goes
-- (`backfill::Settle`): its heap (its leaves' for a partitioned table) is larger than the
-- server's shared buffers, so the shadow's pages are written out before the later passes
-- read them. A smaller shadow stays in the buffers, where setting its hint bits later costs
-- no write of its own.
WITH parts (relid, isleaf) AS (
    SELECT relid::oid, isleaf FROM pg_partition_tree($1::oid::regclass)
    UNION ALL
    SELECT $1::oid, true WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::oid::regclass))
)
SELECT coalesce(sum(pg_relation_size(p.relid)) FILTER (WHERE p.isleaf), 0)
         > pg_size_bytes(current_setting('shared_buffers'))
  FROM parts p
