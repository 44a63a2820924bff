/* SQL for policies. */
#include "policy_store.h"

#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The rule named by j (when any) is an eval rule of the policy's project. */
#define POLICY_RULE_OF_PROJECT(project, tenant)                                                    \
    " (j->>'rule_id' IS NULL OR EXISTS (SELECT 1 FROM eval_rules r"                                \
    "   WHERE r.id = (j->>'rule_id')::uuid AND r.project_id = " project                            \
    "   AND r.tenant_id = " tenant "))"

char *pl_policy_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                           const char *status, long long limit, long long offset,
                           struct pl_pg_error *err)
{
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[5] = {tenant_id, project_id, status, lim, off};
    PGresult *res = pl_pg_query(
        conn,
        "SELECT coalesce(string_agg(pl_policy_json(p)::text, ',' ORDER BY p.created_at DESC,"
        " p.id DESC), ''), (SELECT count(*) FROM policies WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2) AND ($3::text IS NULL OR status = $3))"
        " FROM (SELECT * FROM policies WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2) AND ($3::text IS NULL OR status = $3)"
        "   ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5) p",
        5, params, err);
    if (!res)
        return NULL;
    char *json = pl_list_envelope(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), limit, offset);
    PQclear(res);
    return json;
}

int pl_policy_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    return pl_pg_query_text(
        conn, "SELECT pl_policy_json(p)::text FROM policies p WHERE id = $1 AND tenant_id = $2", 2,
        params, json, err);
}

enum pl_policy_result pl_policy_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                                             const char *policy_json, char **json,
                                             struct pl_pg_error *err)
{
    const char *params[3] = {tenant_id, policy_json, actor};
    int r = pl_audit_write(
        conn,
        /* the coalesce defaults repeat the column defaults of 0009 */
        "INSERT INTO policies (tenant_id, project_id, name, description, status, trigger_type,"
        " trigger_params, rule_id, action_type, action_params, rule_yaml, priority,"
        " rollout_pct, dry_run, max_retry_depth, max_cascade_depth, created_by)"
        " SELECT p.tenant_id, p.id, j->>'name', coalesce(j->>'description', ''),"
        "  coalesce(j->>'status', 'draft'), j->>'trigger_type',"
        "  coalesce(j->'trigger_params', '{}'), (j->>'rule_id')::uuid, j->>'action_type',"
        "  coalesce(j->'action_params', '{}'), j->>'rule_yaml',"
        "  coalesce((j->>'priority')::int, 100), coalesce((j->>'rollout_pct')::int, 0),"
        "  coalesce((j->>'dry_run')::boolean, true),"
        "  coalesce((j->>'max_retry_depth')::int, 3),"
        "  coalesce((j->>'max_cascade_depth')::int, 5), $3"
        " FROM (SELECT $2::jsonb AS j) s JOIN projects p"
        "  ON p.id = (j->>'project_id')::uuid AND p.tenant_id = $1"
        " WHERE" POLICY_RULE_OF_PROJECT("p.id",
                                        "$1") " RETURNING id, pl_policy_json(policies)::text",
        3, params, tenant_id, actor, "policy.create", NULL, -1, json, err);
    if (r != 0)
        return r == 1 ? PL_POLICY_OK : PL_POLICY_ERROR;
    /* Nothing inserted: either the project or the rule was not acceptable. */
    PGresult *res = pl_pg_query(conn,
                                "SELECT 1 FROM projects WHERE id = ($2::jsonb->>'project_id')::uuid"
                                " AND tenant_id = $1",
                                2, params, err);
    if (!res)
        return PL_POLICY_ERROR;
    enum pl_policy_result out = PQntuples(res) == 1 ? PL_POLICY_BAD_RULE : PL_POLICY_NOT_FOUND;
    PQclear(res);
    return out;
}

enum pl_policy_result pl_policy_store_update(PGconn *conn, const char *tenant_id, const char *id,
                                             const char *actor, const char *policy_json,
                                             const char *patch_json,
                                             const char *expected_updated_at, char **json,
                                             struct pl_pg_error *err)
{
    const char *params[4] = {id, tenant_id, policy_json, expected_updated_at};
    int r = pl_audit_write(
        conn,
        "UPDATE policies p SET name = j->>'name', description = j->>'description',"
        " status = j->>'status', trigger_type = j->>'trigger_type',"
        " trigger_params = j->'trigger_params', rule_id = (j->>'rule_id')::uuid,"
        " action_type = j->>'action_type', action_params = j->'action_params',"
        " rule_yaml = j->>'rule_yaml', priority = (j->>'priority')::int,"
        " rollout_pct = (j->>'rollout_pct')::int, dry_run = (j->>'dry_run')::boolean,"
        " max_retry_depth = (j->>'max_retry_depth')::int,"
        " max_cascade_depth = (j->>'max_cascade_depth')::int, updated_at = now()"
        " FROM (SELECT $3::jsonb AS j) s"
        " WHERE p.id = $1 AND p.tenant_id = $2 AND p.status <> 'archived'"
        "  AND p.updated_at = $4::timestamptz AND" POLICY_RULE_OF_PROJECT(
            "p.project_id", "$2") " RETURNING p.id, pl_policy_json(p)::text",
        4, params, tenant_id, actor, "policy.update", patch_json, -1, json, err);
    if (r != 0)
        return r == 1 ? PL_POLICY_OK : PL_POLICY_ERROR;
    /* Nothing updated: say which condition failed (a change racing this one shows as STALE,
     * and the caller's retry sees the rest). */
    const char *diag[3] = {id, tenant_id, expected_updated_at};
    PGresult *res = pl_pg_query(conn,
                                "SELECT status, updated_at = $3::timestamptz FROM policies"
                                " WHERE id = $1 AND tenant_id = $2",
                                3, diag, err);
    if (!res)
        return PL_POLICY_ERROR;
    enum pl_policy_result out = PL_POLICY_NOT_FOUND;
    if (PQntuples(res) == 1) {
        if (strcmp(PQgetvalue(res, 0, 0), "archived") == 0)
            out = PL_POLICY_ARCHIVED;
        else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
            out = PL_POLICY_STALE;
        else
            out = PL_POLICY_BAD_RULE;
    }
    PQclear(res);
    return out;
}

enum pl_policy_result pl_policy_store_archive(PGconn *conn, const char *tenant_id, const char *id,
                                              const char *actor, struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    int r = pl_audit_write(conn,
                           "UPDATE policies p SET status = 'archived', updated_at = now()"
                           " WHERE id = $1 AND tenant_id = $2 AND status <> 'archived'"
                           " RETURNING p.id, pl_policy_json(p)::text",
                           2, params, tenant_id, actor, "policy.archive", NULL, -1, NULL, err);
    if (r != 0)
        return r == 1 ? PL_POLICY_OK : PL_POLICY_ERROR;
    /* Archived already (archived is final, so it stays so) or not the tenant's. */
    PGresult *res = pl_pg_query(conn, "SELECT 1 FROM policies WHERE id = $1 AND tenant_id = $2", 2,
                                params, err);
    if (!res)
        return PL_POLICY_ERROR;
    enum pl_policy_result out = PQntuples(res) == 1 ? PL_POLICY_OK : PL_POLICY_NOT_FOUND;
    PQclear(res);
    return out;
}
