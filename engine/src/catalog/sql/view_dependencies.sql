-- The tables, views and materialized views each view reads: the relations its rewrite rule
-- depends on (a view's rule also depends on the view itself, which is left out).
SELECT DISTINCT rw.ev_class AS view,
       dn.nspname::text AS schema,
       dc.relname::text AS name
FROM pg_rewrite AS rw
JOIN pg_class AS v ON v.oid = rw.ev_class
JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                   AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> rw.ev_class
JOIN pg_class AS dc ON dc.oid = d.refobjid
JOIN pg_namespace AS dn ON dn.oid = dc.relnamespace
WHERE v.relkind IN ('v', 'm')
  AND dc.relkind IN ('r', 'p', 'v', 'm', 'f')
