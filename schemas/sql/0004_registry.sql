-- Registry API (prompts, versions, tags, environments) and its two compatible read surfaces:
-- Adaline's GET /v2/deployments and TrueFoundry's /api/ml/v1/prompt-versions.
-- The JSON objects these endpoints answer with are built here, one function per shape; only
-- the small envelope of the Adaline deployment is written inline in the api's hot query.

-- Lists, newest first, per tenant and per project.
CREATE INDEX prompts_tenant_created ON prompts (tenant_id, created_at DESC, id DESC);
CREATE INDEX prompts_project_created ON prompts (tenant_id, project_id, created_at DESC, id DESC);
CREATE INDEX prompt_versions_tenant_created
    ON prompt_versions (tenant_id, created_at DESC, version DESC, id DESC);
-- The tags of one version (every listed version carries its tags).
CREATE INDEX prompt_tags_version ON prompt_tags (version_id);
-- An environment's history over all its prompts (environment_deployments_live covers one).
CREATE INDEX environment_deployments_history ON environment_deployments (environment_id, seq DESC);

-- snake_case to camelCase (max_tokens -> maxTokens); keys without '_' are left as they are.
CREATE FUNCTION pl_camel(k text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT string_agg(CASE WHEN i = 1 THEN w ELSE upper(left(w, 1)) || substr(w, 2) END,
                            '' ORDER BY i)
          FROM regexp_split_to_table(k, '_') WITH ORDINALITY AS s(w, i) $$;

-- The "prompt" snapshot of an Adaline deployment, from a stored (TrueFoundry-style) manifest.
-- The API validates manifests on the way in, but a version made by another path (a shipped
-- proposal, pl-admin) must never turn this hot read into a 500: every member's JSON type is
-- checked before use (CASE, which fixes the evaluation order), and what does not fit is left
-- out. row_to_json keeps the output compact (json_build_object spaces every colon). Declared
-- IMMUTABLE (a generated column needs it) although row_to_json and json_agg are only STABLE:
-- they format no timestamps here, only text, numbers, booleans and JSON.
CREATE FUNCTION pl_adaline_prompt(m jsonb) RETURNS json
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        (SELECT row_to_json(c) FROM (SELECT
            coalesce(mc->>'provider', '') AS "providerName",
            coalesce(mc->>'model', '') AS model,
            coalesce((SELECT jsonb_object_agg(pl_camel(key), value)
                      FROM jsonb_each(CASE jsonb_typeof(mc->'parameters')
                                      WHEN 'object' THEN mc->'parameters' END)),
                     '{}') AS settings) c) AS config,
        coalesce((SELECT json_agg((SELECT row_to_json(r) FROM (SELECT
                          msg->>'role' AS role,
                          (SELECT json_agg(row_to_json(p)) FROM (SELECT 'text'::text AS modality,
                               coalesce(msg->>'content', '') AS value) p) AS content) r)
                      ORDER BY i)
                  FROM jsonb_array_elements(CASE jsonb_typeof(m->'messages')
                                            WHEN 'array' THEN m->'messages' END)
                       WITH ORDINALITY AS e(msg, i)
                  WHERE jsonb_typeof(msg) = 'object'), '[]') AS messages,
        coalesce((SELECT json_agg((SELECT row_to_json(r) FROM (SELECT 'function'::text AS type,
                          (SELECT row_to_json(d) FROM (SELECT
                              (SELECT row_to_json(s) FROM (SELECT
                                  coalesce(f->>'name', '') AS name,
                                  coalesce(f->>'description', '') AS description,
                                  CASE jsonb_typeof(f->'parameters') WHEN 'object'
                                       THEN f->'parameters' ELSE '{}' END AS parameters,
                                  CASE jsonb_typeof(f->'strict') WHEN 'boolean'
                                       THEN (f->'strict')::boolean ELSE false END AS strict) s)
                              AS schema) d) AS definition) r)
                      ORDER BY i)
                  FROM (SELECT t->'function' AS f, i
                        FROM jsonb_array_elements(CASE jsonb_typeof(m->'tools')
                                                  WHEN 'array' THEN m->'tools' END)
                             WITH ORDINALITY AS e(t, i)
                        WHERE jsonb_typeof(t->'function') = 'object') tf), '[]') AS tools,
        coalesce((SELECT json_agg((SELECT row_to_json(r) FROM (SELECT key AS name,
                          'text'::text AS modality) r) ORDER BY key)
                  FROM jsonb_object_keys(CASE jsonb_typeof(m->'variables')
                                         WHEN 'object' THEN m->'variables' END) AS key),
                 '[]') AS variables
        FROM (SELECT CASE jsonb_typeof(m->'model_configuration')
                     WHEN 'object' THEN m->'model_configuration' END AS mc) cfg) x $$;

