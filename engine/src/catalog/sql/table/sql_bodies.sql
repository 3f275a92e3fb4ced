-- How many functions depend on table $1 (a SQL-standard body, BEGIN ATOMIC).
SELECT count(*) FROM pg_depend WHERE refobjid = $1 AND classid = 'pg_proc'::regclass
