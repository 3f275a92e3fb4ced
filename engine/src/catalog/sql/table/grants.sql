-- The privileges granted on relation $1 and, with $2, on its columns: grantee (NULL for
-- PUBLIC), privilege, grantable, column (NULL for the relation's).
SELECT CASE WHEN g = 0 THEN NULL ELSE pg_get_userbyid(g)::text END, p, gr, col
  FROM (SELECT (a).grantee, (a).privilege_type, (a).is_grantable, NULL::text
          FROM (SELECT aclexplode(relacl) a FROM pg_class WHERE oid = $1) x
        UNION ALL
        SELECT (a).grantee, (a).privilege_type, (a).is_grantable, attname::text
          FROM (SELECT aclexplode(attacl) a, attname FROM pg_attribute
                 WHERE $2 AND attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attacl IS NOT NULL) y
       ) AS acl(g, p, gr, col)
