/* Projects: create, read, update with their settings. */
#include "project_store.h"

#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pl_project_store_list(PGconn *conn, const char *tenant_id, long long limit, long long offset,
                            struct pl_pg_error *err)
{
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[3] = {tenant_id, lim, off};
    PGresult *res = pl_pg_query(conn,
                                "SELECT coalesce(string_agg(pl_project_json(p)::text, ',' ORDER BY "
                                "p.created_at DESC, p.id DESC),"
                                " ''), (SELECT count(*) FROM projects WHERE tenant_id = $1"
                                " ) FROM (SELECT * FROM projects WHERE tenant_id = $1"
                                "     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3) p",
                                3, params, err);
    if (!res)
        return NULL;
    char *json = pl_list_envelope(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), limit, offset);
    PQclear(res);
    return json;
}

int pl_project_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                         struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    return pl_pg_query_text(
        conn, "SELECT pl_project_json(p)::text FROM projects p WHERE id = $1 AND tenant_id = $2", 2,
        params, json, err);
}

int pl_project_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                            const char *settings_json, char **json, struct pl_pg_error *err)
{
    const char *params[2] = {tenant_id, settings_json};
    return pl_audit_write(
        conn,
        "WITH s AS (SELECT $2::jsonb AS j),"
        /* the coalesce defaults repeat the column defaults of 0001/0003/0005/0007/0009 */
        " p AS (INSERT INTO projects (tenant_id, name, prompt_autoship_enabled,"
        "   auto_rollback_enabled, cluster_min_size, ab_min_delta, ab_alpha,"
        "   ab_guardrail_tolerance, ab_holdout_size, ab_guardrail_size, regression_min_samples,"
        "   regression_alpha, regression_tolerance, regression_baseline_size,"
        "   regression_window, ship_canary_pct, ship_canary_min_samples, hitl_timeout_s)"
        "   SELECT $1, j->>'name', coalesce((j->>'prompt_autoship_enabled')::boolean, false),"
        "     coalesce((j->>'auto_rollback_enabled')::boolean, true),"
        "     coalesce((j->>'cluster_min_size')::int, 10),"
        "     coalesce((j->>'ab_min_delta')::float8, 0.05),"
        "     coalesce((j->>'ab_alpha')::float8, 0.05),"
        "     coalesce((j->>'ab_guardrail_tolerance')::float8, 0.03),"
        "     coalesce((j->>'ab_holdout_size')::int, 80),"
        "     coalesce((j->>'ab_guardrail_size')::int, 120),"
        "     coalesce((j->>'regression_min_samples')::int, 30),"
        "     coalesce((j->>'regression_alpha')::float8, 0.01),"
        "     coalesce((j->>'regression_tolerance')::float8, 0.02),"
        "     coalesce((j->>'regression_baseline_size')::int, 5000),"
        "     coalesce((j->>'regression_window')::int, 100),"
        "     coalesce((j->>'ship_canary_pct')::int, 0),"
        "     coalesce((j->>'ship_canary_min_samples')::int, 500),"
        "     coalesce((j->>'hitl_timeout_s')::int, 0)"
        "   FROM s RETURNING *),"
        " e AS (INSERT INTO environments (tenant_id, project_id, name)"
        "   SELECT tenant_id, id, 'production' FROM p)"
        " SELECT p.id, pl_project_json(p)::text FROM p",
        2, params, tenant_id, actor, "project.create", settings_json, 0, json, err);
}

int pl_project_store_update(PGconn *conn, const char *tenant_id, const char *id, const char *actor,
                            const char *patch_json, char **json, struct pl_pg_error *err)
{
    const char *params[3] = {id, tenant_id, patch_json};
    return pl_audit_write(
        conn,
        "UPDATE projects p SET name = coalesce($3::jsonb->>'name', p.name),"
        " prompt_autoship_enabled = coalesce(($3::jsonb->>'prompt_autoship_enabled')::boolean,"
        "   p.prompt_autoship_enabled),"
        " auto_rollback_enabled = coalesce(($3::jsonb->>'auto_rollback_enabled')::boolean,"
        "   p.auto_rollback_enabled),"
        " cluster_min_size = coalesce(($3::jsonb->>'cluster_min_size')::int, p.cluster_min_size),"
        " ab_min_delta = coalesce(($3::jsonb->>'ab_min_delta')::float8, p.ab_min_delta),"
        " ab_alpha = coalesce(($3::jsonb->>'ab_alpha')::float8, p.ab_alpha),"
        " ab_guardrail_tolerance = coalesce(($3::jsonb->>'ab_guardrail_tolerance')::float8,"
        "   p.ab_guardrail_tolerance),"
        " ab_holdout_size = coalesce(($3::jsonb->>'ab_holdout_size')::int, p.ab_holdout_size),"
        " ab_guardrail_size = coalesce(($3::jsonb->>'ab_guardrail_size')::int,"
        "   p.ab_guardrail_size),"
        " regression_min_samples = coalesce(($3::jsonb->>'regression_min_samples')::int,"
        "   p.regression_min_samples),"
        " regression_alpha = coalesce(($3::jsonb->>'regression_alpha')::float8,"
        "   p.regression_alpha),"
        " regression_tolerance = coalesce(($3::jsonb->>'regression_tolerance')::float8,"
        "   p.regression_tolerance),"
        " regression_baseline_size = coalesce(($3::jsonb->>'regression_baseline_size')::int,"
        "   p.regression_baseline_size),"
        " regression_window = coalesce(($3::jsonb->>'regression_window')::int,"
        "   p.regression_window),"
        " ship_canary_pct = coalesce(($3::jsonb->>'ship_canary_pct')::int, p.ship_canary_pct),"
        " ship_canary_min_samples = coalesce(($3::jsonb->>'ship_canary_min_samples')::int,"
        "   p.ship_canary_min_samples),"
        " hitl_timeout_s = coalesce(($3::jsonb->>'hitl_timeout_s')::int, p.hitl_timeout_s),"
        " updated_at = now()"
        " WHERE id = $1 AND tenant_id = $2 RETURNING p.id, pl_project_json(p)::text",
        3, params, tenant_id, actor, "project.update", patch_json, -2, json, err);
}
