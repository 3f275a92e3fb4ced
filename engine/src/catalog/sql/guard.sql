-- Run first inside the snapshot: proves BEGIN opened our own read-only, repeatable-read
-- transaction (it does not when the caller's connection was already inside a transaction),
-- and reads the server version to refuse servers that are too old.
SELECT current_setting('transaction_read_only') = 'on'
       AND current_setting('transaction_isolation') = 'repeatable read' AS ours,
       current_setting('server_version_num')::int4 AS server_version_num
