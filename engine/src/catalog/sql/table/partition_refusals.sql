-- What partitions $1 (oids) have of their own, which a shadow partition made from the
-- partitioned table's definition would not: one row per partition and reason. tandem's own
-- triggers (named _tandem_m...) are not the partition's.
SELECT c.relname::text, r.reason
  FROM pg_class c
 CROSS JOIN LATERAL (
    SELECT 'it is a foreign table' AS reason WHERE c.relkind = 'f'
    UNION ALL
    SELECT format('it has index %s of its own (not one of the partitioned table''s)', ci.relname)
      FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid
     WHERE i.indrelid = c.oid AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)
    UNION ALL
    SELECT format('it has trigger %s of its own', t.tgname)
      FROM pg_trigger t
     WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgparentid = 0
       AND t.tgname NOT LIKE '\_tandem\_m%'
    UNION ALL
    SELECT format('it has constraint %s of its own', k.conname)
      FROM pg_constraint k
     WHERE k.conrelid = c.oid AND k.coninhcount = 0 AND k.conparentid = 0
    UNION ALL
    SELECT format('foreign key %s of %s references it directly', k.conname, k.conrelid::regclass)
      FROM pg_constraint k
     WHERE k.confrelid = c.oid AND k.contype = 'f' AND k.conparentid = 0
    UNION ALL
    SELECT 'it has row-level security or policies of its own'
     WHERE c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
    UNION ALL
    SELECT format('%s reads it directly', r.ev_class::regclass)
      FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     WHERE d.refobjid = c.oid AND d.refclassid = 'pg_class'::regclass AND r.ev_class <> c.oid
     GROUP BY r.ev_class
    UNION ALL
    SELECT format('publication %s lists it', p.pubname)
      FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
     WHERE pr.prrelid = c.oid
    UNION ALL
    SELECT 'it has a security label'
     WHERE EXISTS (SELECT 1 FROM pg_seclabel s WHERE s.classoid = 'pg_class'::regclass AND s.objoid = c.oid)
    UNION ALL
    SELECT 'it has extended statistics of its own'
     WHERE EXISTS (SELECT 1 FROM pg_statistic_ext s WHERE s.stxrelid = c.oid)
    UNION ALL
    SELECT 'its replica identity is not the default'
     WHERE c.relreplident <> 'd'
    UNION ALL
    SELECT 'a column has privileges of its own'
     WHERE EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL)
 ) r
 WHERE c.oid = ANY ($1::oid[])
 ORDER BY c.oid
