-- The identity of the server and database: which cluster a plan was made against.
SELECT s.system_identifier::text AS system_identifier,
       current_database()::text AS database,
       current_setting('server_version_num')::int4 AS server_version_num
FROM pg_control_system() AS s
