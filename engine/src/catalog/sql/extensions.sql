-- Installed extensions (plpgsql included: it is an extension like any other).
SELECT e.extname::text AS name,
       n.nspname::text AS schema,
       e.extversion AS version
FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE n.nspname <> 'tandem'
ORDER BY 1
