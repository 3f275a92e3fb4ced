-- tandem's own bookkeeping schema in the target database (version 1).
-- Applied by the engine inside one transaction; the version row is written in the same
-- transaction, so a half-applied upgrade cannot exist.
CREATE SCHEMA IF NOT EXISTS tandem;

CREATE TABLE IF NOT EXISTS tandem.schema_version (
    version     integer     PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per submitted plan. The plan is stored exactly as submitted; its SHA-256 is the
-- identity approvals sign, and the fingerprint lets a stale plan be refused.
CREATE TABLE IF NOT EXISTS tandem.migrations (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan                jsonb       NOT NULL,
    plan_sha256         text        NOT NULL,
    schema_fingerprint  text        NOT NULL,
    phase               text        NOT NULL DEFAULT 'submitted',
    submitted_at        timestamptz NOT NULL DEFAULT now(),
    submitted_by        text        NOT NULL DEFAULT current_user,
    CONSTRAINT migrations_plan_sha256_check CHECK (plan_sha256 ~ '^[0-9a-f]{64}$')
);

-- Every phase transition, in the same transaction as the work it records.
CREATE TABLE IF NOT EXISTS tandem.events (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id  bigint      NOT NULL REFERENCES tandem.migrations (id),
    phase         text        NOT NULL,
    event         text        NOT NULL,
    detail        jsonb,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_migration_id_idx ON tandem.events (migration_id, id);

INSERT INTO tandem.schema_version (version) VALUES (1) ON CONFLICT DO NOTHING;
