-- Tuning jobs, their event history and cached throughput measurements.
-- Checkpoints and outputs live in object storage under
-- `training/projects/{project}/tuningJobs/{job}/`.
CREATE TABLE tuning_jobs (
    project                  text        NOT NULL,
    job_id                   text        NOT NULL,
    display_name             text        NOT NULL DEFAULT '',
    description              text        NOT NULL DEFAULT '',
    base_model               text        NOT NULL,
    dataset_version          text        NOT NULL,
    task                     smallint    NOT NULL,
    method                   smallint    NOT NULL,
    preset                   smallint    NOT NULL,
    hyperparameters          jsonb       NOT NULL,   -- as requested
    resolved_hyperparameters jsonb       NOT NULL,
    licence_acknowledged     boolean     NOT NULL DEFAULT false,
    lineage                  jsonb       NOT NULL DEFAULT '{}',
    skip_final_evaluation    boolean     NOT NULL DEFAULT false,
    labels                   jsonb       NOT NULL DEFAULT '{}',
    spec                     jsonb       NOT NULL,   -- TrainingSpec of the current attempt
    state                    smallint    NOT NULL,
    progress                 jsonb       NOT NULL DEFAULT '{}',
    latest_metrics           jsonb       NOT NULL DEFAULT '{}',
    latest_checkpoint        jsonb,
    output                   jsonb,
    failure                  jsonb,
    restart_count            integer     NOT NULL DEFAULT 0,
    evaluation               text        NOT NULL DEFAULT '',
    request_id               text        NOT NULL DEFAULT '',
    creator                  text        NOT NULL DEFAULT '',
    next_event               bigint      NOT NULL DEFAULT 1,
    revision                 integer     NOT NULL DEFAULT 1,
    create_time              timestamptz NOT NULL DEFAULT now(),
    start_time               timestamptz,
    end_time                 timestamptz,
    update_time              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, job_id)
);
CREATE INDEX tuning_jobs_by_time ON tuning_jobs (project, create_time DESC, job_id DESC);
-- The dispatcher's queue and the reconciler's work list: jobs that have not ended.
CREATE INDEX tuning_jobs_active ON tuning_jobs (state, create_time) WHERE state IN (1, 2, 3, 6);
CREATE UNIQUE INDEX tuning_jobs_request ON tuning_jobs (project, request_id) WHERE request_id <> '';

-- Everything that happened to a job, numbered 1, 2, 3… without gaps (the job row's
-- next_event is taken under its row lock, so numbers commit in order).
CREATE TABLE job_events (
    project   text        NOT NULL,
    job_id    text        NOT NULL,
    sequence  bigint      NOT NULL,
    time      timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind      text        NOT NULL CHECK (kind IN ('state', 'step', 'eval', 'checkpoint', 'log')),
    payload   jsonb       NOT NULL,
    PRIMARY KEY (project, job_id, sequence),
    FOREIGN KEY (project, job_id) REFERENCES tuning_jobs ON DELETE CASCADE
);

-- Watchers LISTEN on this channel; the payload says which job has a new event.
CREATE FUNCTION notify_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('training_job_events', NEW.project || '/' || NEW.job_id || '/' || NEW.sequence);
    RETURN NULL;
END $$;
CREATE TRIGGER job_events_notify AFTER INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION notify_job_event();

-- Measured samples/s per (model, task, method, sequence length, batch) on this cluster.
CREATE TABLE throughput_calibrations (
    key                text             PRIMARY KEY,
    samples_per_second double precision NOT NULL,
    measure_time       timestamptz      NOT NULL DEFAULT now()
);
