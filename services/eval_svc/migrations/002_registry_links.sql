-- An evaluation of a tuning job's output or of a model version is pushed to the
-- registry once it has ended, which links it into the versions it measured.
ALTER TABLE evaluations ADD COLUMN registry_linked boolean NOT NULL DEFAULT false;
CREATE INDEX evaluations_registry_unlinked ON evaluations (update_time)
    WHERE NOT registry_linked AND model_kind <> 'base_model' AND state IN (4, 5, 7);
