-- The indexes of table $1 (a name, for the shadow) that compare a row with the others (unique
-- or exclusion), other than the key's ($2: the key's column names), each with its columns
-- when a forward trigger can evict a stale row holding its values (a unique index on plain
-- columns whose NULLs are distinct; NULL otherwise): a forward trigger takes over from a log
-- not yet drained only when it can evict for every one (`executor/drain.rs`).
-- `indnullsnotdistinct` is read through to_jsonb: the column is new in PostgreSQL 15.
SELECT c.relname::text,
       CASE WHEN i.indisunique AND i.indexprs IS NULL
                 AND NOT coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false)
            THEN array(SELECT a.attname::text FROM generate_series(0, i.indnkeyatts - 1) g(n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n]
                        ORDER BY g.n)
       END
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = $1::text::regclass
   AND (i.indisunique OR i.indisexclusion)
   AND NOT (i.indisunique AND i.indexprs IS NULL AND i.indpred IS NULL
            AND i.indnkeyatts = cardinality($2::text[])
            AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                   FROM generate_series(0, i.indnkeyatts - 1) g(n)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n])
              = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k))
 ORDER BY 1
