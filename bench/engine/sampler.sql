-- What client sessions wait on, sampled every 5 ms (psql's \watch), for finding where slow
-- transactions come from while bench/engine/run.sh runs. Start it beside a run:
--   psql -X -h /tmp/benchpg-engine -p 55470 -U postgres -d postgres -f bench/engine/sampler.sql > samples.txt
-- (stop it with Ctrl-C or `timeout`). Each line: time (seconds.ms of the minute), pid,
-- application, wait event type and name, state, the statement.
SELECT to_char(clock_timestamp(), 'SS.MS') AS t, a.pid, a.application_name, a.wait_event_type, a.wait_event, a.state, left(regexp_replace(a.query, '\s+', ' ', 'g'), 70) AS q
  FROM pg_stat_activity a
 WHERE a.backend_type = 'client backend' AND a.wait_event IS NOT NULL AND a.wait_event <> 'ClientRead' AND a.pid <> pg_backend_pid()
\watch 0.005
