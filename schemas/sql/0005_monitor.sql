-- Issue 5: the regression monitor (architecture §7).

-- Every live trace of a shipped version the monitor scored, once: replays insert nothing, so
-- the statistics never count a trace twice. seq orders the rolling window.
CREATE TABLE monitor_observations (
    deployment_id uuid NOT NULL REFERENCES prompt_deployments(id),
    trace_id      text NOT NULL,
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    passed        boolean NOT NULL,
    seq           bigserial NOT NULL,
    observed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, trace_id)
);
CREATE INDEX monitor_observations_recent ON monitor_observations (deployment_id, seq DESC);

-- The Bernoulli CUSUM of a monitored deployment, advanced in the transaction that inserts its
-- new observations (so a restart continues from exactly what was committed).
CREATE TABLE monitor_state (
    deployment_id uuid PRIMARY KEY REFERENCES prompt_deployments(id),
    tenant_id     uuid NOT NULL REFERENCES tenants(id),
    p0            double precision NOT NULL, -- in control: the A/B candidate pass rate
    p1            double precision NOT NULL, -- out of control: p0 - regression_p1_drop
    h             double precision NOT NULL,
    min_samples   integer NOT NULL,
    s             double precision NOT NULL DEFAULT 0,
    n             bigint NOT NULL DEFAULT 0,
    passed        bigint NOT NULL DEFAULT 0,
    alarmed_at    timestamptz,
    rollback_refused boolean NOT NULL DEFAULT false, -- something newer was live: an owner decides
    updated_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE projects
    ADD COLUMN regression_window integer NOT NULL DEFAULT 100
        CHECK (regression_window BETWEEN 10 AND 100000);

-- The monitor looks up deployments by status.
CREATE INDEX prompt_deployments_watch ON prompt_deployments (status)
    WHERE status IN ('shipped', 'monitoring', 'regressed');

CREATE OR REPLACE FUNCTION pl_project_json(p projects) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.name, p.prompt_autoship_enabled, p.auto_rollback_enabled,
        p.cluster_min_size, p.ab_min_delta, p.ab_alpha, p.ab_guardrail_tolerance,
        p.ab_holdout_size, p.ab_guardrail_size, p.regression_min_samples,
        p.regression_p1_drop, p.regression_cusum_h, p.regression_window,
        pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at,
        pl_ts(p.archived_at) AS archived_at) x $$;
