-- One mismatch found inside one snapshot. The statement is normalized and the parameters
-- hashed, salted with the database's secret (migrations/0006): never a literal value of the
-- application's.
INSERT INTO tandem.drift
       (migration_id, proxy_id, against, fingerprint, statement, param_hash,
        rows_live, rows_other, example_key)
VALUES ($1, $2, $3, $4, $5,
        encode(sha256((SELECT salt FROM tandem.drift_salt) || $6::bytea), 'hex'),
        $7, $8, $9)
