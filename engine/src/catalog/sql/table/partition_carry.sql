-- What each partition named in $1 carries to its counterpart at a swap (in that order): its
-- position, oid (NULL when it is gone), owner, comment, whether it has explicit privileges.
SELECT t.n::int4, c.oid, pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
       c.relacl IS NOT NULL
  FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
  LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
 ORDER BY t.n
