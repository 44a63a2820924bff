-- The runtime half of the control loop (architecture §7): policies that remediate failing
-- traces, the actions they take (with the HITL queue), and the kill switch.

-- A policy: when a trace of its project fails (trigger), take an action, behind two gates.
CREATE TABLE policies (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenants(id),
    project_id        uuid NOT NULL REFERENCES projects(id),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description       text NOT NULL DEFAULT '',
    status            text NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    -- eval_score: the trace fails an eval rule (rule_id, or any rule when NULL);
    -- failure_rate: the trace's failure cluster failed more than trigger_params.threshold of
    -- the project's traces over trigger_params.window_s seconds
    trigger_type      text NOT NULL CHECK (trigger_type IN ('eval_score', 'failure_rate')),
    trigger_params    jsonb NOT NULL DEFAULT '{}',
    rule_id           uuid REFERENCES eval_rules(id),
    action_type       text NOT NULL
                      CHECK (action_type IN ('retry', 'fallback_model', 'prompt_modification',
                                             'escalate', 'block')),
    action_params     jsonb NOT NULL DEFAULT '{}',
    rule_yaml         text, -- stored verbatim, for compatibility
    priority          integer NOT NULL DEFAULT 100 CHECK (priority BETWEEN 0 AND 10000),
    rollout_pct       integer NOT NULL DEFAULT 0 CHECK (rollout_pct BETWEEN 0 AND 100),
    dry_run           boolean NOT NULL DEFAULT true,
    max_retry_depth   integer NOT NULL DEFAULT 3 CHECK (max_retry_depth BETWEEN 1 AND 10),
    max_cascade_depth integer NOT NULL DEFAULT 5 CHECK (max_cascade_depth BETWEEN 1 AND 20),
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- The controller reads the active policies of a project in priority order; the list pages
-- by creation.
CREATE INDEX policies_match ON policies (project_id, priority, id) WHERE status = 'active';
CREATE INDEX policies_tenant ON policies (tenant_id, created_at DESC, id DESC);

CREATE FUNCTION pl_policy_json(p policies) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.project_id, p.name, p.description, p.status, p.trigger_type,
        p.trigger_params, p.rule_id, p.action_type, p.action_params, p.rule_yaml, p.priority,
        p.rollout_pct, p.dry_run, p.max_retry_depth, p.max_cascade_depth, p.created_by,
        pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at) x $$;

-- An action on a trace. Keyed on (trace, policy, attempt) so that a replayed or redelivered
-- failure never executes a remediation twice; actions taken through the API have no policy
-- and are keyed by their id alone. Every status change is a guarded compare-and-set with its
-- outbox event (pl.actions) and audit entry (common/action.c).
CREATE TABLE control_actions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL REFERENCES tenants(id),
    project_id        uuid NOT NULL REFERENCES projects(id),
    trace_id          text COLLATE "C" NOT NULL,
    policy_id         uuid REFERENCES policies(id),
    rule_id           uuid REFERENCES eval_rules(id),
    attempt           integer NOT NULL CHECK (attempt >= 1), -- the step on the trace
    action_type       text NOT NULL
                      CHECK (action_type IN ('retry', 'fallback_model', 'prompt_modification',
                                             'escalate', 'block')),
    status            text NOT NULL
                      CHECK (status IN ('pending', 'pending_approval', 'executed', 'failed',
                                        'dry_run')),
    payload           jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    escalation_reason text CHECK (escalation_reason IN ('cascade_depth_exhausted',
                                                        'retry_threshold_exceeded')),
    retry_count       integer NOT NULL DEFAULT 0,
    require_approval  boolean NOT NULL DEFAULT false,
    executed_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, trace_id, policy_id, attempt)
);
CREATE INDEX control_actions_trace ON control_actions (project_id, trace_id, attempt);
CREATE INDEX control_actions_pending ON control_actions (tenant_id, created_at, id)
    WHERE status = 'pending_approval';
CREATE INDEX control_actions_tenant ON control_actions (tenant_id, created_at DESC, id DESC);

CREATE FUNCTION pl_action_json(a control_actions) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        a.id, a.tenant_id, a.project_id, a.trace_id, a.policy_id, a.rule_id, a.action_type,
        a.status, a.payload, a.result, a.escalation_reason, a.retry_count, a.require_approval,
        pl_ts(a.executed_at) AS executed_at, pl_ts(a.created_at) AS created_at,
        pl_ts(a.updated_at) AS updated_at) x $$;

-- The kill switch, one per tenant: while active nothing executes, and what arrives is kept
-- as `pending` for later.
CREATE TABLE control_killswitch (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants(id),
    active     boolean NOT NULL DEFAULT false,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- An escalation left pending longer than this is rejected with reason `timeout`; 0: never.
ALTER TABLE projects
    ADD COLUMN hitl_timeout_s integer NOT NULL DEFAULT 0
        CHECK (hitl_timeout_s BETWEEN 0 AND 2592000);

CREATE OR REPLACE FUNCTION pl_project_json(p projects) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.name, p.prompt_autoship_enabled, p.auto_rollback_enabled,
        p.cluster_min_size, p.ab_min_delta, p.ab_alpha, p.ab_guardrail_tolerance,
        p.ab_holdout_size, p.ab_guardrail_size, p.regression_min_samples,
        p.regression_alpha, p.regression_tolerance, p.regression_baseline_size,
        p.regression_window, p.ship_canary_pct, p.ship_canary_min_samples, p.hitl_timeout_s,
        pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at,
        pl_ts(p.archived_at) AS archived_at) x $$;
