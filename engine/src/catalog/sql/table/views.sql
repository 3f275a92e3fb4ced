-- The views that read table $1 (not tandem's mirror views): name, kind, definition,
-- options, owner, comment, and whether views are built on them.
SELECT DISTINCT v.oid, n.nspname::text, v.relname::text, v.relkind::text,
          pg_get_viewdef(v.oid), coalesce(v.reloptions, '{}'), pg_get_userbyid(v.relowner),
          obj_description(v.oid, 'pg_class'),
          EXISTS (SELECT 1 FROM pg_depend d2 JOIN pg_rewrite r2 ON r2.oid = d2.objid
                   WHERE d2.refobjid = v.oid AND r2.ev_class <> v.oid)
     FROM pg_depend d
     JOIN pg_rewrite r ON r.oid = d.objid
     JOIN pg_class v ON v.oid = r.ev_class
     JOIN pg_namespace n ON n.oid = v.relnamespace
    WHERE d.refobjid = $1 AND d.classid = 'pg_rewrite'::regclass AND v.oid <> $1
      -- tandem's own mirror views: the swap drops and re-creates them itself
      AND n.nspname <> 'tandem'
    ORDER BY 1
