-- Registered models, their immutable versions, aliases with their history, exports.
-- Version folders live in object storage under
-- `registry/projects/{project}/models/{model}/versions/{version}/`.
CREATE TABLE registered_models (
    project      text        NOT NULL,
    model_id     text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    description  text        NOT NULL DEFAULT '',
    task         smallint    NOT NULL DEFAULT 0,
    tags         jsonb       NOT NULL DEFAULT '{}',
    creator      text        NOT NULL DEFAULT '',
    next_version integer     NOT NULL DEFAULT 1,   -- numbers are never reused
    revision     integer     NOT NULL DEFAULT 1,   -- bumped by every change: the etag
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, model_id)
);
CREATE INDEX registered_models_by_update ON registered_models (project, update_time DESC, model_id DESC);

CREATE TABLE model_versions (
    project         text        NOT NULL,
    model_id        text        NOT NULL,
    version         integer     NOT NULL,
    description     text        NOT NULL DEFAULT '',
    task            smallint    NOT NULL,
    label_names     jsonb       NOT NULL DEFAULT '[]',
    artifacts       jsonb       NOT NULL,            -- uri, files, size_bytes, merged_uri, model_card_uri
    is_adapter_only boolean     NOT NULL,
    base_model      text        NOT NULL,
    lineage         jsonb       NOT NULL,            -- tuning job snapshot, dataset version, evaluations
    metrics         jsonb       NOT NULL DEFAULT '{}',
    model_card      text        NOT NULL DEFAULT '',
    card_time       timestamptz NOT NULL DEFAULT now(),
    examples        jsonb       NOT NULL DEFAULT '[]', -- inputs exports are checked on
    state           smallint    NOT NULL DEFAULT 1,
    tags            jsonb       NOT NULL DEFAULT '{}',
    creator         text        NOT NULL DEFAULT '',
    request_id      text        NOT NULL DEFAULT '',
    revision        integer     NOT NULL DEFAULT 1,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    delete_time     timestamptz,
    PRIMARY KEY (project, model_id, version),
    FOREIGN KEY (project, model_id) REFERENCES registered_models ON DELETE CASCADE
);
CREATE INDEX model_versions_by_job ON model_versions (project, (lineage ->> 'tuning_job'));
CREATE UNIQUE INDEX model_versions_request ON model_versions (project, model_id, request_id)
    WHERE request_id <> '';

CREATE TABLE aliases (
    project  text    NOT NULL,
    model_id text    NOT NULL,
    alias    text    NOT NULL,
    version  integer NOT NULL,
    PRIMARY KEY (project, model_id, alias),
    -- A version with an alias cannot disappear from under it.
    FOREIGN KEY (project, model_id, version) REFERENCES model_versions ON DELETE RESTRICT
);

-- Append-only: who pointed which alias where, when; RollbackAlias reads it.
CREATE TABLE alias_history (
    project          text        NOT NULL,
    model_id         text        NOT NULL,
    sequence         bigserial,
    alias            text        NOT NULL,
    action           smallint    NOT NULL,        -- AliasAction
    version          integer,                     -- after the change; NULL once deleted
    previous_version integer,
    reason           text        NOT NULL DEFAULT '',
    actor            text        NOT NULL DEFAULT '',
    time             timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (project, model_id, sequence),
    FOREIGN KEY (project, model_id) REFERENCES registered_models ON DELETE CASCADE
);

CREATE TABLE model_exports (
    project      text        NOT NULL,
    model_id     text        NOT NULL,
    version      integer     NOT NULL,
    export_id    text        NOT NULL,
    dtype        smallint    NOT NULL DEFAULT 0,
    state        smallint    NOT NULL,            -- JobState
    uri          text        NOT NULL DEFAULT '',
    size_bytes   bigint      NOT NULL DEFAULT 0,
    failure      jsonb,
    verification jsonb,
    create_time  timestamptz NOT NULL DEFAULT now(),
    end_time     timestamptz,
    PRIMARY KEY (project, model_id, version, export_id),
    FOREIGN KEY (project, model_id, version) REFERENCES model_versions ON DELETE CASCADE
);
-- One live export per version and dtype: asking again returns it.
CREATE UNIQUE INDEX model_exports_live ON model_exports (project, model_id, version, dtype)
    WHERE state IN (1, 2, 3, 4);
