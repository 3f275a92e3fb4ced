-- tandem's bookkeeping, version 2: what the seven-phase executor needs to resume after a crash.
-- Applied by the engine inside one transaction, with the version row.

ALTER TABLE tandem.migrations
    -- How long the old table is kept current after cutover.
    ADD COLUMN IF NOT EXISTS rollback_window interval NOT NULL DEFAULT '30 days',
    ADD COLUMN IF NOT EXISTS window_ends_at  timestamptz,
    -- Set by `tandem pause`, cleared by `tandem resume`; read by the executor between batches.
    ADD COLUMN IF NOT EXISTS paused          boolean     NOT NULL DEFAULT false,
    -- What the executor is waiting for right now (a lock, the load, a pause), for `status`.
    ADD COLUMN IF NOT EXISTS waiting_for     text,
    ADD COLUMN IF NOT EXISTS cutover_attempts integer    NOT NULL DEFAULT 0,
    -- The last verification: {"passed": bool, "rows": n, "mismatches": n, "examples": [...]}.
    ADD COLUMN IF NOT EXISTS verify_result   jsonb,
    -- How many of the plan's online steps have run.
    ADD COLUMN IF NOT EXISTS online_done     integer     NOT NULL DEFAULT 0,
    -- A reason rollback cannot keep the old table right (e.g. a USING expression), or null.
    ADD COLUMN IF NOT EXISTS rollback_blocker text,
    ADD COLUMN IF NOT EXISTS updated_at      timestamptz NOT NULL DEFAULT now();

ALTER TABLE tandem.migrations DROP CONSTRAINT IF EXISTS migrations_phase_check;
ALTER TABLE tandem.migrations ADD CONSTRAINT migrations_phase_check CHECK (phase IN (
    'submitted', 'prepare', 'dual_write', 'backfill', 'verify', 'cutover',
    'rollback_window', 'rolled_back', 'finalized', 'abandoned'));

-- One row per table a migration rebuilds through a shadow table.
CREATE TABLE IF NOT EXISTS tandem.shadow_tables (
    migration_id    bigint  NOT NULL REFERENCES tandem.migrations (id),
    step            integer NOT NULL,
    table_oid       oid     NOT NULL,
    schema_name     text    NOT NULL,
    table_name      text    NOT NULL,
    -- tandem's names for the shadow and, after cutover, the old table.
    shadow_name     text    NOT NULL,
    old_name        text    NOT NULL,
    -- The shape: key columns, column mapping, dependents to carry over (see engine/src/shadow).
    spec            jsonb   NOT NULL,
    -- Backfill progress: the key bound taken when the backfill started, the last key copied.
    bound           jsonb,
    last_key        jsonb,
    rows_copied     bigint  NOT NULL DEFAULT 0,
    rows_total      bigint  NOT NULL DEFAULT 0,
    backfill_started_at timestamptz,
    indexes_built   boolean NOT NULL DEFAULT false,
    fks_validated   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (migration_id, table_oid)
);

-- Writes a trigger could not apply to the other table (a row the new definition rejects, or
-- that the old one cannot hold). They fail verification, or block a rollback, with the key.
CREATE TABLE IF NOT EXISTS tandem.divergence (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id  bigint      NOT NULL REFERENCES tandem.migrations (id),
    direction     text        NOT NULL CHECK (direction IN ('forward', 'reverse')),
    table_name    text        NOT NULL,
    key           text        NOT NULL,
    sqlstate      text        NOT NULL,
    message       text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS divergence_migration_idx ON tandem.divergence (migration_id, direction);

INSERT INTO tandem.schema_version (version) VALUES (2) ON CONFLICT DO NOTHING;
