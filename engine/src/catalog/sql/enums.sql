-- Enum types with their labels in sort order.
SELECT n.nspname::text AS schema,
       t.typname::text AS name,
       array(SELECT e.enumlabel::text FROM pg_enum AS e
             WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels,
       descr.description AS comment
FROM pg_type AS t
JOIN pg_namespace AS n ON n.oid = t.typnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = t.oid AND descr.classoid = 'pg_type'::regclass AND descr.objsubid = 0
WHERE t.typtype = 'e'
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
