-- The rows of a table updated or deleted so far, as its statistics hold them: $1 is the
-- table's quoted, qualified name. (Inserts are left out: the copy's session reports its
-- last ones up to a second late.)
SELECT coalesce(s.n_tup_upd + s.n_tup_del, 0)::int8
  FROM pg_catalog.pg_stat_all_tables s
 WHERE s.relid = $1::text::pg_catalog.regclass
