/* Failure clusters: the list (newest first), one cluster with its samples, and the owners'
 * triage status (new, acknowledged, resolved). */
#include "api.h"

#include "cluster_store.h"
#include "params.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static bool clusters_status_ok(const char *s)
{
    return strcmp(s, "new") == 0 || strcmp(s, "acknowledged") == 0 || strcmp(s, "resolved") == 0;
}

void api_clusters_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", "from",   "to", "limit",
                                          "offset",     "status", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    const char *status = pl_http_query(req, "status");
    if (status && !clusters_status_ok(status)) {
        pl_http_error(res, 400, "status must be one of new, acknowledged, resolved");
        return;
    }
    const char *from = pl_http_query(req, "from"), *to = pl_http_query(req, "to");
    if ((from && !pl_param_timestamp_ok(from)) || (to && !pl_param_timestamp_ok(to))) {
        pl_http_error(res, 400, "%s must be an ISO-8601 timestamp (2026-01-31T12:00:00Z)",
                      from && !pl_param_timestamp_ok(from) ? "from" : "to");
        return;
    }
    long long limit, offset;
    char why[128];
    if (pl_param_int("limit", pl_http_query(req, "limit"), 100, 1, 500, &limit, why, sizeof(why)) !=
            0 ||
        pl_param_int("offset", pl_http_query(req, "offset"), 0, 0, 1000000000LL, &offset, why,
                     sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json =
        pl_cluster_store_list(conn, who.tenant_id, project, status, from, to, limit, offset, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}

void api_clusters_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, false, pl_cluster_store_get, "cluster");
}

/* PATCH {"status": "new"|"acknowledged"|"resolved"}: owners triage; audited. */
void api_clusters_update(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, false, "cluster", &who))
        return;
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    static const struct pl_field_rule rules[] = {{"status", PL_FIELD_STRING, 1, 32}};
    enum pl_field_result fr = pl_param_check_fields(body, rules, 1, why, sizeof(why));
    json_object *st = NULL;
    if (fr == PL_FIELDS_OK && !json_object_object_get_ex(body, "status", &st)) {
        fr = PL_FIELDS_UNPROCESSABLE;
        snprintf(why, sizeof(why), "status is required");
    }
    if (fr == PL_FIELDS_OK && !clusters_status_ok(json_object_get_string(st))) {
        fr = PL_FIELDS_UNPROCESSABLE;
        snprintf(why, sizeof(why), "status must be one of new, acknowledged, resolved");
    }
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return;
    }
    char status[16], actor[PL_ACTOR_SIZE];
    snprintf(status, sizeof(status), "%s", json_object_get_string(st));
    json_object_put(body);
    api_actor(&who, actor, sizeof(actor));
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int r = pl_cluster_store_set_status(conn, who.tenant_id, req->params[0], status, actor, &json,
                                        &err);
    api_db_release(req, conn);
    api_answer(res, r, json, &err, "cluster");
}
