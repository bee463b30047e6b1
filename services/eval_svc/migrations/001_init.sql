-- Evaluations, their event history, per-example results and recommendations.
CREATE TABLE evaluations (
    project                text        NOT NULL,
    evaluation_id          text        NOT NULL,
    display_name           text        NOT NULL DEFAULT '',
    model_kind             text        NOT NULL CHECK (model_kind IN ('tuning_job', 'model_version', 'base_model')),
    model_name             text        NOT NULL,
    resolved_model_version text        NOT NULL DEFAULT '',
    dataset_version        text        NOT NULL,
    split                  text        NOT NULL,
    metrics                jsonb       NOT NULL,   -- names, in the order results report them
    config                 jsonb       NOT NULL,   -- EvalConfig, defaults filled in
    baseline_evaluation    text        NOT NULL DEFAULT '',
    task                   smallint    NOT NULL,
    created_by_tuning_job  text        NOT NULL DEFAULT '',
    state                  smallint    NOT NULL,
    progress               jsonb       NOT NULL DEFAULT '{}',
    running                jsonb       NOT NULL DEFAULT '{}',  -- sums behind the running metrics
    results                jsonb,
    failure                jsonb,
    spec                   jsonb       NOT NULL,   -- RunSpec of the current attempt
    recommendations_done   boolean     NOT NULL DEFAULT false,
    recommendation_count   integer     NOT NULL DEFAULT 0,
    request_id             text        NOT NULL DEFAULT '',
    creator                text        NOT NULL DEFAULT '',
    labels                 jsonb       NOT NULL DEFAULT '{}',
    next_event             bigint      NOT NULL DEFAULT 1,
    revision               integer     NOT NULL DEFAULT 1,
    create_time            timestamptz NOT NULL DEFAULT now(),
    start_time             timestamptz,
    end_time               timestamptz,
    update_time            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, evaluation_id)
);
CREATE INDEX evaluations_by_time ON evaluations (project, create_time DESC, evaluation_id DESC);
CREATE INDEX evaluations_active ON evaluations (state, create_time) WHERE state IN (1, 2, 3, 6);
CREATE UNIQUE INDEX evaluations_request ON evaluations (project, request_id) WHERE request_id <> '';
-- SUCCEEDED evaluations whose recommendations are still to be made.
CREATE INDEX evaluations_follow_ups ON evaluations (update_time) WHERE state = 4 AND NOT recommendations_done;

CREATE TABLE evaluation_events (
    project       text        NOT NULL,
    evaluation_id text        NOT NULL,
    sequence      bigint      NOT NULL,
    time          timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind          text        NOT NULL CHECK (kind IN ('state', 'progress', 'log')),
    payload       jsonb       NOT NULL,
    PRIMARY KEY (project, evaluation_id, sequence),
    FOREIGN KEY (project, evaluation_id) REFERENCES evaluations ON DELETE CASCADE
);

CREATE FUNCTION notify_evaluation_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('evaluation_events', NEW.project || '/' || NEW.evaluation_id || '/' || NEW.sequence);
    RETURN NULL;
END $$;
CREATE TRIGGER evaluation_events_notify AFTER INSERT ON evaluation_events
    FOR EACH ROW EXECUTE FUNCTION notify_evaluation_event();

CREATE TABLE example_results (
    project             text             NOT NULL,
    evaluation_id       text             NOT NULL,
    row                 bigint           NOT NULL,
    input               text             NOT NULL,
    prediction          text             NOT NULL,
    reference           text             NOT NULL,
    score               double precision,
    correct             boolean,
    loss                double precision,
    label_probabilities jsonb            NOT NULL DEFAULT '{}',
    metrics             jsonb            NOT NULL DEFAULT '{}',
    truncated           boolean          NOT NULL DEFAULT false,
    PRIMARY KEY (project, evaluation_id, row),
    FOREIGN KEY (project, evaluation_id) REFERENCES evaluations ON DELETE CASCADE
);
-- Worst first: the default order of ListExampleResults.
CREATE INDEX example_results_worst ON example_results (project, evaluation_id, loss DESC NULLS LAST, row);

CREATE TABLE recommendations (
    project             text        NOT NULL,
    evaluation_id       text        NOT NULL,
    recommendation_id   text        NOT NULL,
    code                text        NOT NULL,
    severity            smallint    NOT NULL,
    title               text        NOT NULL,
    explanation         text        NOT NULL,
    evidence            jsonb       NOT NULL DEFAULT '[]',
    changes             jsonb,
    applicable          boolean     NOT NULL DEFAULT false,
    applied_tuning_jobs jsonb       NOT NULL DEFAULT '[]',
    create_time         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, evaluation_id, recommendation_id),
    FOREIGN KEY (project, evaluation_id) REFERENCES evaluations ON DELETE CASCADE
);
