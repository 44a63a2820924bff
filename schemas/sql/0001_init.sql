-- promptloop schema, first wave: every table of architecture §4.
-- Every tenant-owned row carries tenant_id; every query filters by it.

CREATE TABLE tenants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan       text NOT NULL CHECK (plan IN ('starter', 'pro', 'team', 'enterprise')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants(id),
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prompt_autoship_enabled boolean NOT NULL DEFAULT false,
    auto_rollback_enabled   boolean NOT NULL DEFAULT true,
    cluster_min_size        integer NOT NULL DEFAULT 10 CHECK (cluster_min_size BETWEEN 2 AND 100000),
    -- A/B decision thresholds (architecture §7) and regression monitor settings (architecture §7).
    ab_min_delta            double precision NOT NULL DEFAULT 0.05,
    ab_alpha                double precision NOT NULL DEFAULT 0.05,
    ab_guardrail_tolerance  double precision NOT NULL DEFAULT 0.02,
    regression_min_samples  integer NOT NULL DEFAULT 30,
    regression_p1_drop      double precision NOT NULL DEFAULT 0.2,
    regression_cusum_h      double precision NOT NULL DEFAULT 4.0,
    archived_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX projects_tenant_created ON projects (tenant_id, created_at DESC, id);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    name       text NOT NULL DEFAULT '',
    role       text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    key_hash   text NOT NULL UNIQUE, -- hex SHA-256 of the whole key; the key itself is never stored
    prefix     text NOT NULL,        -- first characters, to recognise a key in listings
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Prompt registry.
CREATE TABLE prompts (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    project_id uuid NOT NULL REFERENCES projects(id),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE prompt_versions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    prompt_id     uuid NOT NULL REFERENCES prompts(id),
    version       integer NOT NULL CHECK (version >= 1),
    manifest      jsonb NOT NULL,
    version_alias text CHECK (version_alias ~ '^v'),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (prompt_id, version),
    UNIQUE (prompt_id, version_alias)
);

CREATE TABLE prompt_tags (
    prompt_id  uuid NOT NULL REFERENCES prompts(id),
    tag        text NOT NULL,
    version_id uuid NOT NULL REFERENCES prompt_versions(id),
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prompt_id, tag)
);

CREATE TABLE environments (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    project_id uuid NOT NULL REFERENCES projects(id),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

-- Append-only: the newest row per (environment, prompt) is the live version.
CREATE TABLE environment_deployments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants(id),
    environment_id uuid NOT NULL REFERENCES environments(id),
    prompt_id      uuid NOT NULL REFERENCES prompts(id),
    version_id     uuid NOT NULL REFERENCES prompt_versions(id),
    seq            bigserial NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL
);
CREATE INDEX environment_deployments_live ON environment_deployments (environment_id, prompt_id, seq DESC);

-- Traces and failure detection.
CREATE TABLE traces (
    tenant_id         uuid NOT NULL REFERENCES tenants(id),
    project_id        uuid NOT NULL REFERENCES projects(id),
    id                text NOT NULL,
    prompt_id         uuid,
    prompt_version_id uuid,
    name              text,
    model             text,
    input             jsonb,
    output            text,
    error             text,
    spans             jsonb,
    eval              jsonb,
    tags              jsonb,
    metadata          jsonb,
    latency_ms        integer,
    cost              double precision,
    created_at        timestamptz NOT NULL DEFAULT now(),
    received_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, id)
);
CREATE INDEX traces_version ON traces (prompt_version_id, created_at);

