-- User schemas, `public` included; system, tandem's own and extension-created schemas excluded.
SELECT n.nspname::text AS name,
       descr.description AS comment
FROM pg_namespace AS n
LEFT JOIN pg_description AS descr
       ON descr.objoid = n.oid AND descr.classoid = 'pg_namespace'::regclass AND descr.objsubid = 0
WHERE n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
ORDER BY 1
