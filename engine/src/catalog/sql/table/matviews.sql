-- The materialized views that read table $1 itself (through their rewrite rule), and the
-- views that read each of them: oid, schema, name, definition, options, owner, comment,
-- readers (the names of the views and materialized views that read it).
SELECT v.oid, n.nspname::text, v.relname::text, pg_get_viewdef(v.oid),
       coalesce(v.reloptions, '{}'), pg_get_userbyid(v.relowner),
       obj_description(v.oid, 'pg_class'),
       array(SELECT DISTINCT rv.oid::regclass::text
               FROM pg_depend rd
               JOIN pg_rewrite rr ON rr.oid = rd.objid
               JOIN pg_class rv ON rv.oid = rr.ev_class
              WHERE rd.classid = 'pg_rewrite'::regclass AND rd.refobjid = v.oid
                AND rr.ev_class <> v.oid)
  FROM pg_class v
  JOIN pg_namespace n ON n.oid = v.relnamespace
 WHERE v.relkind = 'm'
   AND v.oid IN (SELECT r.ev_class
                   FROM pg_depend d
                   JOIN pg_rewrite r ON r.oid = d.objid
                  WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1)
 ORDER BY v.oid
