-- Follow-up work of a SUCCEEDED job, done by the service after the run (the final
-- evaluation, the registration of the output), retried with back-off until it is done.
ALTER TABLE tuning_jobs
    ADD COLUMN register_to_model  text        NOT NULL DEFAULT '',
    ADD COLUMN model_version      text        NOT NULL DEFAULT '',
    ADD COLUMN follow_up_error    text        NOT NULL DEFAULT '',
    ADD COLUMN follow_up_attempts integer     NOT NULL DEFAULT 0,
    ADD COLUMN follow_up_after    timestamptz NOT NULL DEFAULT '-infinity';
-- SUCCEEDED (4) jobs with a follow-up still to do.
CREATE INDEX tuning_jobs_follow_ups ON tuning_jobs (follow_up_after)
    WHERE state = 4 AND ((NOT skip_final_evaluation AND evaluation = '')
                         OR (register_to_model <> '' AND model_version = ''));
