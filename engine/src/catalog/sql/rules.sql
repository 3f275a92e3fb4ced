-- User rules of every table (not the `_RETURN` rule that makes a view): the full CREATE RULE
-- statement as the server prints it, whether it fires, and its comment.
SELECT r.ev_class AS relation,
       r.rulename::text AS name,
       pg_get_ruledef(r.oid) AS definition,
       r.ev_enabled::text AS enabled,
       descr.description AS comment
FROM pg_rewrite AS r
JOIN pg_class AS c ON c.oid = r.ev_class
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = r.oid AND descr.classoid = 'pg_rewrite'::regclass AND descr.objsubid = 0
WHERE r.rulename <> '_RETURN'
  AND c.relkind IN ('r', 'p')
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  AND c.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
