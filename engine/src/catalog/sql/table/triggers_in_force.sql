-- Which of tandem's triggers $2 (names) on table $1 (a name) and its partitions do not fire
-- in every session_replication_role, and which are missing from the table itself: the
-- relation, the trigger and its state in words. No row: all in force.
WITH rel (oid) AS (SELECT to_regclass($1::text)::oid),
tree (oid) AS (
    SELECT p.relid::oid FROM rel, pg_partition_tree(rel.oid) p
    UNION
    SELECT oid FROM rel
)
SELECT t.tgrelid::regclass::text, t.tgname::text,
       CASE t.tgenabled
           WHEN 'D' THEN 'disabled'
           WHEN 'O' THEN 'enabled for origin sessions only, which replica sessions skip'
           WHEN 'R' THEN 'enabled for replica sessions only'
       END
  FROM pg_trigger t JOIN tree ON tree.oid = t.tgrelid
 WHERE t.tgname = ANY ($2::text[]) AND t.tgenabled <> 'A'
UNION ALL
SELECT $1::text, n.name, 'missing'
  FROM unnest($2::text[]) AS n (name), rel
 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = rel.oid AND t.tgname = n.name)
ORDER BY 1, 2
