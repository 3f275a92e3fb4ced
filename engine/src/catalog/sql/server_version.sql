-- The server's version as a number, e.g. 150018.
SELECT current_setting('server_version_num')::int4 AS server_version_num
