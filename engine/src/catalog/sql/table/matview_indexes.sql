-- The indexes of materialized view $1: name, whether the definition could be cut, the part
-- of `pg_get_indexdef` after `CREATE [UNIQUE] INDEX name ON relation ` (to build it again on
-- another relation), unique, comment. Both halves are printed under the session's
-- search_path, so the relation is spelt alike in each.
SELECT x.relname::text,
       starts_with(pg_get_indexdef(i.indexrelid), p.prefix),
       substr(pg_get_indexdef(i.indexrelid), length(p.prefix) + 1),
       i.indisunique,
       obj_description(x.oid, 'pg_class')
  FROM pg_index i
  JOIN pg_class x ON x.oid = i.indexrelid
 CROSS JOIN LATERAL (
       SELECT format('CREATE %sINDEX %I ON %s ',
                     CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END,
                     x.relname, i.indrelid::regclass) AS prefix) p
 WHERE i.indrelid = $1
 ORDER BY x.relname
