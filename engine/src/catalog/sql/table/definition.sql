-- What a swap must know of table $1 itself, and what tandem refuses about it:
-- owner, comment, options, RLS, replica identity, kind, inheritance, rules, FOR ALL TABLES
-- publications, explicit privileges, security labels, RLS that applies to tandem's role or
-- to the owner, whether tandem's role owns the table or may act as its owner, and whether
-- the owner may create objects in schema tandem.
SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
         coalesce(c.reloptions, '{}'), c.relrowsecurity, c.relforcerowsecurity,
         c.relreplident::text,
         (SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
         c.relkind::text, c.relispartition,
         EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR (inhparent = c.oid AND c.relkind <> 'p')),
         (SELECT count(*) FROM pg_rewrite r WHERE r.ev_class = c.oid)::int,
         EXISTS (SELECT 1 FROM pg_publication WHERE puballtables),
         c.relacl IS NOT NULL
            OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid AND attacl IS NOT NULL),
         EXISTS (SELECT 1 FROM pg_seclabel WHERE classoid = 'pg_class'::regclass AND objoid = c.oid),
         -- Row-level security applies to tandem's own reads of the table (the copy,
         -- the verification): forced on the owner, or tandem is not the owner, and
         -- its role can neither bypass it nor is a superuser.
         (c.relrowsecurity
           AND (c.relforcerowsecurity OR c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user))
           AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user))
         -- ... or to the owner, as whom tandem writes the new table's rows: forced, and the
         -- owner can neither bypass it nor is a superuser.
         OR (c.relrowsecurity AND c.relforcerowsecurity
             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE oid = c.relowner)),
         c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user),
         pg_has_role(current_user, c.relowner, 'USAGE'),
         -- NULL without schema tandem (a scratch database)
         (SELECT has_schema_privilege(c.relowner, n.oid, 'CREATE')
                 AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = c.relowner)
            FROM pg_namespace n WHERE n.nspname = 'tandem')
    FROM pg_class c WHERE c.oid = $1
