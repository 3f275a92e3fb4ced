-- The NOT VALID CHECK constraints of table $1: name, definition (ending in NOT VALID), comment.
SELECT c.conname::text AS name, pg_get_constraintdef(c.oid) AS definition,
       obj_description(c.oid, 'pg_constraint') AS comment
  FROM pg_constraint c
 WHERE c.conrelid = $1 AND c.contype = 'c' AND NOT c.convalidated
 ORDER BY c.oid
