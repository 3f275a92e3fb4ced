-- Primary key, unique, foreign key, check and exclusion constraints of every user table.
-- Constraints a partition inherits from its parent (conparentid <> 0) are skipped: they are
-- declared once, on the parent, and a foreign key to a partitioned table has one such clone
-- per partition, all with the same name.
SELECT c.conrelid AS relation,
       c.conname::text AS name,
       c.contype::text AS kind,
       pg_get_constraintdef(c.oid) AS definition,
       c.convalidated AS validated,
       c.condeferrable AS deferrable,
       c.condeferred AS initially_deferred,
       array(SELECT a.attname::text
             FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       fn.nspname::text AS ref_schema,
       fc.relname::text AS ref_table,
       array(SELECT a.attname::text
             FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns,
       c.confupdtype::text AS on_update,
       c.confdeltype::text AS on_delete,
       descr.description AS comment
FROM pg_constraint AS c
JOIN pg_class AS r ON r.oid = c.conrelid
JOIN pg_namespace AS n ON n.oid = r.relnamespace
LEFT JOIN pg_class AS fc ON fc.oid = c.confrelid
LEFT JOIN pg_namespace AS fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = c.oid AND descr.classoid = 'pg_constraint'::regclass AND descr.objsubid = 0
WHERE c.contype IN ('p', 'u', 'f', 'c', 'x')
  AND c.conparentid = 0
  AND r.relkind IN ('r', 'p')
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND r.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
