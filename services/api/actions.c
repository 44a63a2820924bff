/* The control loop's actions over HTTP (architecture §7): every role reads the tenant's actions and
 * the HITL queue (escalations waiting for an owner, oldest first), owners reject escalations;
 * and any role reads a trace with its evaluations and its remediation history. Lists page by
 * an opaque keyset cursor, so a page never repeats or skips a row while actions arrive.
 * Status changes go through pl_action_transition, like every other change of an action. */
#include "api.h"

#include "action.h"
#include "action_store.h"
#include "json_scan.h"
#include "log.h"
#include "params.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACTION_STATUS_ERROR                                                                        \
    "status must be one of pending, pending_approval, executed, failed, dry_run"
#define ACTION_TRACE_ID_MAX 512
#define ACTION_REASON_MAX   2000

/*
 * Reads limit and cursor of a list of kind into *limit and *after (*has_after when a cursor
 * was given); sets a 400 naming the parameter and returns false when one is refused.
 */
static bool actions_page(struct pl_http_request *req, struct pl_http_response *res,
                         enum pl_action_list_kind kind, long long *limit,
                         struct pl_action_cursor *after, bool *has_after)
{
    char why[128];
    if (pl_param_int("limit", pl_http_query(req, "limit"), 50, 1, 200, limit, why, sizeof(why)) !=
        0) {
        pl_http_error(res, 400, "%s", why);
        return false;
    }
    const char *cursor = pl_http_query(req, "cursor");
    *has_after = cursor != NULL;
    if (cursor && pl_action_cursor_decode(kind, cursor, after) != 0) {
        pl_http_error(res, 400, "cursor is not a cursor of this list (use next_cursor as given)");
        return false;
    }
    return true;
}

static void actions_list_answer(struct pl_http_request *req, struct pl_http_response *res,
                                const struct pl_principal *who, enum pl_action_list_kind kind,
                                const struct pl_action_filter *filter)
{
    long long limit;
    struct pl_action_cursor after;
    bool has_after;
    if (!actions_page(req, res, kind, &limit, &after, &has_after))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_action_store_list(conn, who->tenant_id, kind, filter, has_after ? &after : NULL,
                                      limit, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}

void api_actions_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, true, &who))
        return;
    static const char *const allowed[] = {"status", "trace_id", "policy_id", "project_id",
                                          "limit",  "cursor",   NULL};
    struct pl_action_filter filter = {0};
    if (!api_query_params(req, res, allowed, &filter.project_id))
        return;
    enum pl_action_status status;
    filter.status = pl_http_query(req, "status");
    if (filter.status && pl_action_status_parse(filter.status, &status) != 0) {
        pl_http_error(res, 400, ACTION_STATUS_ERROR);
        return;
    }
    filter.trace_id = pl_http_query(req, "trace_id");
    if (filter.trace_id &&
        (filter.trace_id[0] == '\0' || strlen(filter.trace_id) > ACTION_TRACE_ID_MAX)) {
        pl_http_error(res, 400, "trace_id must be 1 to %d bytes", ACTION_TRACE_ID_MAX);
        return;
    }
    filter.policy_id = pl_http_query(req, "policy_id");
    if (filter.policy_id && !pl_uuid_valid(filter.policy_id)) {
        pl_http_error(res, 400, "policy_id must be a uuid");
        return;
    }
    actions_list_answer(req, res, &who, PL_ACTION_LIST_NEWEST, &filter);
}

void api_actions_pending(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, true, &who))
        return;
    static const char *const allowed[] = {"project_id", "limit", "cursor", NULL};
    struct pl_action_filter filter = {0};
    if (!api_query_params(req, res, allowed, &filter.project_id))
        return;
    actions_list_answer(req, res, &who, PL_ACTION_LIST_QUEUE, &filter);
}

void api_actions_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, true, pl_action_store_get, "action");
}

/*
 * The optional reject body {"reason"}: empty or {} is no reason. @returns the body (caller
 * puts it) with *reason borrowed from it (NULL: none), or NULL with the response set.
 */
static json_object *actions_reject_body(struct pl_http_request *req, struct pl_http_response *res,
                                        const char **reason)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, true, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    static const struct pl_field_rule rules[] = {
        {"reason", PL_FIELD_STRING, 1, ACTION_REASON_MAX},
    };
    enum pl_field_result fr = pl_param_check_fields(body, rules, 1, why, sizeof(why));
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return NULL;
    }
    json_object *r;
    *reason = json_object_object_get_ex(body, "reason", &r) ? json_object_get_string(r) : NULL;
    /* text columns and jsonb cannot hold NUL */
    if (*reason && strlen(*reason) != (size_t)json_object_get_string_len(r)) {
        pl_http_error(res, 422, "reason must not contain NUL characters");
        json_object_put(body);
        return NULL;
    }
    return body;
}

