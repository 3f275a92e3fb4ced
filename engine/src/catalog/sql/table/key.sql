-- The key a shadow migration addresses rows of table $1 by: the primary key, else the
-- narrowest unique, valid, immediate, non-partial index on NOT NULL plain columns (index oid
-- and column names).
SELECT i.indexrelid,
          array(SELECT a.attname::text FROM generate_series(0, i.indnkeyatts - 1) g(n)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n]
                ORDER BY g.n)
     FROM pg_index i
    WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
      AND i.indpred IS NULL AND i.indexprs IS NULL
      AND NOT EXISTS (SELECT 1 FROM generate_series(0, i.indnkeyatts - 1) g(n)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[g.n]
                       WHERE NOT a.attnotnull OR i.indkey[g.n] = 0)
    ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid LIMIT 1
