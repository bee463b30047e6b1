-- Insights: experiments and their recorded assignments, satisfaction surveys, the
-- wizard funnel. (The rollout setting lives in iam.rollout: every service reads it.)
CREATE TABLE experiments (
    experiment_id text PRIMARY KEY,
    description   text NOT NULL DEFAULT '',
    -- [{"id": …, "weight": …, "parameters": {…}}, …] in the order given
    variants      jsonb NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assignments (
    project       text NOT NULL,
    experiment_id text NOT NULL REFERENCES experiments (experiment_id) ON DELETE CASCADE,
    variant       text NOT NULL,
    assign_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, experiment_id)
);
CREATE INDEX assignments_experiment_idx ON assignments (experiment_id, variant);

-- One per model version: answered or skipped.
CREATE TABLE survey_responses (
    project     text NOT NULL,
    model       text NOT NULL,
    version     text NOT NULL,
    skipped     boolean NOT NULL,
    overall     int CHECK (overall BETWEEN 1 AND 5),
    step_ease   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- step name -> 1..5
    comment     text NOT NULL DEFAULT '',            -- personal data already masked
    variants    jsonb NOT NULL DEFAULT '{}'::jsonb,  -- experiment -> variant when answered
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, model, version)
);
CREATE INDEX survey_responses_time_idx ON survey_responses (create_time);

CREATE TABLE funnel_events (
    id               bigserial PRIMARY KEY,
    project          text NOT NULL,
    step             text NOT NULL,
    resource         text NOT NULL DEFAULT '',
    step_seconds     double precision,
    failure_category text NOT NULL DEFAULT '',
    event_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX funnel_events_step_idx ON funnel_events (step, project);
