-- What the server has done, two ways (`executor/pace.rs`):
-- 1. the transaction ids it has completed (the snapshot's xmax, live, but only a transaction
--    that writes takes an id);
-- 2. every database's commits and rollbacks as its statistics hold them: each session reports
--    its own at most once a second, and inside a transaction they are a snapshot.
SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::int8,
       (SELECT coalesce(sum(d.xact_commit + d.xact_rollback), 0)::int8
          FROM pg_catalog.pg_stat_database d)
