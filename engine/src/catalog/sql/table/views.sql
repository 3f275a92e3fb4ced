-- The views that read table $1, directly or through other views (not tandem's mirror
-- views), in an order that creates each after the views it reads (deepest last): oid, name,
-- kind, definition, options, owner, comment, depth (1 = reads the table itself).
WITH RECURSIVE reader(oid, depth) AS (
    SELECT r.ev_class, 1
      FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND r.ev_class <> $1
    UNION
    SELECT r.ev_class, reader.depth + 1
      FROM reader
      JOIN pg_depend d ON d.refobjid = reader.oid AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid
     WHERE r.ev_class <> reader.oid AND reader.depth < 64
)
SELECT v.oid, n.nspname::text, v.relname::text, v.relkind::text,
       pg_get_viewdef(v.oid), coalesce(v.reloptions, '{}'), pg_get_userbyid(v.relowner),
       obj_description(v.oid, 'pg_class'), max(reader.depth)
  FROM reader
  JOIN pg_class v ON v.oid = reader.oid
  JOIN pg_namespace n ON n.oid = v.relnamespace
 -- tandem's own mirror views: the swap drops and re-creates them itself
 WHERE n.nspname <> 'tandem'
 GROUP BY v.oid, n.nspname, v.relname, v.relkind, v.reloptions, v.relowner
 ORDER BY max(reader.depth), 1
