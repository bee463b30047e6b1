-- The Ray placement group holding the current attempt's workers (hex id, reported by
-- rank 0), so a cancelled or lost run's CPUs can be released without waiting for Ray.
ALTER TABLE tuning_jobs ADD COLUMN placement_group text NOT NULL DEFAULT '';
