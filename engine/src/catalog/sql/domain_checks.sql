-- CHECK constraints of all domains (joined to domains.sql by the domain's oid).
SELECT c.contypid AS domain,
       c.conname::text AS name,
       pg_get_constraintdef(c.oid) AS definition,
       c.convalidated AS validated
FROM pg_constraint AS c
WHERE c.contypid <> 0 AND c.contype = 'c'
