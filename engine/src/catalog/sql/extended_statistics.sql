-- The extended statistics objects of table $1, in creation order: schema, name, and target
-- (-1: the default).
SELECT n.nspname::text AS schema, s.stxname::text AS name, coalesce(s.stxstattarget::int, -1) AS target
  FROM pg_statistic_ext s
  JOIN pg_namespace n ON n.oid = s.stxnamespace
 WHERE s.stxrelid = $1
 ORDER BY s.oid
