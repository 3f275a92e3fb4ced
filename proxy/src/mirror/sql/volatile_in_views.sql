-- The first VOLATILE function (or operator backed by one) that a view among relations
-- ($5 schemas, '' when unqualified: any schema; $6 names) calls in its definition, or in the
-- definition of a view it reads, to any depth: what a view's rewrite rule depends on is in
-- pg_depend.
WITH RECURSIVE views (oid, depth) AS (
    SELECT c.oid, 0
      FROM unnest($5::text[], $6::text[]) AS r (schema, name)
      JOIN pg_catalog.pg_class c ON c.relname = r.name AND c.relkind = 'v'
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE r.schema = '' OR n.nspname = r.schema
    UNION
    SELECT d.refobjid, v.depth + 1
      FROM views v
      JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = v.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                 AND d.objid = rw.oid
                                 AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
      JOIN pg_catalog.pg_class c ON c.oid = d.refobjid AND c.relkind = 'v' AND c.oid <> v.oid
     WHERE v.depth < 32
),
-- Everything the views' rewrite rules depend on.
deps (classid, objid) AS (
    SELECT d.refclassid, d.refobjid
      FROM views v
      JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = v.oid
      JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                 AND d.objid = rw.oid
),
called (proc, what) AS (
    SELECT objid, '' FROM deps WHERE classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION ALL
    SELECT op.oprcode, 'operator '
      FROM deps JOIN pg_catalog.pg_operator op ON op.oid = deps.objid
     WHERE deps.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass
)
SELECT c.what || p.proname::text || ' (in a view the statement reads)'
  FROM called c JOIN pg_catalog.pg_proc p ON p.oid = c.proc
 WHERE p.provolatile = 'v'
 LIMIT 1
