-- Functions and procedures (aggregates and window functions are skipped), trigger functions
-- included; members of extensions excluded.
SELECT n.nspname::text AS schema,
       p.proname::text AS name,
       pg_get_function_identity_arguments(p.oid) AS identity_args,
       CASE WHEN p.prokind = 'f' THEN pg_get_function_result(p.oid) END AS result,
       l.lanname::text AS language,
       pg_get_functiondef(p.oid) AS definition,
       descr.description AS comment
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
LEFT JOIN pg_description AS descr
       ON descr.objoid = p.oid AND descr.classoid = 'pg_proc'::regclass AND descr.objsubid = 0
WHERE p.prokind IN ('f', 'p')
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
