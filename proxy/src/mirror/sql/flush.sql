-- Add one proxy's counters for one migration and side since the last flush.
INSERT INTO tandem.dual_reads AS d
       (migration_id, proxy_id, against, comparisons, mismatches, skipped, dropped)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (migration_id, proxy_id, against) DO UPDATE
   SET comparisons = d.comparisons + EXCLUDED.comparisons,
       mismatches  = d.mismatches + EXCLUDED.mismatches,
       skipped     = d.skipped + EXCLUDED.skipped,
       dropped     = d.dropped + EXCLUDED.dropped,
       updated_at  = now()
