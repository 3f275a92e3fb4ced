-- Ordinary and partitioned tables (temporary ones skipped), with their partitioning,
-- row-level security, replica identity, storage options, comment and size figures.
-- When a table was never analysed (reltuples < 0) its row count is estimated the way the
-- planner does: heap pages times how many rows of the declared width fit on a page. A
-- partitioned table's figures are its whole tree's (its leaves' rows, every partition's bytes).
SELECT c.oid AS oid,
       n.nspname::text AS schema,
       c.relname::text AS name,
       c.relpersistence::text AS persistence,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       pn.nspname::text AS parent_schema,
       pc.relname::text AS parent_name,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS partition_bound,
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       c.relreplident::text AS replica_identity,
       (SELECT ic.relname::text FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND i.indisreplident) AS replica_index,
       coalesce(c.reloptions, '{}') AS options,
       descr.description AS comment,
       CASE
           WHEN c.relkind = 'p' THEN
               (SELECT coalesce(sum(round(greatest(l.reltuples, 0))), 0)::int8
                  FROM pg_partition_tree(c.oid::regclass) AS t JOIN pg_class AS l ON l.oid = t.relid
                 WHERE t.isleaf)
           WHEN c.reltuples >= 0 THEN round(c.reltuples)::int8
           ELSE (pg_relation_size(c.oid) / current_setting('block_size')::int8)
                * ((current_setting('block_size')::int8 - 24)
                   / (SELECT 28 + coalesce(sum(CASE WHEN a.attlen > 0 THEN a.attlen ELSE 32 END), 0)
                      FROM pg_attribute AS a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
       END AS estimated_rows,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)::int8
                    FROM pg_partition_tree(c.oid::regclass) AS t)
            ELSE pg_total_relation_size(c.oid) END AS total_bytes,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_relation_size(t.relid)), 0)::int8
                    FROM pg_partition_tree(c.oid::regclass) AS t)
            ELSE pg_relation_size(c.oid) END AS heap_bytes
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits AS inh ON c.relispartition AND inh.inhrelid = c.oid
LEFT JOIN pg_class AS pc ON pc.oid = inh.inhparent
LEFT JOIN pg_namespace AS pn ON pn.oid = pc.relnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = c.oid AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = 0
WHERE c.relkind IN ('r', 'p')
  AND c.relpersistence IN ('p', 'u')
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND c.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
