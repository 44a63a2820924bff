/* Projects: list, get, create (member/owner) and settings changes (owner: they are the
 * control loop's safety gates). */
#include "api.h"

#include "params.h"
#include "project_store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct pl_field_rule project_rules[] = {
    {"name", PL_FIELD_STRING, 1, 200},
    {"prompt_autoship_enabled", PL_FIELD_BOOL, 0, 0},
    {"auto_rollback_enabled", PL_FIELD_BOOL, 0, 0},
    {"cluster_min_size", PL_FIELD_INT, 2, 100000},
    {"ab_min_delta", PL_FIELD_FRACTION, 0, 0},
    {"ab_alpha", PL_FIELD_FRACTION, 0, 0},               /* narrowed in project_ranges */
    {"ab_guardrail_tolerance", PL_FIELD_FRACTION, 0, 0}, /* narrowed in project_ranges */
    {"ab_holdout_size", PL_FIELD_INT, 1, 10000},
    {"ab_guardrail_size", PL_FIELD_INT, 0, 10000},
    {"regression_min_samples", PL_FIELD_INT, 1, 100000},
    {"regression_alpha", PL_FIELD_FRACTION, 0, 0},     /* narrowed in project_ranges */
    {"regression_tolerance", PL_FIELD_FRACTION, 0, 0}, /* narrowed in project_ranges */
    {"regression_baseline_size", PL_FIELD_INT, 10, 1000000},
    {"regression_window", PL_FIELD_INT, 10, 100000},
    {"ship_canary_pct", PL_FIELD_INT, 0, 99},
    {"ship_canary_min_samples", PL_FIELD_INT, 10, 1000000},
    {"hitl_timeout_s", PL_FIELD_INT, 0, 2592000}, /* 30 days; 0: escalations never time out */
};
#define PROJECT_NRULES (sizeof(project_rules) / sizeof(project_rules[0]))

/* Fractional ranges the field rules cannot state (their bounds are integers); they repeat the
 * CHECK constraints of migration 0007 so that a bad value is a 422 naming the field rather
 * than a constraint violation. regression_alpha excludes 0: a test that may never reject is
 * no monitor. ab_alpha is also the level of the one-sided guardrail test, which is no test
 * above 0.5 (nor at 0); a guardrail margin above 0.5 tolerates anything. */
static const struct project_range {
    const char *name;
    double lo, hi;
    bool lo_open;
} project_ranges[] = {
    {"ab_alpha", 0.0, 0.5, true},
    {"ab_guardrail_tolerance", 0.0, 0.5, false},
    {"regression_alpha", 0.0, 0.2, true},
    {"regression_tolerance", 0.0, 0.5, false},
};
#define PROJECT_NRANGES (sizeof(project_ranges) / sizeof(project_ranges[0]))

/* @returns false with why filled when a number in body is outside its range in
 * project_ranges; a member of another type is left to pl_param_check_fields. */
static bool projects_check_ranges(json_object *body, char *why, size_t whysz)
{
    for (size_t i = 0; i < PROJECT_NRANGES; i++) {
        const struct project_range *r = &project_ranges[i];
        json_object *v;
        if (!json_object_object_get_ex(body, r->name, &v) ||
            !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
            continue;
        double x = json_object_get_double(v);
        if (r->lo_open ? x > r->lo && x <= r->hi : x >= r->lo && x <= r->hi)
            continue;
        snprintf(why, whysz, "%s must be %s %g and at most %g", r->name,
                 r->lo_open ? "greater than" : "at least", r->lo, r->hi);
        return false;
    }
    return true;
}

void api_projects_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"limit", "offset", NULL};
    if (!api_query_params(req, res, allowed, NULL))
        return;
    long long limit, offset;
    if (!api_page_params(req, res, &limit, &offset))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_project_store_list(conn, who.tenant_id, limit, offset, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}

void api_projects_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, false, pl_project_store_get, "project");
}

/* Parses and checks a project body; sets the error response and returns NULL if bad. */
static json_object *projects_body(struct pl_http_request *req, struct pl_http_response *res,
                                  bool name_required)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    enum pl_field_result fr =
        pl_param_check_fields(body, project_rules, PROJECT_NRULES, why, sizeof(why));
    /* A narrower range is named ahead of the generic [0, 1] a fraction field reports. */
    if (fr != PL_FIELDS_BAD_REQUEST && !projects_check_ranges(body, why, sizeof(why)))
        fr = PL_FIELDS_UNPROCESSABLE;
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return NULL;
    }
    if (name_required && !json_object_object_get_ex(body, "name", NULL)) {
        pl_http_error(res, 400, "name is required");
        json_object_put(body);
        return NULL;
    }
    if (json_object_object_length(body) == 0) {
        pl_http_error(res, 400, "no fields to change");
        json_object_put(body);
        return NULL;
    }
    return body;
}

void api_projects_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who))
        return;
    json_object *body = projects_body(req, res, true);
    if (!body)
        return;
    PGconn *conn = api_db(req, res);
    if (!conn) {
        json_object_put(body);
        return;
    }
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    char *json = NULL;
    int r =
        pl_project_store_create(conn, who.tenant_id, actor,
                                json_object_to_json_string_ext(
                                    body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                                &json, &err);
    api_db_release(req, conn);
    if (r < 0)
        api_db_error(res, &err);
    else if (r == 0)
        pl_http_error(res, 409, "a project named \"%s\" already exists",
                      json_object_get_string(json_object_object_get(body, "name")));
    else
        api_json_owned(res, 201, json);
    json_object_put(body);
}

void api_projects_update(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, false, "project", &who))
        return;
    json_object *body = projects_body(req, res, false);
    if (!body)
        return;
    PGconn *conn = api_db(req, res);
    if (!conn) {
        json_object_put(body);
        return;
    }
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    char *json = NULL;
    int r =
        pl_project_store_update(conn, who.tenant_id, req->params[0], actor,
                                json_object_to_json_string_ext(
                                    body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                                &json, &err);
    api_db_release(req, conn);
    if (r == -1)
        api_db_error(res, &err);
    else if (r == -2)
        pl_http_error(res, 409, "another project already has that name");
    else if (r == 0)
        pl_http_error(res, 404, "project not found");
    else
        api_json_owned(res, 200, json);
    json_object_put(body);
}
