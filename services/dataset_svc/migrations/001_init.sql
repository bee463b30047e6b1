-- Datasets and their immutable versions. Bytes live in object storage under
-- `datasets/projects/{project}/datasets/{dataset}/objects/{upload_id}/`.
CREATE TABLE datasets (
    project       text        NOT NULL,
    dataset_id    text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    description   text        NOT NULL DEFAULT '',
    labels        jsonb       NOT NULL DEFAULT '{}',
    next_version  integer     NOT NULL DEFAULT 1,
    revision      integer     NOT NULL DEFAULT 1,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, dataset_id)
);
CREATE INDEX datasets_by_time ON datasets (project, create_time DESC, dataset_id DESC);

CREATE TABLE dataset_versions (
    project         text        NOT NULL,
    dataset_id      text        NOT NULL,
    version         integer     NOT NULL,
    object_prefix   text        NOT NULL,
    options         jsonb       NOT NULL,
    format          smallint    NOT NULL,
    task            smallint    NOT NULL,
    size_bytes      bigint      NOT NULL,
    stored_bytes    bigint      NOT NULL,
    sha256          text        NOT NULL,
    raw_key         text        NOT NULL,
    columns         text[]      NOT NULL,
    label_names     text[]      NOT NULL,
    splits          jsonb       NOT NULL,
    quality_report  jsonb       NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    creator         text        NOT NULL,
    PRIMARY KEY (project, dataset_id, version),
    FOREIGN KEY (project, dataset_id) REFERENCES datasets ON DELETE CASCADE
);

-- Object prefixes that no version row references: an upload in flight (until its
-- version row is written) or a deleted version (until its bytes are gone). Rows
-- left behind by a crashed process tell the janitor which prefixes to delete.
CREATE TABLE unreferenced_prefixes (
    object_prefix text        PRIMARY KEY,
    project       text        NOT NULL,
    reason        text        NOT NULL CHECK (reason IN ('upload', 'delete')),
    since         timestamptz NOT NULL DEFAULT now()
);
