-- Identity and audit, shared by every service (schema iam, owned by services/common).
CREATE TABLE projects (
    project_id   text PRIMARY KEY CHECK (project_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    display_name text NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL DEFAULT now()
);

-- Only a hash of each key is kept; the plaintext is shown once at creation.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    key_sha256  text NOT NULL UNIQUE,
    project_id  text NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    create_time timestamptz NOT NULL DEFAULT now(),
    revoke_time timestamptz
);
CREATE INDEX api_keys_project_idx ON api_keys (project_id);

CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    time     timestamptz NOT NULL DEFAULT now(),
    project  text,
    key_id   text,
    service  text NOT NULL DEFAULT '',
    action   text NOT NULL,
    resource text NOT NULL DEFAULT '',
    details  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_project_time_idx ON audit_log (project, time);
