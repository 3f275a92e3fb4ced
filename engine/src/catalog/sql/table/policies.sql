-- The row-level security policies of table $1, with their roles and expressions.
SELECT p.polname::text, p.polpermissive, p.polcmd::text,
         coalesce((SELECT array_agg(CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r)::text END) FROM unnest(p.polroles) r), '{}'),
         pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
    FROM pg_policy p WHERE p.polrelid = $1 ORDER BY p.polname
