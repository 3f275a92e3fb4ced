-- The columns of table $1 with a statistics target of their own (ALTER COLUMN ... SET
-- STATISTICS; -1 is the default).
SELECT a.attname::text AS name, a.attstattarget::int AS target
  FROM pg_attribute a
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget >= 0
 ORDER BY a.attnum