-- Versions are immutable, so their Adaline snapshot is computed once, when the row is
-- written (by whatever path: the API, a shipped proposal, pl-admin), and never on the hot
-- read (GET /v2/deployments), where planning and running the function per request cost
-- three times the rest of the query. A change to pl_adaline_prompt must drop and re-add
-- this column in its migration.
ALTER TABLE prompt_versions
    ADD COLUMN adaline_prompt json GENERATED ALWAYS AS (pl_adaline_prompt(manifest)) STORED;

CREATE FUNCTION pl_prompt_json(p prompts) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        p.id, p.tenant_id, p.project_id, p.name, lv.version AS latest_version,
        lv.id AS latest_version_id, pl_ts(p.created_at) AS created_at
        FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT v.id, v.version FROM prompt_versions v
              WHERE v.prompt_id = p.id AND v.tenant_id = p.tenant_id
              ORDER BY v.version DESC LIMIT 1) lv ON true) x $$;

CREATE FUNCTION pl_prompt_version_json(v prompt_versions) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        v.id, v.prompt_id, v.version, v.version_alias, v.manifest, v.created_by,
        pl_ts(v.created_at) AS created_at) x $$;

CREATE FUNCTION pl_env_deployment_json(d environment_deployments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        d.id, d.environment_id, d.prompt_id, d.version_id,
        (SELECT v.version FROM prompt_versions v
         WHERE v.id = d.version_id AND v.tenant_id = d.tenant_id) AS version,
        d.created_by, pl_ts(d.created_at) AS created_at) x $$;

-- An environment with what is live in it: the newest deployment row of each prompt.
CREATE FUNCTION pl_environment_json(e environments) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        e.id, e.project_id, e.name, pl_ts(e.created_at) AS created_at,
        coalesce((SELECT json_agg(row_to_json(l) ORDER BY l.prompt_id) FROM (
            SELECT DISTINCT ON (d.prompt_id) d.prompt_id, d.version_id, v.version,
                   d.id AS deployment_id, pl_ts(d.created_at) AS created_at
            FROM environment_deployments d JOIN prompt_versions v ON v.id = d.version_id
            WHERE d.environment_id = e.id AND d.tenant_id = e.tenant_id
            ORDER BY d.prompt_id, d.seq DESC) l), '[]') AS live) x $$;

-- TrueFoundry's PromptVersion. The manifest is the stored one plus the members
-- that are derived, never taken from input. Creators "key:<id>" are users (shown by their
-- key's name); any other ("system:autoship", tools) is a service account.
CREATE FUNCTION pl_tf_version_json(v prompt_versions, tenant_name text, project_name text,
                                   prompt_name text, project uuid) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT row_to_json(x) FROM (SELECT
        v.id,
        'chat_prompt:' || tenant_name || '/' || project_name || '/' || prompt_name || ':'
            || v.version AS fqn,
        v.prompt_id, project AS ml_repo_id,
        v.manifest || jsonb_build_object('name', prompt_name, 'ml_repo', project_name,
                                         'version', v.version, 'version_alias', v.version_alias,
                                         'type', 'chat_prompt') AS manifest,
        coalesce((SELECT json_agg(t.tag ORDER BY t.tag) FROM prompt_tags t
                  WHERE t.version_id = v.id AND t.tenant_id = v.tenant_id), '[]') AS tags,
        pl_ts(v.created_at) AS created_at, pl_ts(v.created_at) AS updated_at,
        (SELECT row_to_json(s) FROM (SELECT
             CASE WHEN strpos(v.created_by, ':') > 0
                  THEN substr(v.created_by, strpos(v.created_by, ':') + 1)
                  ELSE v.created_by END AS "subjectId",
             CASE WHEN v.created_by LIKE 'key:%' THEN 'user' ELSE 'serviceaccount' END
                 AS "subjectType",
             v.created_by AS "subjectSlug",
             coalesce(nullif(k.name, ''), v.created_by) AS "subjectDisplayName"
             FROM (SELECT 1) one LEFT JOIN api_keys k
                  ON k.id = CASE WHEN v.created_by ~ '^key:[0-9a-f-]{36}$'
                                 THEN substr(v.created_by, 5)::uuid END
                 AND k.tenant_id = v.tenant_id) s) AS created_by_subject) x $$;
