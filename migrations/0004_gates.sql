-- tandem's bookkeeping, version 4: the gates. The database's identity, the approval policy
-- (a chain of versions, each signed by the previous one's approvers), the signed statements
-- (submissions, approvals, revocations), and one append-only, hash-chained audit log that
-- every other record of what happened is read from (`tandem.events` becomes a view of it).
--
-- Trust: signatures are checked by tandem, never by the database, so a row written by hand
-- counts for nothing. The append-only triggers and the SECURITY DEFINER appender keep honest
-- mistakes and other roles out; a superuser who rewrites history is caught by `tandem audit
-- verify` against a checkpoint kept outside the database.

REVOKE ALL ON SCHEMA tandem FROM PUBLIC;

-- Who this database is. `id` is random and made here: a restored copy (another server,
-- another database oid or name) gets a new one, so approvals for the original do not count
-- on the copy (`engine/src/state/identity.rs`).
CREATE TABLE tandem.instance (
    singleton          boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id                 text        NOT NULL CHECK (id ~ '^[0-9a-f]{32}$'),
    system_identifier  text        NOT NULL,
    database_oid       oid         NOT NULL,
    database           text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The approval policy, version by version. Version 1 is trusted on first use (its
-- fingerprint is printed to be pinned); each later version carries the signatures of the
-- previous version's approvers.
CREATE TABLE tandem.policies (
    version      integer     PRIMARY KEY CHECK (version >= 1),
    policy       text        NOT NULL,
    fingerprint  text        NOT NULL UNIQUE CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    signatures   jsonb       NOT NULL DEFAULT '[]',
    set_at       timestamptz NOT NULL DEFAULT now(),
    set_by       text        NOT NULL DEFAULT session_user
);

-- Signed statements about a migration: its submission, approvals and revocations, exactly
-- as signed (the envelope carries the statement, the public key and the signature).
CREATE TABLE tandem.signatures (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id  bigint      NOT NULL REFERENCES tandem.migrations (id),
    kind          text        NOT NULL CHECK (kind IN ('submit', 'approve', 'revoke')),
    key_id        text        NOT NULL,
    nonce         text        NOT NULL,
    signed        jsonb       NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signatures_migration_idx ON tandem.signatures (migration_id, id);
-- A statement is stored once: the same signed approval cannot be counted twice, here or for
-- another migration (the gate also rejects a nonce it sees twice, should this go).
CREATE UNIQUE INDEX signatures_nonce_idx ON tandem.signatures (nonce);

-- The audit log. `body` is the exact JSON text that was hashed; `hash` =
-- sha256(prev_hash || '\n' || seq || '\n' || body), so the chain can be checked with
-- nothing but the rows (`gates::chain`, `tandem audit verify`).
CREATE TABLE tandem.audit (
    seq           bigint      PRIMARY KEY CHECK (seq >= 1),
    at            timestamptz NOT NULL,
    migration_id  bigint,
    kind          text        NOT NULL,
    body          text        NOT NULL,
    prev_hash     text        NOT NULL,
    hash          text        NOT NULL UNIQUE
);
CREATE INDEX audit_migration_idx ON tandem.audit (migration_id, seq);

-- Append one entry; the only way in. Serialised by a transaction-scoped advisory lock, so
-- entries chain in commit order of their appenders and two appenders never fork the chain.
CREATE FUNCTION tandem.audit_append(p_migration bigint, p_kind text, p_phase text, p_event text,
                                    p_detail jsonb, p_key text, p_at timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_seq  bigint;
    v_prev text;
    v_at   timestamptz := coalesce(p_at, clock_timestamp());
    v_body text;
BEGIN
    PERFORM pg_advisory_xact_lock(8389750239925370882);  -- 0x746e_6164_7500_0002
    SELECT a.seq, a.hash INTO v_seq, v_prev FROM tandem.audit a ORDER BY a.seq DESC LIMIT 1;
    v_seq := coalesce(v_seq, 0) + 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    v_body := jsonb_build_object(
        'at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'kind', p_kind,
        'migration', p_migration,
        'phase', p_phase,
        'event', p_event,
        'detail', p_detail,
        'actor', jsonb_build_object(
            'role', session_user::text,
            'key', p_key,
            'host', coalesce(host(inet_client_addr()), 'local'),
            'application', current_setting('application_name', true)))::text;
    INSERT INTO tandem.audit (seq, at, migration_id, kind, body, prev_hash, hash)
    VALUES (v_seq, v_at, p_migration, p_kind, v_body, v_prev,
            encode(sha256(convert_to(v_prev || E'\n' || v_seq::text || E'\n' || v_body, 'UTF8')), 'hex'));
    RETURN v_seq;
END $$;
REVOKE ALL ON FUNCTION tandem.audit_append(bigint, text, text, text, jsonb, text, timestamptz) FROM PUBLIC;

-- Rows of these tables are never changed nor removed, whoever asks and in every
-- session_replication_role (ENABLE ALWAYS: a replica or pg_restore session is no way round).
CREATE FUNCTION tandem.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'tandem.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'tandem keeps this record as it was written; `tandem audit verify` checks it';
END $$;
REVOKE ALL ON FUNCTION tandem.refuse_rewrite() FROM PUBLIC;

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON tandem.audit
    FOR EACH ROW EXECUTE FUNCTION tandem.refuse_rewrite();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON tandem.audit
    FOR EACH STATEMENT EXECUTE FUNCTION tandem.refuse_rewrite();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON tandem.policies
    FOR EACH ROW EXECUTE FUNCTION tandem.refuse_rewrite();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON tandem.policies
    FOR EACH STATEMENT EXECUTE FUNCTION tandem.refuse_rewrite();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON tandem.signatures
    FOR EACH ROW EXECUTE FUNCTION tandem.refuse_rewrite();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON tandem.signatures
    FOR EACH STATEMENT EXECUTE FUNCTION tandem.refuse_rewrite();
ALTER TABLE tandem.audit ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE tandem.audit ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE tandem.policies ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE tandem.policies ENABLE ALWAYS TRIGGER append_only_truncate;
ALTER TABLE tandem.signatures ENABLE ALWAYS TRIGGER append_only;
ALTER TABLE tandem.signatures ENABLE ALWAYS TRIGGER append_only_truncate;

-- One record, not two that can disagree: the events written so far move into the chain, in
-- order and with their times, and `tandem.events` becomes the chain's view of them.
DO $$
DECLARE e record;
BEGIN
    FOR e IN SELECT * FROM tandem.events ORDER BY id LOOP
        PERFORM tandem.audit_append(e.migration_id, 'event', e.phase, e.event, e.detail, NULL, e.at);
    END LOOP;
END $$;
DROP TABLE tandem.events;
CREATE VIEW tandem.events AS
SELECT a.seq AS id,
       a.migration_id,
       a.body::jsonb ->> 'phase' AS phase,
       a.body::jsonb ->> 'event' AS event,
       nullif(a.body::jsonb -> 'detail', 'null'::jsonb) AS detail,
       a.at
  FROM tandem.audit a
 WHERE a.kind = 'event';

INSERT INTO tandem.schema_version (version) VALUES (4) ON CONFLICT DO NOTHING;
