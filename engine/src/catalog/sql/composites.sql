-- Stand-alone composite types (CREATE TYPE ... AS (...)); table row types are excluded.
SELECT n.nspname::text AS schema,
       t.typname::text AS name,
       array(SELECT a.attname::text FROM pg_attribute AS a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS attribute_names,
       array(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a
             WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS attribute_types,
       descr.description AS comment
FROM pg_type AS t
JOIN pg_namespace AS n ON n.oid = t.typnamespace
JOIN pg_class AS r ON r.oid = t.typrelid AND r.relkind = 'c'
LEFT JOIN pg_description AS descr
       ON descr.objoid = t.oid AND descr.classoid = 'pg_type'::regclass AND descr.objsubid = 0
WHERE t.typtype = 'c'
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
