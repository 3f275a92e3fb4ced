-- The names of the triggers of table $1 (not internal ones).
SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal
