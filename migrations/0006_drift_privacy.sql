-- tandem's bookkeeping, version 6: a drift row confirms no guessed value (issue 13).
--
-- The mirror records a drift's parameters as a hash, so that two drifts of one statement
-- with the same values can be told apart from others without the values being kept. An
-- unsalted hash of a customer id or an email confirms a guess of it: the hash is now salted
-- with this secret (SHA-256 of the secret and the parameters' SHA-256), which only tandem's
-- role can read (schema tandem is closed to PUBLIC). Hashes recorded before were not
-- salted: they are dropped.
CREATE TABLE tandem.drift_salt (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    salt     bytea   NOT NULL CHECK (length(salt) = 32)
);
-- 32 bytes from the server's strong random source (two version-4 UUIDs: 244 random bits).
INSERT INTO tandem.drift_salt (salt)
    SELECT uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
UPDATE tandem.drift SET param_hash = NULL WHERE param_hash IS NOT NULL;

INSERT INTO tandem.schema_version (version) VALUES (6) ON CONFLICT DO NOTHING;