CREATE TABLE eval_rules (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants(id),
    project_id     uuid NOT NULL REFERENCES projects(id),
    metric_name    text NOT NULL,
    evaluator_type text NOT NULL,
    config         jsonb NOT NULL DEFAULT '{}',
    enabled        boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX eval_rules_project ON eval_rules (project_id) WHERE enabled;

CREATE TABLE failure_clusters (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants(id),
    project_id       uuid NOT NULL REFERENCES projects(id),
    signature        text NOT NULL,
    template         text NOT NULL,
    error_type       text NOT NULL,
    count            bigint NOT NULL DEFAULT 0,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'open',
    grouping_version integer NOT NULL,
    alias_of         text, -- the signature this one had under an older grouping version
    UNIQUE (project_id, signature)
);
CREATE INDEX failure_clusters_recent ON failure_clusters (tenant_id, project_id, last_seen DESC);

CREATE TABLE cluster_members (
    cluster_id uuid NOT NULL REFERENCES failure_clusters(id),
    trace_id   text NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    shown_to_differ boolean NOT NULL DEFAULT false,
    PRIMARY KEY (cluster_id, trace_id)
);

-- Closed-loop deployments: the seed's PromptDeployment plus registry and cluster links.
CREATE TABLE prompt_deployments (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants(id),
    project_id         uuid NOT NULL REFERENCES projects(id),
    cluster_signature  text NOT NULL,
    status             text NOT NULL CHECK (status IN ('proposed', 'ab_running', 'ab_passed',
                            'ab_failed', 'shipped', 'monitoring', 'regressed', 'rolled_back',
                            'rejected')),
    current_prompt     text NOT NULL,
    proposed_prompt    text NOT NULL,
    rationale          text NOT NULL DEFAULT '',
    ab_report          jsonb,
    regression_metric  double precision,
    shipped_at         timestamptz,
    rolled_back_at     timestamptz,
    approved_by        text,
    rejection_reason   text NOT NULL DEFAULT '',
    prompt_id          uuid REFERENCES prompts(id),
    base_version_id    uuid REFERENCES prompt_versions(id),
    shipped_version_id uuid REFERENCES prompt_versions(id),
    cluster_id         uuid REFERENCES failure_clusters(id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- One live (non-terminal) proposal per cluster, whatever the number of differ replicas.
CREATE UNIQUE INDEX prompt_deployments_one_open ON prompt_deployments (project_id, cluster_signature)
    WHERE status NOT IN ('ab_failed', 'rejected', 'rolled_back');
CREATE INDEX prompt_deployments_list ON prompt_deployments (tenant_id, created_at DESC, id DESC);
CREATE INDEX prompt_deployments_status ON prompt_deployments (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX prompt_deployments_project ON prompt_deployments (tenant_id, project_id, created_at DESC, id DESC);

-- Transactional outbox: written with the change, published by the relay.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    topic          text NOT NULL,
    key            text NOT NULL,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    attempted_at   timestamptz, -- set (and committed) before the first produce attempt
    attempt_offset bigint,      -- the partition's high watermark at that moment
    attempt_partition integer,
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Tamper-evident audit log: each entry hashes the previous one of its tenant.
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants(id),
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL DEFAULT now(),
    prev_hash text NOT NULL,
    hash      text NOT NULL UNIQUE
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- ISO-8601 UTC with microseconds, the one timestamp format of the API.
CREATE FUNCTION pl_ts(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- The seed's PromptDeployment object, built in one place. row_to_json writes compact JSON
-- (json_build_object would put spaces around every colon).
CREATE FUNCTION pl_deployment_json(d prompt_deployments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        d.id, d.tenant_id, d.project_id, d.cluster_signature, d.status, d.current_prompt,
        d.proposed_prompt, d.rationale, d.ab_report, d.regression_metric,
        pl_ts(d.shipped_at) AS shipped_at, pl_ts(d.rolled_back_at) AS rolled_back_at,
        d.approved_by, d.rejection_reason, d.prompt_id, d.base_version_id,
        d.shipped_version_id, d.cluster_id,
        pl_ts(d.created_at) AS created_at, pl_ts(d.updated_at) AS updated_at) x $$;

CREATE FUNCTION pl_project_json(p projects) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.name, p.prompt_autoship_enabled, p.auto_rollback_enabled,
        p.cluster_min_size, pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at,
        pl_ts(p.archived_at) AS archived_at) x $$;
