/* Reads of prompt_deployments: lists, one, the post-ship series, the banners. */
#include "deploy_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The list for one combination of filters: spelled out per combination (rather than
 * "$2 IS NULL OR ...") so that each prepared statement keeps a plan on its own index, the
 * count included. Unused parameters are still typed ("IS NULL") for PQprepare. */
#define DEPLOY_LIST_SQL(where)                                                                     \
    "SELECT coalesce(string_agg(pl_deployment_json(p)::text, ',' ORDER BY p.created_at DESC,"      \
    " p.id DESC), ''), (SELECT count(*) FROM prompt_deployments WHERE " where ")"                  \
    " FROM (SELECT * FROM prompt_deployments WHERE " where                                         \
    " ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5) p"
#define DEPLOY_BY_STATUS   "status = $2"
#define DEPLOY_ANY_STATUS  "$2::text IS NULL"
#define DEPLOY_BY_PROJECT  "project_id = $3"
#define DEPLOY_ANY_PROJECT "$3::uuid IS NULL"

char *pl_deploy_store_list(PGconn *conn, const char *tenant_id, const char *status,
                           const char *project_id, long long limit, long long offset,
                           struct pl_pg_error *err)
{
    static const struct {
        const char *name, *sql;
    } variants[4] = {
        {"pl_deploy_list",
         DEPLOY_LIST_SQL("tenant_id = $1 AND " DEPLOY_ANY_STATUS " AND " DEPLOY_ANY_PROJECT)},
        {"pl_deploy_list_s",
         DEPLOY_LIST_SQL("tenant_id = $1 AND " DEPLOY_BY_STATUS " AND " DEPLOY_ANY_PROJECT)},
        {"pl_deploy_list_p",
         DEPLOY_LIST_SQL("tenant_id = $1 AND " DEPLOY_ANY_STATUS " AND " DEPLOY_BY_PROJECT)},
        {"pl_deploy_list_sp",
         DEPLOY_LIST_SQL("tenant_id = $1 AND " DEPLOY_BY_STATUS " AND " DEPLOY_BY_PROJECT)},
    };
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[5] = {tenant_id, status, project_id, lim, off};
    int v = (status ? 1 : 0) + (project_id ? 2 : 0);
    /* The page and the count come from the (tenant, [status|project], ...) indexes; the whole
     * body is built by the database in one round trip. */
    PGresult *res = pl_pg_query_prepared(conn, variants[v].name, variants[v].sql, 5, params, err);
    if (!res)
        return NULL;
    char *json = pl_list_envelope(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), limit, offset);
    PQclear(res);
    return json;
}

int pl_deploy_store_series(PGconn *conn, const char *tenant_id, const char *id, char **json,
                           struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    /* up to 60 buckets of equal width over the shipped version's observations */
    return pl_pg_query_text_prepared(
        conn, "pl_deploy_series",
        "WITH o AS (SELECT observed_at, passed FROM monitor_observations"
        "   WHERE deployment_id = $1 AND arm = 'shipped'),"
        " w AS (SELECT min(observed_at) AS lo,"
        "   greatest(extract(epoch FROM max(observed_at) - min(observed_at)) / 60, 1) AS width"
        "   FROM o),"
        " b AS (SELECT least(floor(extract(epoch FROM o.observed_at - w.lo) / w.width), 59)::int"
        "   AS k, count(*) AS n, count(*) FILTER (WHERE o.passed) AS p FROM o, w GROUP BY 1)"
        " SELECT json_build_object("
        "   'deployment_id', d.id, 'status', d.status, 'shipped_at', pl_ts(d.shipped_at),"
        "   'rolled_back_at', pl_ts(d.rolled_back_at),"
        "   'baseline_pass_rate', (d.monitor_report->'baseline'->>'pass_rate')::float8,"
        "   'decision', (SELECT CASE"
        "     WHEN s.regressed_at IS NOT NULL"
        "       THEN json_build_object('at', pl_ts(s.regressed_at), 'kind', 'regressed')"
        "     WHEN s.promote_at IS NOT NULL"
        "       THEN json_build_object('at', pl_ts(s.promote_at), 'kind', 'promoted') END"
        "     FROM monitor_state s WHERE s.deployment_id = d.id),"
        "   'rollout', coalesce((SELECT json_agg(json_build_object('at', pl_ts(a.at),"
        "       'rollout_pct', (a.detail->>'rollout_pct')::int) ORDER BY a.id)"
        "     FROM audit_log a WHERE a.tenant_id = d.tenant_id AND a.target = d.id::text"
        "     AND a.detail ? 'rollout_pct'), '[]'::json),"
        "   'points', coalesce((SELECT json_agg(json_build_object("
        "       'at', pl_ts(w.lo + b.k * w.width * interval '1 second'), 'traces', b.n,"
        "       'passed', b.p, 'pass_rate', b.p::float8 / b.n) ORDER BY b.k) FROM b, w),"
        "     '[]'::json))::text"
        " FROM prompt_deployments d WHERE d.id = $1 AND d.tenant_id = $2",
        2, params, json, err);
}

int pl_deploy_store_alerts(PGconn *conn, const char *tenant_id, const char *project_id, char **json,
                           struct pl_pg_error *err)
{
    const char *params[2] = {tenant_id, project_id};
    return pl_pg_query_text_prepared(
        conn, "pl_deploy_alerts",
        "SELECT json_build_object('regressions', coalesce((SELECT json_agg(json_build_object("
        "     'deployment_id', d.id, 'project_id', d.project_id, 'status', d.status,"
        "     'at', pl_ts(d.updated_at), 'auto', d.status = 'rolled_back')"
        "     ORDER BY d.updated_at DESC) FROM (SELECT * FROM prompt_deployments d"
        "     WHERE d.tenant_id = $1 AND ($2::uuid IS NULL OR d.project_id = $2)"
        "     AND d.status IN ('regressed', 'rolled_back')"
        "     AND (d.status = 'regressed' OR (d.approved_by = 'system:auto_rollback'"
        "       AND d.rolled_back_at > now() - interval '24 hours'))"
        "     ORDER BY d.updated_at DESC LIMIT 20) d), '[]'::json),"
        "   'killswitch', json_build_object('active', coalesce(k.active, false),"
        "     'updated_by', k.updated_by, 'updated_at', pl_ts(k.updated_at)))::text"
        " FROM (SELECT 1) one LEFT JOIN control_killswitch k ON k.tenant_id = $1",
        2, params, json, err);
}

int pl_deploy_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    return pl_pg_query_text(conn,
                            "SELECT pl_deployment_json(d)::text FROM prompt_deployments d"
                            " WHERE id = $1 AND tenant_id = $2",
                            2, params, json, err);
}
