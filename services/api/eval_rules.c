/* /v1/eval-rules: CRUD. A rule is compiled (evaluate.h) before it is stored, so a bad config
 * is a 422 here and never a surprise in the detector. */
#include "api.h"

#include "eval_rule_store.h"
#include "evaluate.h"
#include "params.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct pl_field_rule rule_fields[] = {
    {"project_id", PL_FIELD_STRING, 36, 36},    {"metric_name", PL_FIELD_STRING, 1, 128},
    {"evaluator_type", PL_FIELD_STRING, 1, 32}, {"enabled", PL_FIELD_BOOL, 0, 0},
    {"config", PL_FIELD_OBJECT, 0, 0},
};
#define RULE_NFIELDS (sizeof(rule_fields) / sizeof(rule_fields[0]))

/* Checks a complete rule object; sets the response and returns false when it is bad. */
static bool rule_valid(json_object *rule, struct pl_http_response *res)
{
    static const char *const required[] = {"project_id", "metric_name", "evaluator_type"};
    for (size_t i = 0; i < 3; i++)
        if (!json_object_object_get_ex(rule, required[i], NULL)) {
            pl_http_error(res, 400, "%s is required", required[i]);
            return false;
        }
    if (!pl_uuid_valid(json_object_get_string(json_object_object_get(rule, "project_id")))) {
        pl_http_error(res, 400, "project_id must be a uuid");
        return false;
    }
    const char *metric = json_object_get_string(json_object_object_get(rule, "metric_name"));
    for (const char *p = metric; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') {
            pl_http_error(res, 422, "metric_name may hold only letters, digits, '_', '-' and '.'");
            return false;
        }
    json_object *config = NULL;
    json_object_object_get_ex(rule, "config", &config);
    struct pl_eval_rule *compiled = NULL;
    char why[512];
    if (pl_eval_rule_compile(json_object_get_string(json_object_object_get(rule, "evaluator_type")),
                             config, metric, &compiled, why, sizeof(why)) != 0) {
        pl_http_error(res, 422, "%s", why);
        return false;
    }
    pl_eval_rule_free(compiled);
    return true;
}

static json_object *rule_body(struct pl_http_request *req, struct pl_http_response *res)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    enum pl_field_result fr =
        pl_param_check_fields(body, rule_fields, RULE_NFIELDS, why, sizeof(why));
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return NULL;
    }
    return body;
}

void api_eval_rules_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", "limit", "offset", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    long long limit, offset;
    if (!api_page_params(req, res, &limit, &offset))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_eval_rule_store_list(conn, who.tenant_id, project, limit, offset, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}

void api_eval_rules_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, false, pl_eval_rule_store_get, "eval rule");
}

void api_eval_rules_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who))
        return;
    json_object *body = rule_body(req, res);
    if (!body)
        return;
    if (!rule_valid(body, res)) {
        json_object_put(body);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn) {
        json_object_put(body);
        return;
    }
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    char *json = NULL;
    struct pl_service *svc = req->user;
    int max = svc->cfg.eval_max_rules_per_project;
    int r = pl_eval_rule_store_create(conn, who.tenant_id, actor,
                                      json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN),
                                      max, &json, &err);
    api_db_release(req, conn);
    if (r < 0)
        api_db_error(res, &err);
    else if (r == 0)
        pl_http_error(res, 404, "project not found");
    else if (r == 2) /* every rule runs on every trace: the cap bounds a project's cost */
        pl_http_error(res, 422,
                      "the project already has %d eval rules, the most allowed "
                      "(eval.max_rules_per_project): delete or reuse one",
                      max);
    else
        api_json_owned(res, 201, json);
    json_object_put(body);
}

void api_eval_rules_update(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLES_WRITE, false, "eval rule", &who))
        return;
    json_object *patch = rule_body(req, res);
    if (!patch)
        return;
    if (json_object_object_length(patch) == 0 ||
        json_object_object_get_ex(patch, "project_id", NULL)) {
        pl_http_error(res, 400,
                      json_object_object_length(patch) == 0 ? "no fields to change"
                                                            : "project_id cannot be changed");
        json_object_put(patch);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn) {
        json_object_put(patch);
        return;
    }
    struct pl_pg_error err;
    char *current = NULL, *json = NULL;
    int found = pl_eval_rule_store_get(conn, who.tenant_id, req->params[0], &current, &err);
    json_object *merged = found == 1 ? json_tokener_parse(current) : NULL;
    free(current);
    if (found < 0)
        api_db_error(res, &err);
    else if (!merged)
        pl_http_error(res, 404, "eval rule not found");
    else {
        /* The stored rule with the changes on top must be a valid rule as a whole. */
        json_object_object_foreach(patch, key, val)
        {
            json_object_object_add(merged, key, json_object_get(val));
        }
        static const char *const ignored[] = {"id", "tenant_id", "created_at", "updated_at"};
        for (size_t i = 0; i < 4; i++)
            json_object_object_del(merged, ignored[i]);
        if (rule_valid(merged, res)) {
            char actor[PL_ACTOR_SIZE];
            api_actor(&who, actor, sizeof(actor));
            int r = pl_eval_rule_store_update(
                conn, who.tenant_id, req->params[0], actor,
                json_object_to_json_string_ext(merged, JSON_C_TO_STRING_PLAIN), &json, &err);
            if (r < 0)
                api_db_error(res, &err);
            else if (r == 0)
                pl_http_error(res, 404, "eval rule not found");
            else
                api_json_owned(res, 200, json);
        }
    }
    api_db_release(req, conn);
    json_object_put(merged);
    json_object_put(patch);
}

void api_eval_rules_delete(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    /* Destructive deletes of eval rules are owner-only (seed role matrix). */
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, false, "eval rule", &who))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    int r = pl_eval_rule_store_delete(conn, who.tenant_id, req->params[0], actor, &err);
    api_db_release(req, conn);
    if (r < 0 && strcmp(err.sqlstate, "23503") == 0) /* a policy or an action names it */
        pl_http_error(res, 409,
                      "eval rule is used by a policy or a control action: change or archive "
                      "the policy first (archived policies keep their rule_id), or disable the "
                      "rule instead");
    else if (r < 0)
        api_db_error(res, &err);
    else if (r == 0)
        pl_http_error(res, 404, "eval rule not found");
    else
        pl_http_text(res, 204, "application/json", NULL);
}
