-- Settings for the snapshot transaction, so every definition comes out the same on every
-- server and session: names fully qualified (only pg_catalog is on the search path), and
-- constants in defaults and expressions printed in fixed date, interval, time zone and
-- float formats.
SET LOCAL search_path = pg_catalog;
SET LOCAL datestyle = 'ISO, YMD';
SET LOCAL intervalstyle = 'postgres';
SET LOCAL timezone = 'UTC';
SET LOCAL extra_float_digits = 3;
