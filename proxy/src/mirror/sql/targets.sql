-- The tables with a comparison to make (see migrations/0003_proxy.sql). Only run when
-- tandem.mirror_targets exists: the proxy also runs in front of databases without tandem.
SELECT migration_id,
       schema_name,
       table_name,
       mirror_view,
       against,
       key_columns
  FROM tandem.mirror_targets
 ORDER BY migration_id, schema_name, table_name
