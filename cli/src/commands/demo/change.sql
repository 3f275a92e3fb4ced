-- The migration a developer wrote: each statement looks harmless.
ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
CREATE INDEX accounts_email_idx ON accounts (email);
ALTER TABLE accounts ADD CONSTRAINT balance_not_negative CHECK (balance >= 0);
ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;
ALTER TABLE orders DROP COLUMN note;
