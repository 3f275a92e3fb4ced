SET lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN balance bigint NOT NULL DEFAULT 0;
