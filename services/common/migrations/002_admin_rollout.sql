-- Admin keys (the admin API of the insights service) and the wizard's rollout gate.
ALTER TABLE api_keys ADD COLUMN is_admin boolean NOT NULL DEFAULT false;

-- One row (id = 1) when an admin has configured the rollout; no row means everyone
-- is allowed. Every service's auth step reads it (cached a few seconds), so a change
-- applies without a restart.
CREATE TABLE rollout (
    id              int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    -- Projects whose stable hash bucket (0..9999) is below this are allowed.
    percent_bp      int NOT NULL CHECK (percent_bp BETWEEN 0 AND 10000),
    -- Beta projects, allowed whatever the percentage.
    allowed_projects text[] NOT NULL DEFAULT '{}',
    -- Who to ask for access, quoted in the denial message.
    contact         text NOT NULL DEFAULT '',
    update_time     timestamptz NOT NULL DEFAULT now(),
    revision        bigint NOT NULL DEFAULT 1
);
