-- Sequences, except those that implement identity columns (they belong to the column).
SELECT n.nspname::text AS schema,
       c.relname::text AS name,
       format_type(s.seqtypid, NULL) AS data_type,
       s.seqstart AS start,
       s.seqincrement AS increment,
       s.seqmin AS min_value,
       s.seqmax AS max_value,
       s.seqcache AS cache,
       s.seqcycle AS cycle,
       own.schema AS owner_schema,
       own.table AS owner_table,
       own.column AS owner_column,
       descr.description AS comment
FROM pg_sequence AS s
JOIN pg_class AS c ON c.oid = s.seqrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT tn.nspname::text AS schema, tc.relname::text AS table, a.attname::text AS column
    FROM pg_depend AS d
    JOIN pg_class AS tc ON tc.oid = d.refobjid
    JOIN pg_namespace AS tn ON tn.oid = tc.relnamespace
    JOIN pg_attribute AS a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype = 'a'
    LIMIT 1
) AS own ON true
LEFT JOIN pg_description AS descr
       ON descr.objoid = c.oid AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = 0
WHERE c.relkind = 'S'
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype IN ('e', 'i'))
