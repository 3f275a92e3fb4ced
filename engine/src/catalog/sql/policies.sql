-- Row-level security policies. Roles are `{public}` for PUBLIC, else role names (sorted by the caller, in byte order).
SELECT p.polrelid AS relation,
       p.polname::text AS name,
       p.polpermissive AS permissive,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                     WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
       CASE WHEN p.polroles = '{0}'::oid[] THEN ARRAY['public']
            ELSE array(SELECT r.rolname::text FROM pg_roles AS r
                       WHERE r.oid = ANY (p.polroles)) END AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
FROM pg_policy AS p
JOIN pg_class AS r ON r.oid = p.polrelid
JOIN pg_namespace AS n ON n.oid = r.relnamespace
WHERE n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND r.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
