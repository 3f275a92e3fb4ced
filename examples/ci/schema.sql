-- The schema the migrations must produce; tandem check fails (exit 2) on any difference.
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    balance bigint NOT NULL DEFAULT 0
);
