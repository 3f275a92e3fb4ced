-- The triggers of table $1 (not tandem's, not internal ones).
SELECT tgname::text, pg_get_triggerdef(oid), tgenabled::text FROM pg_trigger
    WHERE tgrelid = $1 AND NOT tgisinternal AND tgname NOT LIKE '\_tandem\_%' ORDER BY tgname
