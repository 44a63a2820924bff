/* SQL for eval rules: the API's reads and writes (with the per-project cap). */
#include "eval_rule_store.h"

#include "audit.h"
#include "log.h"

#include <stdbool.h>
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
    return pl_pg_query_text(
        conn,
        "SELECT pl_eval_rule_json(r)::text FROM eval_rules r WHERE id = $1 AND tenant_id = $2", 2,
        params, json, err);
}

static int rule_store_rollback(PGconn *conn, int rc)
{
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return rc;
}

int pl_eval_rule_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                              const char *rule_json, int max_rules, char **json,
                              struct pl_pg_error *err)
{
    const char *lock[2] = {tenant_id, rule_json};
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return -1;
    /* The project's row lock serialises its rule creations, so that the count below (a
     * statement of its own, hence a snapshot taken after the lock) cannot be raced past
     * the cap. NO KEY UPDATE does not block the rules' own foreign-key checks. */
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT 1 FROM projects p WHERE p.id = ($2::jsonb->>'project_id')::uuid"
                    " AND p.tenant_id = $1 FOR NO KEY UPDATE OF p",
                    2, lock, err);
    if (!res)
        return rule_store_rollback(conn, -1);
    bool found = PQntuples(res) == 1;
    PQclear(res);
    if (!found)
        return rule_store_rollback(conn, 0);
    res = pl_pg_query(conn,
                      "SELECT count(*) FROM eval_rules"
                      " WHERE project_id = ($1::jsonb->>'project_id')::uuid",
                      1, &rule_json, err);
    if (!res)
        return rule_store_rollback(conn, -1);
    long long have = pl_pg_getll(res, 0, 0);
    PQclear(res);
    if (have >= max_rules)
        return rule_store_rollback(conn, 2);
    const char *params[2] = {tenant_id, rule_json};
    res = pl_pg_query(conn,
                      "INSERT INTO eval_rules (tenant_id, project_id, metric_name, evaluator_type,"
                      " config, enabled)"
                      " SELECT p.tenant_id, p.id, j->>'metric_name', j->>'evaluator_type',"
                      "  coalesce(j->'config', '{}'), coalesce((j->>'enabled')::boolean, true)"
                      " FROM (SELECT $2::jsonb AS j) s JOIN projects p"
                      "  ON p.id = (j->>'project_id')::uuid AND p.tenant_id = $1"
                      " RETURNING id, pl_eval_rule_json(eval_rules)::text",
                      2, params, err);
    if (!res)
        return rule_store_rollback(conn, -1);
    if (PQntuples(res) != 1) {
        PQclear(res);
        return rule_store_rollback(conn, 0);
    }
    if (pl_audit_append(conn, tenant_id, actor, "eval_rule.create", PQgetvalue(res, 0, 0),
                        PQgetvalue(res, 0, 1), err) != 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0) {
        PQclear(res);
        return rule_store_rollback(conn, -1);
    }
    if (json && !(*json = strdup(PQgetvalue(res, 0, 1)))) {
        PQclear(res);
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        return -1;
    }
    PQclear(res);
    return 1;
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

int pl_eval_rule_store_load(PGconn *conn, const char *tenant_id, const char *project_id,
                            struct pl_rule_set *out, struct pl_pg_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *p[2] = {tenant_id, project_id};
    PGresult *res =
        pl_pg_query_prepared(conn, "pl_eval_rule_store_load",
                             "SELECT metric_name, evaluator_type, config::text, id FROM eval_rules"
                             " WHERE tenant_id = $1 AND project_id = $2 AND enabled"
                             " ORDER BY created_at, id",
                             2, p, err);
    if (!res)
        return -1;
    int n = PQntuples(res);
    out->rules = calloc((size_t)n + 1, sizeof(*out->rules));
    out->metrics = calloc((size_t)n + 1, sizeof(*out->metrics));
    out->ids = calloc((size_t)n + 1, sizeof(*out->ids));
    if (!out->rules || !out->metrics || !out->ids) {
        PQclear(res);
        pl_rule_set_free(out);
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        return -1;
    }
    for (int i = 0; i < n; i++) {
        json_object *cfg = json_tokener_parse(PQgetvalue(res, i, 2));
        char why[256];
        if (pl_eval_rule_compile(PQgetvalue(res, i, 1), cfg, PQgetvalue(res, i, 0),
                                 &out->rules[out->n], why, sizeof(why)) != 0) {
            pl_warn("eval rule %s of project %s skipped: %s", PQgetvalue(res, i, 0), project_id,
                    why);
        } else {
            snprintf(out->metrics[out->n], sizeof(out->metrics[0]), "%s", PQgetvalue(res, i, 0));
            snprintf(out->ids[out->n], sizeof(out->ids[0]), "%s", PQgetvalue(res, i, 3));
            out->n++;
        }
        json_object_put(cfg);
    }
    PQclear(res);
    return 0;
}

void pl_rule_set_free(struct pl_rule_set *set)
{
    for (size_t i = 0; set->rules && i < set->n; i++)
        pl_eval_rule_free(set->rules[i]);
    free(set->rules);
    free(set->metrics);
    free(set->ids);
    memset(set, 0, sizeof(*set));
}

bool pl_rule_set_run(const struct pl_rule_set *set, const struct pl_eval_input *in, bool *passed,
                     char *why, size_t whysz)
{
    bool all = true;
    if (why && whysz)
        why[0] = '\0';
    for (size_t i = 0; i < set->n; i++) {
        struct pl_eval_result r;
        pl_eval_rule_run(set->rules[i], in, &r);
        if (passed)
            passed[i] = r.passed;
        if (!r.passed && all && why)
            snprintf(why, whysz, "%s: %s", set->metrics[i], r.feedback);
        all = all && r.passed;
    }
    return all;
}
