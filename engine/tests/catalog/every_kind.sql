-- Every object kind the model holds, plus objects introspection must leave out.
CREATE EXTENSION citext;
CREATE EXTENSION btree_gist;

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'application objects';

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE app.mood ADD VALUE 'meh' BEFORE 'ok';
COMMENT ON TYPE app.mood IS 'how a user feels';
CREATE DOMAIN app.email AS citext COLLATE "C" NOT NULL DEFAULT 'nobody@example.com'
    CONSTRAINT email_has_at CHECK (VALUE ~ '@');
ALTER DOMAIN app.email ADD CONSTRAINT email_short CHECK (length(VALUE) < 200) NOT VALID;
CREATE TYPE app.money_amount AS (currency char(3), cents bigint);

CREATE SEQUENCE app.invoice_no AS integer START 1000 INCREMENT 5 CACHE 10 CYCLE;
COMMENT ON SEQUENCE app.invoice_no IS 'invoice numbers';

CREATE TABLE app.users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email app.email,
    name text COLLATE "C" NOT NULL,
    mood app.mood NOT NULL DEFAULT 'ok',
    created_at timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00',
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
    price numeric(10,2) DEFAULT 1.5,
    tags text[] NOT NULL DEFAULT '{}',
    CONSTRAINT users_email_key UNIQUE (email)
) WITH (fillfactor = 70, autovacuum_enabled = false);
ALTER TABLE app.users REPLICA IDENTITY FULL;
COMMENT ON TABLE app.users IS 'people';
COMMENT ON COLUMN app.users.email IS 'login';
COMMENT ON CONSTRAINT users_email_key ON app.users IS 'one account per address';

CREATE TABLE app.invoices (
    no integer NOT NULL DEFAULT nextval('app.invoice_no'),
    user_id bigint NOT NULL,
    amount app.money_amount,
    total numeric(12,2) NOT NULL,
    during tstzrange NOT NULL,
    room int NOT NULL,
    PRIMARY KEY (no),
    CONSTRAINT invoices_user_fk FOREIGN KEY (user_id) REFERENCES app.users (id)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT no_double_booking EXCLUDE USING gist (room WITH =, during WITH &&)
);
ALTER SEQUENCE app.invoice_no OWNED BY app.invoices.no;
ALTER TABLE app.invoices ADD CONSTRAINT total_positive CHECK (total > 0) NOT VALID;
CREATE INDEX invoices_open_idx ON app.invoices (user_id) INCLUDE (total) WHERE total > 100;
CREATE INDEX invoices_lower_idx ON app.invoices USING btree (lower((amount).currency::text) DESC);
COMMENT ON INDEX app.invoices_open_idx IS 'big invoices';

CREATE TABLE public.serials (id serial PRIMARY KEY, note text);
CREATE UNLOGGED TABLE public.scratch (k int NOT NULL, v jsonb);
CREATE UNIQUE INDEX scratch_k_idx ON public.scratch (k);
ALTER TABLE public.scratch REPLICA IDENTITY USING INDEX scratch_k_idx;

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.touch() IS 'stamps rows';
CREATE TRIGGER users_touch BEFORE INSERT OR UPDATE ON app.users
    FOR EACH ROW EXECUTE FUNCTION app.touch();
COMMENT ON TRIGGER users_touch ON app.users IS 'keeps created_at fresh';
CREATE PROCEDURE app.purge(days int) LANGUAGE sql AS $$ DELETE FROM app.invoices WHERE room = days $$;

CREATE VIEW app.user_totals AS
    SELECT u.id, u.name, sum(i.total) AS total
    FROM app.users u JOIN app.invoices i ON i.user_id = u.id
    GROUP BY u.id, u.name;
COMMENT ON VIEW app.user_totals IS 'spend per user';
CREATE VIEW app.big_spenders AS SELECT id, name FROM app.user_totals WHERE total > 1000;
CREATE MATERIALIZED VIEW app.mood_counts AS
    SELECT mood, count(*) AS n FROM app.users GROUP BY mood;
CREATE UNIQUE INDEX mood_counts_mood_idx ON app.mood_counts (mood);

ALTER TABLE app.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY own_invoices ON app.invoices FOR SELECT
    USING (user_id = current_setting('app.user_id')::bigint);
CREATE POLICY monitors ON app.invoices AS RESTRICTIVE FOR UPDATE TO pg_read_all_data, pg_monitor
    USING (true) WITH CHECK (total < 1000000);

CREATE TABLE app.events (
    id bigint NOT NULL,
    at date NOT NULL,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_payload_idx ON app.events USING gin (payload);
CREATE TABLE app.event_refs (
    event_id bigint NOT NULL,
    event_at date NOT NULL,
    FOREIGN KEY (event_id, event_at) REFERENCES app.events (id, at)
);

-- Left out: tandem's own schema, its triggers on user tables, temporary tables and views.
CREATE SCHEMA tandem;
CREATE TABLE tandem.migrations (id int PRIMARY KEY);
CREATE FUNCTION tandem.dual_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER tandem_dual_write AFTER INSERT ON app.users
    FOR EACH ROW EXECUTE FUNCTION tandem.dual_write();
CREATE TEMPORARY TABLE session_scratch (a int PRIMARY KEY);
CREATE TEMPORARY VIEW session_view AS SELECT a FROM session_scratch;