/* How long a rejection waits for another decision on the same action to finish. */
#define ACTIONS_DECISION_WAIT_MS 1000

int api_claim_decision(PGconn *conn, const char *tenant_id, const char *id, char current[24],
                       struct pl_pg_error *err)
{
    current[0] = '\0';
    int64_t deadline = pl_now_ms() + ACTIONS_DECISION_WAIT_MS;
    for (;;) {
        int claimed = pl_action_claim(conn, PL_CLAIM_ACTION, id, err);
        if (claimed != 0)
            return claimed;
        char *status = NULL;
        const char *p[2] = {id, tenant_id};
        if (pl_pg_query_text(conn,
                             "SELECT status FROM control_actions WHERE id = $1 AND tenant_id = $2",
                             2, p, &status, err) < 0)
            return -1;
        bool decided = status && strcmp(status, "pending_approval") != 0;
        if (decided)
            snprintf(current, 24, "%s", status);
        free(status);
        if (decided || pl_now_ms() >= deadline)
            return 0;
        pl_sleep_ms(10);
    }
}

void api_actions_reject(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLE_OWNER, true, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    const char *id = req->params[0];
    if (!pl_uuid_valid(id)) {
        pl_http_error(res, 404, "action not found");
        return;
    }
    const char *reason = NULL;
    json_object *body = actions_reject_body(req, res, &reason);
    if (!body)
        return;
    struct pl_service *svc = req->user;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    json_object *result = json_object_new_object();
    json_object_object_add(result, "rejected_by", json_object_new_string(actor));
    json_object_object_add(result, "reason", reason ? json_object_new_string(reason) : NULL);
    /* The kill switch is not consulted: a rejection executes nothing. */
    struct pl_action_change ch = {
        .tenant_id = who.tenant_id,
        .action_id = id,
        .to = PL_ACTION_FAILED,
        .actor = PL_ACTION_BY_OWNER,
        .actor_id = actor,
        .result_json = json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE),
        .reason = reason,
        .events_topic = svc->cfg.kafka_topic_actions,
    };
    PGconn *conn = api_db(req, res);
    if (!conn)
        goto out;
    struct pl_pg_error err;
    char *json = NULL, current[24] = "";
    /* Another decision holds the claim: a rejection is done in milliseconds, so wait a
     * little for it and then answer with the status it left; an approval whose executor runs
     * keeps the claim longer, and the rejection loses to it. */
    int claimed = api_claim_decision(conn, who.tenant_id, id, current, &err);
    enum pl_transition_result r =
        claimed > 0 ? pl_action_transition(conn, &ch, &json, current, &err) : PL_TRANSITION_ERROR;
    if (claimed > 0)
        pl_action_unclaim(conn, PL_CLAIM_ACTION, id);
    api_db_release(req, conn);
    if (claimed == 0 && current[0]) {
        r = PL_TRANSITION_CONFLICT;
    } else if (claimed == 0) {
        pl_http_json(res, 409, api_decision_busy());
        goto out;
    }
    switch (r) {
    case PL_TRANSITION_OK:
        pl_info("action %s rejected by %s", id, actor);
        api_json_owned(res, 200, json);
        break;
    case PL_TRANSITION_NOT_FOUND:
        pl_http_error(res, 404, "action not found");
        break;
    case PL_TRANSITION_CONFLICT:
        api_decision_conflict(res, "reject", current);
        break;
    case PL_TRANSITION_ERROR:
        api_db_error(res, &err);
        break;
    }
out:
    json_object_put(result);
    json_object_put(body);
}

void api_traces_get(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    /* reading a trace acts on nothing: every plan, like the failure clusters */
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    if (!project) { /* trace ids are unique per project only */
        pl_http_error(res, 400, "project_id is required");
        return;
    }
    if (!pl_utf8_valid(req->params[0],
                       strlen(req->params[0]))) { /* ingest accepts UTF-8 ids only: no such trace */
        pl_http_error(res, 404, "trace not found");
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int found = pl_action_store_trace(conn, who.tenant_id, project, req->params[0], &json, &err);
    api_db_release(req, conn);
    api_answer(res, found, json, &err, "trace");
}

void api_decision_conflict(struct pl_http_response *res, const char *verb, const char *current)
{
    json_object *o = json_object_new_object();
    char msg[96]; /* the fixed text, a verb of up to 8 bytes and a status of up to 23 */
    snprintf(msg, sizeof(msg), "cannot %s: the action is %s, not pending_approval", verb, current);
    json_object_object_add(o, "error", json_object_new_string(msg));
    json_object_object_add(o, "status", json_object_new_string(current));
    pl_http_json(res, 409, o);
}

json_object *api_decision_busy(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(
        o, "error",
        json_object_new_string("another decision on the action is in progress (an approval's"
                               " executor is running)"));
    json_object_object_add(o, "status", json_object_new_string("pending_approval"));
    return o;
}
