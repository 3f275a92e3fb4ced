-- User triggers of every table. Skipped: internal ones (constraint triggers PostgreSQL makes
-- for foreign keys), clones a partition inherits from its parent's trigger, and tandem's own
-- dual-write triggers (their function lives in the `tandem` schema).
SELECT t.tgrelid AS relation,
       t.tgname::text AS name,
       pg_get_triggerdef(t.oid) AS definition,
       t.tgenabled::text AS enabled,
       descr.description AS comment
FROM pg_trigger AS t
JOIN pg_class AS r ON r.oid = t.tgrelid
JOIN pg_namespace AS n ON n.oid = r.relnamespace
JOIN pg_proc AS f ON f.oid = t.tgfoid
JOIN pg_namespace AS fnsp ON fnsp.oid = f.pronamespace
LEFT JOIN pg_description AS descr
       ON descr.objoid = t.oid AND descr.classoid = 'pg_trigger'::regclass AND descr.objsubid = 0
WHERE NOT t.tgisinternal
  AND t.tgparentid = 0
  AND r.relkind IN ('r', 'p')
  AND fnsp.nspname <> 'tandem'
  AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname NOT IN ('information_schema', 'tandem')
  -- tandem's shadow and parked tables in user schemas (see engine/src/shadow)
  AND r.relname !~ '^_tandem_m[0-9]+_t[0-9]+_(new|old)$'
