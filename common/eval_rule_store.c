#include "eval_rule_store.h"

#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pl_eval_rule_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                              long long limit, long long offset, struct pl_pg_error *err)
{
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[4] = {tenant_id, project_id, lim, off};
    PGresult *res = pl_pg_query(
        conn,
        "SELECT coalesce(string_agg(pl_eval_rule_json(r)::text, ',' ORDER BY r.created_at DESC,"
        " r.id DESC), ''), (SELECT count(*) FROM eval_rules WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2))"
        " FROM (SELECT * FROM eval_rules WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2)"
        "   ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4) r",
        4, params, err);
    if (!res)
        return NULL;
    char *json = pl_list_envelope(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), limit, offset);
    PQclear(res);
    return json;
}

int pl_eval_rule_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                           struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    PGresult *res = pl_pg_query(
        conn,
        "SELECT pl_eval_rule_json(r)::text FROM eval_rules r WHERE id = $1 AND tenant_id = $2", 2,
        params, err);
    if (!res)
        return -1;
    int found = PQntuples(res) == 1;
    if (found)
        *json = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return found;
}

int pl_eval_rule_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                              const char *rule_json, char **json, struct pl_pg_error *err)
{
    const char *params[2] = {tenant_id, rule_json};
    return pl_audit_write(
        conn,
        "INSERT INTO eval_rules (tenant_id, project_id, metric_name, evaluator_type,"
        " config, enabled)"
        " SELECT p.tenant_id, p.id, j->>'metric_name', j->>'evaluator_type',"
        "  coalesce(j->'config', '{}'), coalesce((j->>'enabled')::boolean, true)"
        " FROM (SELECT $2::jsonb AS j) s JOIN projects p"
        "  ON p.id = (j->>'project_id')::uuid AND p.tenant_id = $1"
        " RETURNING id, pl_eval_rule_json(eval_rules)::text",
        2, params, tenant_id, actor, "eval_rule.create", NULL, -1, json, err);
}

int pl_eval_rule_store_update(PGconn *conn, const char *tenant_id, const char *id,
                              const char *actor, const char *rule_json, char **json,
                              struct pl_pg_error *err)
{
    const char *params[3] = {id, tenant_id, rule_json};
    return pl_audit_write(conn,
                          "UPDATE eval_rules r SET metric_name = $3::jsonb->>'metric_name',"
                          " evaluator_type = $3::jsonb->>'evaluator_type',"
                          " config = coalesce($3::jsonb->'config', '{}'),"
                          " enabled = ($3::jsonb->>'enabled')::boolean, updated_at = now()"
                          " WHERE id = $1 AND tenant_id = $2"
                          " RETURNING r.id, pl_eval_rule_json(r)::text",
                          3, params, tenant_id, actor, "eval_rule.update", NULL, -1, json, err);
}

int pl_eval_rule_store_delete(PGconn *conn, const char *tenant_id, const char *id,
                              const char *actor, struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    return pl_audit_write(conn,
                          "DELETE FROM eval_rules WHERE id = $1 AND tenant_id = $2"
                          " RETURNING id, pl_eval_rule_json(eval_rules)::text",
                          2, params, tenant_id, actor, "eval_rule.delete", NULL, -1, NULL, err);
}
