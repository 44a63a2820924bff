-- The detector's failing traces that the controller must see (pl.failures): one row per trace,
-- so that a replayed or re-stored batch publishes a failure once. Only traces of projects with
-- an active, rolled-out policy are kept; the others have nothing to remediate them.
CREATE TABLE control_failures (
    project_id uuid NOT NULL REFERENCES projects(id),
    trace_id   text NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, trace_id)
);

-- A dry run records what a policy would have done; it is not a step of the loop, so it takes
-- attempt 0 and never holds the key of a live step of the same policy.
ALTER TABLE control_actions DROP CONSTRAINT control_actions_attempt_check,
    ADD CONSTRAINT control_actions_attempt_check CHECK (attempt >= 0);
