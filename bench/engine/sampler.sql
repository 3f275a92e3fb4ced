-- What the server's sessions wait on, sampled every 5 ms (psql's \watch), for finding where
-- slow transactions come from while bench/engine/run.sh runs: the client sessions, tandem's
-- or pg_repack's, and the server's own processes (checkpointer, autovacuum), less those
-- waiting for their client or idle in their main loop. bench/engine/waits.sh runs it beside a
-- run for stalls.py; by hand:
--   psql -X -A -t -F '|' -h /tmp/benchpg-engine -p 55470 -U postgres -d postgres -f bench/engine/sampler.sql > samples.txt
-- (stop it with Ctrl-C or `timeout`). Each line: epoch seconds, pid, application, wait event
-- type and name, state, the statement.
SELECT extract(epoch FROM clock_timestamp())::numeric(16,3), a.pid, a.application_name,
       a.wait_event_type, a.wait_event, a.state, left(regexp_replace(a.query, '\s+', ' ', 'g'), 50)
  FROM pg_stat_activity a
 WHERE a.wait_event IS NOT NULL AND a.pid <> pg_backend_pid()
   AND a.wait_event NOT IN ('ClientRead', 'WalWriterMain', 'BgWriterHibernate', 'BgWriterMain',
                            'CheckpointerMain', 'AutoVacuumMain', 'LogicalLauncherMain', 'ArchiverMain')
\watch 0.005
