-- The names of the foreign keys of table $1.
SELECT conname::text FROM pg_constraint WHERE conrelid = $1 AND contype = 'f'
