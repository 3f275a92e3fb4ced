-- The names of the row-level security policies of table $1.
SELECT polname::text FROM pg_policy WHERE polrelid = $1
