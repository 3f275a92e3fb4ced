-- The column sets of the unique indexes of table $1 (a name, for the shadow) on plain columns
-- (an expression index has none to compare): a drain that meets a duplicate on one of them
-- looks for a stale shadow row holding the value (`shadow/log.rs`, `evict`).
SELECT array(SELECT a.attname::text FROM generate_series(0, i.indnkeyatts - 1) g(n)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n]
              ORDER BY g.n)
  FROM pg_index i
 WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indexprs IS NULL
 ORDER BY i.indexrelid
