-- Domains: base type, collation (only when it differs from the base type's), NOT NULL, default.
SELECT t.oid AS oid,
       n.nspname::text AS schema,
       t.typname::text AS name,
       format_type(t.typbasetype, t.typtypmod) AS base_type,
       CASE WHEN t.typcollation <> bt.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       t.typnotnull AS not_null,
       pg_get_expr(t.typdefaultbin, 0) AS "default",
       descr.description AS comment
FROM pg_type AS t
JOIN pg_namespace AS n ON n.oid = t.typnamespace
JOIN pg_type AS bt ON bt.oid = t.typbasetype
LEFT JOIN pg_collation AS co ON co.oid = t.typcollation
LEFT JOIN pg_namespace AS cn ON cn.oid = co.collnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = t.oid AND descr.classoid = 'pg_type'::regclass AND descr.objsubid = 0
WHERE t.typtype = 'd'
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND NOT EXISTS (SELECT FROM pg_depend AS d
                  WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
