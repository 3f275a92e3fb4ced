-- What a partition ($1) carries to its counterpart at a swap: owner, comment, whether it has
-- explicit privileges.
SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'), c.relacl IS NOT NULL
  FROM pg_class c WHERE c.oid = $1::oid
