-- A worker connection's settings: each comparison is bounded ($1 ms), never queues behind a
-- cutover's lock for long ($2 ms), and a transaction left open by a lost worker ends ($3 ms).
SELECT set_config('statement_timeout', $1, false),
       set_config('lock_timeout', $2, false),
       set_config('idle_in_transaction_session_timeout', $3, false)
