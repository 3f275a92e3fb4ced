-- Columns of every user table, view and materialized view, in attnum order. Joined to
-- tables.sql and views.sql by relation oid; rows of relations not read there are ignored.
SELECT a.attrelid AS relation,
       a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       CASE WHEN a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END AS collation,
       a.attnotnull AS not_null,
       CASE WHEN a.attidentity = '' AND a.attgenerated = ''
            THEN pg_get_expr(ad.adbin, ad.adrelid) END AS "default",
       a.attidentity::text AS identity,
       CASE WHEN a.attgenerated = 's' THEN pg_get_expr(ad.adbin, ad.adrelid) END AS generated,
       descr.description AS comment
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_type AS t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
LEFT JOIN pg_namespace AS cn ON cn.oid = co.collnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = a.attrelid AND descr.classoid = 'pg_class'::regclass AND descr.objsubid = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND c.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
ORDER BY a.attrelid, a.attnum
