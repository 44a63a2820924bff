/* The seed's deployment endpoints: list, get, approve, reject, rollback. */
#include "api.h"

#include "deploy.h"
#include "registry.h"
#include "deploy_store.h"
#include "log.h"
#include "params.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REJECT_REASON_MAX 1000

void api_deployments_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, true, &who))
        return;
    static const char *const allowed[] = {"status", "project_id", "limit", "offset", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    const char *status = pl_http_query(req, "status");
    enum pl_deploy_status st;
    if (status && pl_deploy_status_parse(status, &st) != 0) {
        pl_http_error(res, 400,
                      "status must be one of proposed, ab_running, ab_passed, "
                      "ab_failed, shipped, monitoring, regressed, rolled_back, rejected");
        return;
    }
    long long limit, offset;
    if (!api_page_params(req, res, &limit, &offset))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_deploy_store_list(conn, who.tenant_id, status, project, limit, offset, &err);
    api_db_release(req, conn);
    if (!json) {
        api_db_error(res, &err);
        return;
    }
    api_json_owned(res, 200, json);
}

void api_deployments_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, true, pl_deploy_store_get, "deployment");
}

/* GET .../{id}/series: the post-ship chart's data (live pass rate, baseline, decision,
 * rollout). */
void api_deployments_series(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, true, pl_deploy_store_series, "deployment");
}

/* GET /v1/alerts: what the dashboard's banners show (regressions, the kill switch). */
void api_alerts(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    static const char *const allowed[] = {"project_id", NULL};
    const char *project = NULL;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, allowed, &project))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int r = pl_deploy_store_alerts(conn, who.tenant_id, project, &json, &err);
    api_db_release(req, conn);
    api_answer(res, r, json, &err, "alerts");
}

/* Applies an owner's move through the guarded transition and maps the outcome to HTTP. */
static void deployments_move(struct pl_http_request *req, struct pl_http_response *res,
                             const struct pl_principal *who, enum pl_deploy_status to,
                             const char *reason)
{
    const char *id = req->params[0];
    if (!pl_uuid_valid(id)) {
        pl_http_error(res, 404, "deployment not found");
        return;
    }
    struct pl_service *svc = req->user;
    char actor[PL_ACTOR_SIZE];
    api_actor(who, actor, sizeof(actor));
    struct pl_deploy_change ch = {
        .tenant_id = who->tenant_id,
        .deployment_id = id,
        .to = to,
        .actor = PL_ACTOR_OWNER,
        .actor_id = actor,
        /* the seed's "your user ID": the signed-in user, else the key */
        .approved_by = to != PL_DEPLOY_SHIPPED ? NULL
                       : who->user_name[0]     ? who->user_name
                                               : who->key_id,
        .rejection_reason = reason,
        .events_topic = svc->cfg.kafka_topic_deployments,
        /* a rejected deployment that was live is taken back like a rollback; one that never
         * shipped has no shipped version, and the hook does nothing */
        .hook = to == PL_DEPLOY_SHIPPED ? pl_registry_ship_hook
                : to == PL_DEPLOY_ROLLED_BACK || to == PL_DEPLOY_REJECTED
                    ? pl_registry_rollback_hook
                    : NULL,
        .hook_arg = actor,
    };
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL, current[16] = "";
    enum pl_transition_result r = pl_deploy_transition(conn, &ch, &json, current, &err);
    api_db_release(req, conn);
    switch (r) {
    case PL_TRANSITION_OK:
        pl_info("deployment %s -> %s by %s", id, pl_deploy_status_name(to), actor);
        api_json_owned(res, 200, json);
        break;
    case PL_TRANSITION_NOT_FOUND:
        pl_http_error(res, 404, "deployment not found");
        break;
    case PL_TRANSITION_CONFLICT: {
        json_object *o = json_object_new_object();
        char msg[sizeof(err.message) + 64];
        if (err.message[0]) /* the registry refused: says what is live now */
            snprintf(msg, sizeof(msg), "%s", err.message);
        else
            snprintf(msg, sizeof(msg), "cannot move a %s deployment to %s", current,
                     pl_deploy_status_name(to));
        json_object_object_add(o, "error", json_object_new_string(msg));
        json_object_object_add(o, "status", json_object_new_string(current));
        pl_http_json(res, 409, o);
        break;
    }
    case PL_TRANSITION_ERROR:
        api_db_error(res, &err);
        break;
    }
}

/* Approve takes no body: anything but an empty one or {} is refused. */
static bool deployments_no_body(struct pl_http_request *req, struct pl_http_response *res)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, true, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return false;
    }
    bool empty = json_object_object_length(body) == 0;
    json_object_put(body);
    if (!empty)
        pl_http_error(res, 400, "this endpoint takes no fields");
    return empty;
}

/* Reject and rollback take an optional {"reason"}, kept on the deployment and in the audit
 * entry (the dashboard always asks for one). Moves the deployment when the body is valid. */
static void deployments_move_with_reason(struct pl_http_request *req, struct pl_http_response *res,
                                         const struct pl_principal *who, enum pl_deploy_status to)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, true, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    static const struct pl_field_rule rules[] = {
        {"reason", PL_FIELD_STRING, 0, REJECT_REASON_MAX},
    };
    enum pl_field_result fr = pl_param_check_fields(body, rules, 1, why, sizeof(why));
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return;
    }
    json_object *reason;
    bool given = json_object_object_get_ex(body, "reason", &reason);
    /* a rollback without a reason keeps the deployment's earlier text */
    deployments_move(req, res, who, to,
                     given                      ? json_object_get_string(reason)
                     : to == PL_DEPLOY_REJECTED ? ""
                                                : NULL);
    json_object_put(body);
}

void api_deployments_approve(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (api_authorize(req, res, PL_ROLE_OWNER, true, &who) && deployments_no_body(req, res))
        deployments_move(req, res, &who, PL_DEPLOY_SHIPPED, NULL);
}

void api_deployments_rollback(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (api_authorize(req, res, PL_ROLE_OWNER, true, &who))
        deployments_move_with_reason(req, res, &who, PL_DEPLOY_ROLLED_BACK);
}

void api_deployments_reject(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (api_authorize(req, res, PL_ROLE_OWNER, true, &who))
        deployments_move_with_reason(req, res, &who, PL_DEPLOY_REJECTED);
}
