-- The columns of table $1, in order: name, type, the generation expression of a generated
-- column, NOT NULL, has a default, identity ('a', 'd' or ''), attnum.
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attnotnull, a.atthasdef, a.attidentity::text, a.attnum
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
