-- Trace ingest and failure detection (issue 3).

-- Trace ids the api has accepted, per project: a repeated id is answered "duplicate" without
-- reaching Kafka again. Written in the same transaction that waits for the broker's ack.
CREATE TABLE ingest_ids (
    project_id  uuid NOT NULL REFERENCES projects(id),
    trace_id    text NOT NULL,
    tenant_id   uuid NOT NULL REFERENCES tenants(id),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, trace_id)
);

ALTER TABLE traces
    ADD COLUMN external_id text,
    ADD COLUMN events jsonb,
    ADD COLUMN eval_scores jsonb,
    ADD COLUMN prompt_name text,
    ADD COLUMN prompt_version text;

-- The moment a cluster first reached its project's cluster_min_size: set once, so the
-- pl.clusters event is written exactly once whatever the replays.
ALTER TABLE failure_clusters ADD COLUMN threshold_reached_at timestamptz;

CREATE INDEX cluster_members_trace ON cluster_members (trace_id);
CREATE INDEX eval_rules_tenant ON eval_rules (tenant_id, created_at DESC, id DESC);

CREATE FUNCTION pl_eval_rule_json(r eval_rules) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        r.id, r.tenant_id, r.project_id, r.metric_name, r.evaluator_type, r.config, r.enabled,
        pl_ts(r.created_at) AS created_at, pl_ts(r.updated_at) AS updated_at) x $$;
