-- tandem's bookkeeping, version 3: how `tandem proxy` processes and the executor coordinate,
-- with PostgreSQL as the only coordinator (tables here, LISTEN/NOTIFY on two channels).
--
-- Channel `tandem_proxy` (executor -> proxies), payloads:
--   'hold <migration> <token> <max_ms>'  stop starting transactions, let running ones finish,
--                                        then acknowledge in tandem.proxy_acks
--   'release <migration> <token>'        let held traffic go
--   'targets'                            tandem.mirror_targets changed: reload it
-- Channel `tandem_proxy_ack` (proxies -> executor), payload '<token>': a row was written to
-- tandem.proxy_acks.

-- Every running proxy, with a heartbeat every second; the executor counts a proxy whose
-- heartbeat is older than 5 s as gone.
CREATE TABLE IF NOT EXISTS tandem.proxies (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    listen       text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- A proxy's answer to a hold: held = every client session of it is idle (outside a
-- transaction) and new transactions wait; false = it could not get there in time.
CREATE TABLE IF NOT EXISTS tandem.proxy_acks (
    token    text        NOT NULL,
    proxy_id text        NOT NULL,
    held     boolean     NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token, proxy_id)
);

-- Dual-read counters, one row per migration, proxy and side compared against: 'shadow'
-- (before cutover, the new table seen in the old table's shape) or 'old' (in the rollback
-- window, the old table seen in the new table's shape). Proxies add to them every second.
CREATE TABLE IF NOT EXISTS tandem.dual_reads (
    migration_id bigint      NOT NULL REFERENCES tandem.migrations (id),
    proxy_id     text        NOT NULL,
    against      text        NOT NULL CHECK (against IN ('shadow', 'old')),
    comparisons  bigint      NOT NULL DEFAULT 0,
    mismatches   bigint      NOT NULL DEFAULT 0,
    -- sampled but not compared: not a plain read, not deterministic, or it failed
    skipped      bigint      NOT NULL DEFAULT 0,
    -- sampled but the bounded queue was full
    dropped      bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, proxy_id, against)
);

-- One row per mismatch found inside one snapshot. Never the statement's literal values: the
-- statement is normalized (constants as $n) and parameters are hashed.
CREATE TABLE IF NOT EXISTS tandem.drift (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id bigint      NOT NULL REFERENCES tandem.migrations (id),
    proxy_id     text        NOT NULL,
    against      text        NOT NULL CHECK (against IN ('shadow', 'old')),
    fingerprint  text        NOT NULL,
    statement    text        NOT NULL,
    param_hash   text,
    rows_live    bigint      NOT NULL,
    rows_other   bigint      NOT NULL,
    -- the key column values of one differing row, when the statement returns the key
    example_key  text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS drift_migration_idx ON tandem.drift (migration_id);

-- The view the proxy substitutes for the live table in a mirrored read: set by the executor
-- while a comparison means something (the copy is complete), null otherwise.
ALTER TABLE tandem.shadow_tables ADD COLUMN IF NOT EXISTS mirror_view text;

-- The plan's threshold: how many dual-read comparisons with no mismatch verify waits for.
ALTER TABLE tandem.migrations ADD COLUMN IF NOT EXISTS dual_read_min bigint NOT NULL DEFAULT 0;

-- What proxies mirror: one row per table with a comparison to make.
CREATE OR REPLACE VIEW tandem.mirror_targets AS
SELECT s.migration_id,
       m.phase,
       s.schema_name,
       s.table_name,
       s.mirror_view,
       CASE WHEN m.phase IN ('cutover', 'rollback_window') THEN 'old' ELSE 'shadow' END AS against,
       -- The key as the live table names it: the original's (TableSpec.key) before cutover,
       -- the new table's (TableSpec.new_key, which differs when the change renames a key
       -- column) after. Each element is a TableSpec Column, {"name": ..., "sql_type": ...};
       -- WITH ORDINALITY keeps the key's column order.
       ARRAY(SELECT k.col->>'name'
               FROM jsonb_array_elements(
                        CASE WHEN m.phase IN ('cutover', 'rollback_window')
                             THEN s.spec->'new_key' ELSE s.spec->'key' END)
                    WITH ORDINALITY AS k(col, n)
              ORDER BY k.n) AS key_columns
  FROM tandem.shadow_tables s
  JOIN tandem.migrations m ON m.id = s.migration_id
 WHERE s.mirror_view IS NOT NULL
   AND m.phase NOT IN ('finalized', 'rolled_back', 'abandoned');

INSERT INTO tandem.schema_version (version) VALUES (3) ON CONFLICT DO NOTHING;
