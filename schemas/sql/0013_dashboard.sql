-- What the dashboard needs beyond the API's objects: the triage status of a failure cluster,
-- when each failure joined its cluster (the 24 h trend), the reads of its lists and the
-- users a trusted auth proxy signs in.

-- Owners triage clusters: new (default), acknowledged, resolved; every change is audited.
UPDATE failure_clusters SET status = 'new' WHERE status = 'open';
ALTER TABLE failure_clusters
    ALTER COLUMN status SET DEFAULT 'new',
    ADD CONSTRAINT failure_clusters_status CHECK (status IN ('new', 'acknowledged', 'resolved'));
CREATE INDEX failure_clusters_by_status ON failure_clusters (tenant_id, status, last_seen DESC);

-- A member's arrival time: the trend is a count per hour over an index range.
ALTER TABLE cluster_members ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX cluster_members_recent ON cluster_members (cluster_id, added_at);
CREATE INDEX prompt_deployments_cluster ON prompt_deployments (cluster_id, created_at DESC);
-- The improvements page filters a project by status (and counts the matches).
CREATE INDEX prompt_deployments_project_status
    ON prompt_deployments (tenant_id, project_id, status, created_at DESC, id DESC);

-- The live-metric chart reads a deployment's observations in time order.
CREATE INDEX monitor_observations_time ON monitor_observations (deployment_id, observed_at);

-- The regression banner: what regressed or was rolled back lately, per tenant.
CREATE INDEX prompt_deployments_alerts ON prompt_deployments (tenant_id, updated_at DESC)
    WHERE status IN ('regressed', 'rolled_back');

-- The audit page filters by target, and a deployment's chart reads its rollout changes.
CREATE INDEX audit_log_target ON audit_log (tenant_id, target, id);

-- Dashboard users signed in by a trusted auth proxy (oauth2-proxy's X-Forwarded-User, ...):
-- the proxy vouches for the name, this table gives it a tenant and a role.
CREATE TABLE ui_users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    role        text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

-- A session belongs to a key or to a user, never both.
ALTER TABLE ui_sessions
    ALTER COLUMN key_id DROP NOT NULL,
    ADD COLUMN user_id uuid REFERENCES ui_users(id),
    ADD CONSTRAINT ui_sessions_one_principal CHECK ((key_id IS NULL) <> (user_id IS NULL));
