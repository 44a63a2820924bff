-- A regression is "worse than what it replaced, on live traffic", decided by a
-- sequential test with a stated error rate; canary rollout; the A/B guardrail as a
-- non-inferiority test.

-- Project settings. regression_cusum_h and regression_p1_drop belonged to the retired CUSUM.
ALTER TABLE projects
    DROP COLUMN regression_p1_drop,
    DROP COLUMN regression_cusum_h,
    -- P(a version no worse than the one it replaced is ever rolled back), over any horizon
    ADD COLUMN regression_alpha double precision NOT NULL DEFAULT 0.01
        CHECK (regression_alpha > 0 AND regression_alpha <= 0.2),
    -- a drop of the live pass rate smaller than this is not a regression
    ADD COLUMN regression_tolerance double precision NOT NULL DEFAULT 0.02
        CHECK (regression_tolerance >= 0 AND regression_tolerance <= 0.5),
    -- how many of the replaced version's newest live traces before the ship form the baseline
    ADD COLUMN regression_baseline_size integer NOT NULL DEFAULT 5000
        CHECK (regression_baseline_size BETWEEN 10 AND 1000000),
    -- share of routing keys served the new version at ship; 0 ships to everyone at once
    ADD COLUMN ship_canary_pct integer NOT NULL DEFAULT 0
        CHECK (ship_canary_pct BETWEEN 0 AND 99),
    -- traces of the new version the canary needs before it can be promoted to 100 %
    ADD COLUMN ship_canary_min_samples integer NOT NULL DEFAULT 500
        CHECK (ship_canary_min_samples BETWEEN 10 AND 1000000);

-- The guardrail gate is a non-inferiority test now: a margin of 0.02 cannot be shown on 40
-- items even by a candidate identical to the baseline. Projects still on the old defaults get
-- the new ones; values an owner chose are kept.
ALTER TABLE projects
    ALTER COLUMN ab_guardrail_tolerance SET DEFAULT 0.03,
    ALTER COLUMN ab_guardrail_size SET DEFAULT 120;
UPDATE projects SET ab_guardrail_tolerance = 0.03 WHERE ab_guardrail_tolerance = 0.02;
UPDATE projects SET ab_guardrail_size = 120 WHERE ab_guardrail_size = 40;

CREATE OR REPLACE FUNCTION pl_project_json(p projects) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.name, p.prompt_autoship_enabled, p.auto_rollback_enabled,
        p.cluster_min_size, p.ab_min_delta, p.ab_alpha, p.ab_guardrail_tolerance,
        p.ab_holdout_size, p.ab_guardrail_size, p.regression_min_samples,
        p.regression_alpha, p.regression_tolerance, p.regression_baseline_size,
        p.regression_window, p.ship_canary_pct, p.ship_canary_min_samples,
        pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at,
        pl_ts(p.archived_at) AS archived_at) x $$;

-- Deployments: the share of traffic the shipped version gets (0 before ship and after a
-- rollback, the canary share while a canary runs, 100 once fully rolled out) and the
-- monitor's report (baseline, interval, statistic, decision rule).
ALTER TABLE prompt_deployments
    ADD COLUMN rollout_pct integer NOT NULL DEFAULT 0 CHECK (rollout_pct BETWEEN 0 AND 100),
    ADD COLUMN monitor_report jsonb;
UPDATE prompt_deployments SET rollout_pct = 100
    WHERE status IN ('shipped', 'monitoring', 'regressed');

CREATE OR REPLACE FUNCTION pl_deployment_json(d prompt_deployments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        d.id, d.tenant_id, d.project_id, d.cluster_signature, d.status, d.current_prompt,
        d.proposed_prompt, d.rationale, d.ab_report, d.regression_metric,
        pl_ts(d.shipped_at) AS shipped_at, pl_ts(d.rolled_back_at) AS rolled_back_at,
        d.approved_by, d.rejection_reason, d.prompt_id, d.base_version_id,
        d.shipped_version_id, d.cluster_id, d.rollout_pct, d.monitor_report,
        pl_ts(d.created_at) AS created_at, pl_ts(d.updated_at) AS updated_at) x $$;

-- A canary in the registry: the deployment row's version is served to rollout_pct % of the
-- routing keys, stable_version_id to the others and to requests without a key.
ALTER TABLE environment_deployments
    ADD COLUMN rollout_pct integer NOT NULL DEFAULT 100 CHECK (rollout_pct BETWEEN 1 AND 100),
    ADD COLUMN stable_version_id uuid REFERENCES prompt_versions(id),
    ADD CONSTRAINT environment_deployments_canary
        CHECK ((rollout_pct = 100) = (stable_version_id IS NULL));

-- The bucket 0..99 of a routing key for a prompt: the first 32 bits of md5(prompt:key). Keyed
-- by the prompt too, so one user is not in every prompt's canary at once.
CREATE FUNCTION pl_route_bucket(prompt uuid, routing_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT (('x' || substr(md5(prompt::text || ':' || routing_key), 1, 8))::bit(32)::bigint
                  % 100)::integer $$;

-- The version a deployment row serves to a routing key (NULL: no key).
CREATE FUNCTION pl_routed_version(d environment_deployments, routing_key text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN d.rollout_pct = 100 THEN d.version_id
                      WHEN routing_key IS NOT NULL
                           AND pl_route_bucket(d.prompt_id, routing_key) < d.rollout_pct
                      THEN d.version_id
                      ELSE d.stable_version_id END $$;

CREATE OR REPLACE FUNCTION pl_env_deployment_json(d environment_deployments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        d.id, d.environment_id, d.prompt_id, d.version_id,
        (SELECT v.version FROM prompt_versions v
         WHERE v.id = d.version_id AND v.tenant_id = d.tenant_id) AS version,
        d.rollout_pct, d.stable_version_id,
        d.created_by, pl_ts(d.created_at) AS created_at) x $$;

-- The monitor's sequential test (common/regression.c), advanced in the transaction that
-- inserts its observations. The CUSUM state is dropped: deployments watched when this
-- migration runs start their new test from their next trace.
DROP TABLE monitor_state;
CREATE TABLE monitor_state (
    deployment_id    uuid PRIMARY KEY REFERENCES prompt_deployments(id),
    tenant_id        uuid NOT NULL REFERENCES tenants(id),
    alpha            double precision NOT NULL,
    tolerance        double precision NOT NULL,
    min_samples      integer NOT NULL,
    canary           boolean NOT NULL, -- baseline from concurrent traffic (time-uniform bound)
    canary_min_samples integer NOT NULL,
    base_n           bigint NOT NULL DEFAULT 0, -- baseline traces and their passes
    base_k           bigint NOT NULL DEFAULT 0,
    n                bigint NOT NULL DEFAULT 0, -- shipped version's traces and passes
    k                bigint NOT NULL DEFAULT 0,
    log_lr           double precision[] NOT NULL, -- log-likelihood ratio since ship, per alternative
    log_c            double precision[] NOT NULL, -- log of the restart points' weighted sum, per alternative
    regressed_at     timestamptz,
    regressed_n      bigint,           -- the evidence when the regression was decided: traces
    regressed_log_e  double precision, --   of the shipped version and the statistic
    promote_at       timestamptz, -- when the canary met its promotion rule
    rollback_refused boolean NOT NULL DEFAULT false, -- something newer was live: an owner decides
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Observations of both arms: the shipped version, and during a canary the replaced version
-- served concurrently (the baseline).
ALTER TABLE monitor_observations
    ADD COLUMN arm text NOT NULL DEFAULT 'shipped' CHECK (arm IN ('shipped', 'baseline'));

