-- Indexes of tables and materialized views that do not back a primary key, unique or
-- exclusion constraint (those are part of the constraint). Indexes a partition inherits
-- from an index on its parent are skipped: they are declared once, on the parent.
-- Keys are spelt as `pg_get_indexdef(oid, n, true)` spells them; for a plain column that is
-- `quote_ident(attname)`, which is much cheaper, so the deparser runs only for expressions.
-- INCLUDE columns are always plain columns. (indkey is an int2vector indexed from 0.)
SELECT i.indrelid AS relation,
       ic.relname::text AS name,
       i.indisunique AS "unique",
       am.amname::text AS method,
       array(SELECT CASE WHEN a.attname IS NOT NULL THEN quote_ident(a.attname)
                         ELSE pg_get_indexdef(i.indexrelid, k.n::int4, true) END
             FROM unnest(i.indkey[:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, n)
             LEFT JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS keys,
       array(SELECT quote_ident(a.attname)
             FROM unnest(i.indkey[i.indnkeyatts:]) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n) AS include,
       pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_get_indexdef(i.indexrelid) AS definition,
       i.indisvalid AS valid,
       descr.description AS comment
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_am AS am ON am.oid = ic.relam
JOIN pg_class AS r ON r.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = r.relnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = i.indexrelid AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = 0
WHERE r.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND r.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
  AND NOT EXISTS (SELECT FROM pg_constraint AS c
                  WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT FROM pg_inherits AS inh WHERE inh.inhrelid = i.indexrelid)
