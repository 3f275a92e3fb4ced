-- The log method's drain "take" (engine/src/shadow/log.rs `take`), before and after it took
-- from a watermark. Run on a scratch database:
--   psql -X -q -d SCRATCH -f bench/engine/log_take.sql
-- A log of 3,000,000 entries (tandem's log table: an identity seq, autovacuum off), then
-- 2,000,000 taken 5,000 at a time as the drain takes them. The taken entries stay in the
-- index until a vacuum: a take from the log's start walks them all; one from the
-- watermark does not. Each form is timed three times on the live entries that follow.
DROP TABLE IF EXISTS take_bench;
CREATE TABLE take_bench (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, k1 integer)
  WITH (autovacuum_enabled = false);
INSERT INTO take_bench (k1) SELECT g FROM generate_series(1, 3000000) g;
DO $$ BEGIN
  FOR i IN 1..400 LOOP
    DELETE FROM take_bench WHERE seq IN (SELECT seq FROM take_bench ORDER BY seq LIMIT 5000);
    COMMIT;
  END LOOP;
END $$;
\echo from the start (before):
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq IN (SELECT seq FROM take_bench ORDER BY seq LIMIT 5000) RETURNING seq, ARRAY[k1::text];
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq IN (SELECT seq FROM take_bench ORDER BY seq LIMIT 5000) RETURNING seq, ARRAY[k1::text];
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq IN (SELECT seq FROM take_bench ORDER BY seq LIMIT 5000) RETURNING seq, ARRAY[k1::text];
\echo from the watermark (now):
SELECT min(seq) - 1 AS mark FROM take_bench \gset
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq > :mark AND seq <= (SELECT max(seq) FROM (SELECT seq FROM take_bench WHERE seq > :mark ORDER BY seq LIMIT 5000) AS s) RETURNING seq, ARRAY[k1::text];
SELECT :mark + 5000 AS mark \gset
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq > :mark AND seq <= (SELECT max(seq) FROM (SELECT seq FROM take_bench WHERE seq > :mark ORDER BY seq LIMIT 5000) AS s) RETURNING seq, ARRAY[k1::text];
SELECT :mark + 5000 AS mark \gset
EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY on) DELETE FROM take_bench WHERE seq > :mark AND seq <= (SELECT max(seq) FROM (SELECT seq FROM take_bench WHERE seq > :mark ORDER BY seq LIMIT 5000) AS s) RETURNING seq, ARRAY[k1::text];
DROP TABLE take_bench;
