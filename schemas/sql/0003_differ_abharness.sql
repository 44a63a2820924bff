-- Issue 4: proposals (differ) and the A/B harness.

-- The pl.clusters event a deployment answers (its outbox id): a replayed or duplicated event
-- finds its deployment and proposes nothing new, even after that deployment ended.
ALTER TABLE prompt_deployments
    ADD COLUMN source_event_id bigint,
    -- the traces the differ showed the LLM: the A/B held-out set leaves them out (architecture §7)
    ADD COLUMN shown_trace_ids text[] NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX prompt_deployments_source_event ON prompt_deployments (source_event_id)
    WHERE source_event_id IS NOT NULL;
-- The harness looks for orphaned A/B runs by status.
CREATE INDEX prompt_deployments_running ON prompt_deployments (status, updated_at)
    WHERE status = 'ab_running';

-- Held-out set sizes (architecture §7), per project like the decision thresholds.
ALTER TABLE projects
    ADD COLUMN ab_holdout_size integer NOT NULL DEFAULT 80 CHECK (ab_holdout_size BETWEEN 1 AND 10000),
    ADD COLUMN ab_guardrail_size integer NOT NULL DEFAULT 40 CHECK (ab_guardrail_size BETWEEN 0 AND 10000);

-- Cluster members by trace, for the differ's and harness's joins with traces.
CREATE INDEX traces_prompt_name ON traces (project_id, prompt_name, created_at DESC);

CREATE OR REPLACE FUNCTION pl_project_json(p projects) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.name, p.prompt_autoship_enabled, p.auto_rollback_enabled,
        p.cluster_min_size, p.ab_min_delta, p.ab_alpha, p.ab_guardrail_tolerance,
        p.ab_holdout_size, p.ab_guardrail_size,
        pl_ts(p.created_at) AS created_at, pl_ts(p.updated_at) AS updated_at,
        pl_ts(p.archived_at) AS archived_at) x $$;
