-- Whether tandem's proxy bookkeeping (version 3) is installed in this database.
SELECT to_regclass('tandem.mirror_targets') IS NOT NULL
