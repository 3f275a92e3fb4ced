-- What a row written into table $1 must satisfy beyond its columns' types, as the server
-- spells it: CHECK constraints, unique indexes (their definitions), whether a unique or
-- primary key constraint is deferrable, generated columns (name and expression), and the
-- columns whose default is computed (a function call, not a constant), and whether it has
-- foreign keys of its own (their checks run in the writer's statement, in an order tandem
-- cannot test beforehand: a self-reference deleted parent first in one statement, say), and
-- whether row-level security applies to its owner.
SELECT
    array(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
           WHERE c.conrelid = $1 AND c.contype = 'c' ORDER BY 1) AS checks,
    array(SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid = $1 AND i.indisunique ORDER BY 1) AS uniques,
    EXISTS (SELECT 1 FROM pg_constraint c
             WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'x') AND c.condeferrable) AS deferrable,
    array(SELECT a.attname::text || ' AS ' || pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = $1 AND a.attgenerated <> '' ORDER BY 1) AS generated,
    array(SELECT a.attname::text
            FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
             AND pg_get_expr(d.adbin, d.adrelid) ~ '\(' ORDER BY 1) AS computed_defaults,
    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = $1 AND c.contype = 'f') AS foreign_keys,
    -- Row-level security that applies to the table's owner too (the triggers run as tandem):
    -- a policy's WITH CHECK can reject a write.
    (SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = $1) AS forced_rls
