-- tandem's bookkeeping, version 5: hardening (issue 13).
--
-- A migration's executor lock is the advisory lock (class "tand", key = the migration's id)
-- and the key is an int4: ids stop at 2^31 - 1, so no two migrations can share a lock. (A
-- database that has handed out larger ids cannot take this upgrade; none is known.)
ALTER TABLE tandem.migrations ALTER id SET MAXVALUE 2147483647;
ALTER TABLE tandem.migrations ADD CONSTRAINT migrations_id_is_a_lock_key
    CHECK (id BETWEEN 1 AND 2147483647);

-- Within the online step after the `online_done` steps: how many of its statements have
-- committed. A statement that can run in a transaction commits together with this count, so
-- a process killed between two statements of a step resumes at the next one, never runs a
-- committed one again (an `ADD CONSTRAINT` run twice fails with 42710).
ALTER TABLE tandem.migrations
    ADD COLUMN online_statements_done integer NOT NULL DEFAULT 0;

-- What the executor asks of the proxies, as rows only tandem's role can write (the schema is
-- closed to PUBLIC). A notification on `tandem_proxy` is a doorbell: its payload is the
-- `seq` of the newest row, and proxies act on the rows, never on a payload (any role can
-- NOTIFY any channel). kind: 'hold' (migration_id, token, max_ms), 'release' (migration_id,
-- token), 'targets' (tandem.mirror_targets changed).
CREATE TABLE tandem.proxy_signals (
    seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('hold', 'release', 'targets')),
    migration_id bigint,
    token        text,
    max_ms       integer,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (kind = 'targets' OR (migration_id IS NOT NULL AND token IS NOT NULL)),
    CHECK (kind <> 'hold' OR max_ms > 0)
);

INSERT INTO tandem.schema_version (version) VALUES (5) ON CONFLICT DO NOTHING;
