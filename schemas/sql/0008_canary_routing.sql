-- Canary routing on the registry reads (architecture §7): GET /v1/environments answers, for each
-- prompt live in an environment, the version served to an optional routing key
-- (pl_routed_version of 0007: without a key, the stable version while a canary runs).

-- An environment with what is live in it: the newest deployment row of each prompt, as the
-- version it serves to routing_key (NULL: no key), with the row's rollout (rollout_pct,
-- stable_version_id, and canary_version_id: the row's own version while a canary runs, so a
-- keyless listing still shows which version the canary serves).
CREATE FUNCTION pl_environment_json(e environments, routing_key text) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        e.id, e.project_id, e.name, pl_ts(e.created_at) AS created_at,
        coalesce((SELECT json_agg(row_to_json(l) ORDER BY l.prompt_id) FROM (
            SELECT r.prompt_id, r.routed_version_id AS version_id, v.version,
                   r.deployment_id, r.created_at, r.rollout_pct, r.stable_version_id,
                   r.canary_version_id
            FROM (SELECT DISTINCT ON (d.prompt_id) d.prompt_id, d.tenant_id,
                         pl_routed_version(d, routing_key) AS routed_version_id,
                         d.id AS deployment_id, pl_ts(d.created_at) AS created_at,
                         d.rollout_pct, d.stable_version_id,
                         CASE WHEN d.rollout_pct < 100 THEN d.version_id END
                             AS canary_version_id
                  FROM environment_deployments d
                  WHERE d.environment_id = e.id AND d.tenant_id = e.tenant_id
                  ORDER BY d.prompt_id, d.seq DESC) r
            JOIN prompt_versions v ON v.id = r.routed_version_id
                 AND v.tenant_id = r.tenant_id) l), '[]') AS live) x $$;

-- The keyless form keeps its callers and answers what a request without a key is served.
CREATE OR REPLACE FUNCTION pl_environment_json(e environments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT pl_environment_json(e, NULL::text) $$;
