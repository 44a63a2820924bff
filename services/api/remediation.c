/* The routes that run the executor (architecture §7): POST /v1/control/execute takes an action on a
 * trace through the same gates as the controller, POST /v1/control/actions/{id}/approve runs
 * an escalation's intended action once, and GET /v1/control/actions/{id}/diff compares a
 * remediated output with the original. Both executing routes answer 503 kill_switch_active
 * while the tenant's switch is on, and call the LLM synchronously (common/remediate.h). */
#include "action.h"
#include "api.h"
#include "control.h"
#include "killswitch.h"
#include "log.h"
#include "params.h"
#include "remediate.h"
#include "trace.h"
#include "util.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Requests running the executor at once. Each holds a pooled connection (and its claim) for
 * the LLM call, so at most half the pool may be busy with them; the rest answers 503. */
static atomic_int remediation_running;

static bool remediation_enter(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_service *svc = req->user;
    int cap = svc->cfg.pg_pool_size / 2 > 0 ? svc->cfg.pg_pool_size / 2 : 1;
    if (atomic_fetch_add(&remediation_running, 1) >= cap) {
        atomic_fetch_sub(&remediation_running, 1);
        snprintf(res->retry_after, sizeof(res->retry_after), "1");
        pl_http_error(res, 503, "too many remediations in progress; retry later");
        return false;
    }
    return true;
}

static void remediation_leave(void)
{
    atomic_fetch_sub(&remediation_running, 1);
}

/* The gates' depths of an action taken through the API: the policy defaults. */
#define EXECUTE_MAX_RETRY_DEPTH   3
#define EXECUTE_MAX_CASCADE_DEPTH 5

/* 503 when the tenant's kill switch is on; false also after a database error (answered). */
static bool remediation_switch_off(PGconn *conn, const char *tenant_id,
                                   struct pl_http_response *res)
{
    bool active = false;
    struct pl_pg_error err;
    if (pl_killswitch_get(conn, tenant_id, &active, &err) != 0) {
        api_db_error(res, &err);
        return false;
    }
    if (active)
        pl_http_error(res, 503, "kill_switch_active");
    return !active;
}

/* Runs remediation `kind` with params on trace t: the result JSON (caller frees)
 * and whether the LLM answered, or NULL with the response set (500, 503). */
static char *remediation_run(struct pl_http_request *req, struct pl_http_response *res,
                             PGconn *conn, const struct pl_remediation_trace *t,
                             enum pl_action_kind kind, json_object *params, bool *executed)
{
    struct pl_service *svc = req->user;
    struct pl_rule_set rules = {0};
    struct pl_pg_error err;
    char *result = NULL;
    char why[256];
    struct pl_llm_client *llm = pl_llm_client_new(&svc->cfg, why, sizeof(why));
    if (!llm) {
        pl_error("api: LLM client: %s", why);
        pl_http_error(res, 500, "the LLM client could not be created");
    } else if (pl_eval_rule_store_load(conn, t->tenant_id, t->project_id, &rules, &err) != 0) {
        api_db_error(res, &err);
    } else {
        bool passed;
        result =
            pl_remediation_execute(conn, llm, t, &rules, kind, params, executed, &passed, &err);
        if (!result) {
            api_db_error(res, &err);
        } else if (!*executed && !pl_running) { /* cut short by shutdown: not a step */
            free(result);
            result = NULL;
            pl_http_error(res, 503, "shutting down");
        }
    }
    pl_llm_client_free(llm);
    pl_rule_set_free(&rules);
    return result;
}

/* The execute body: {project_id, action_type, trace_id, rule_id?, payload?}. Wrong types and
 * unknown members are 400; unknown action types and bad payloads 422. */
static json_object *execute_body(struct pl_http_request *req, struct pl_http_response *res,
                                 enum pl_action_kind *kind, json_object **params)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    json_object *v;
    if (json_object_object_get_ex(body, "rule_id", &v) && !v)
        json_object_object_del(body, "rule_id"); /* null: no rule */
    static const struct pl_field_rule rules[] = {
        {"project_id", PL_FIELD_STRING, 0, INT_MAX},
        {"action_type", PL_FIELD_STRING, 1, 64},
        {"trace_id", PL_FIELD_STRING, 1, PL_TRACE_ID_MAX},
        {"rule_id", PL_FIELD_STRING, 0, INT_MAX},
        {"payload", PL_FIELD_OBJECT, 0, 0},
    };
    enum pl_field_result fr = pl_param_check_fields(body, rules, 5, why, sizeof(why));
    int status = fr == PL_FIELDS_BAD_REQUEST ? 400 : 422;
    const char *missing = NULL;
    for (const char *const *f =
             (const char *const[]){"project_id", "action_type", "trace_id", NULL};
         *f && !missing; f++)
        if (!json_object_object_get_ex(body, *f, &v))
            missing = *f;
    if (fr == PL_FIELDS_OK && missing) {
        snprintf(why, sizeof(why), "%s is required", missing);
        fr = PL_FIELDS_BAD_REQUEST;
        status = 400;
    }
    const char *type = json_object_get_string(json_object_object_get(body, "action_type"));
    const char *trace = json_object_get_string(json_object_object_get(body, "trace_id"));
    const char *rule = json_object_get_string(json_object_object_get(body, "rule_id"));
    if (fr == PL_FIELDS_OK &&
        !pl_uuid_valid(json_object_get_string(json_object_object_get(body, "project_id")))) {
        snprintf(why, sizeof(why), "project_id must be a UUID");
        fr = PL_FIELDS_BAD_REQUEST, status = 400;
    } else if (fr == PL_FIELDS_OK && rule && !pl_uuid_valid(rule)) {
        snprintf(why, sizeof(why), "rule_id must be a UUID");
        fr = PL_FIELDS_BAD_REQUEST, status = 400;
    } else if (fr == PL_FIELDS_OK &&
               strlen(trace) !=
                   (size_t)json_object_get_string_len(json_object_object_get(body, "trace_id"))) {
        snprintf(why, sizeof(why), "trace_id must not contain NUL characters");
        fr = PL_FIELDS_UNPROCESSABLE, status = 422;
    } else if (fr == PL_FIELDS_OK && pl_action_kind_parse(type, kind) != 0) {
        snprintf(why, sizeof(why),
                 "action_type must be one of retry, fallback_model, prompt_modification,"
                 " escalate, block");
        fr = PL_FIELDS_UNPROCESSABLE, status = 422;
    }
    json_object *payload = NULL, *empty = NULL;
    if (fr == PL_FIELDS_OK) {
        if (!json_object_object_get_ex(body, "payload", &payload))
            payload = empty = json_object_new_object();
        *params = api_action_params_check(type, payload, "payload", why, sizeof(why));
        json_object_put(empty);
        if (!*params)
            fr = PL_FIELDS_UNPROCESSABLE, status = 422;
    }
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, status, "%s", why);
        json_object_put(body);
        return NULL;
    }
    return body;
}

/* Remediations (all) and API retries already taken on the trace, for the gates. */
static int execute_counts(PGconn *conn, const char *project_id, const char *trace_id,
                          int *remediations, int *retries, struct pl_pg_error *err)
{
    const char *p[2] = {project_id, trace_id};
    PGresult *r =
        pl_pg_query(conn,
                    "SELECT count(*) FILTER (WHERE action_type IN ('retry', 'fallback_model',"
                    "   'prompt_modification')),"
                    " count(*) FILTER (WHERE action_type = 'retry' AND policy_id IS NULL)"
                    " FROM control_actions WHERE project_id = $1 AND trace_id = $2"
                    " AND status IN ('executed', 'failed')",
                    2, p, err);
    if (!r)
        return -1;
    *remediations = (int)pl_pg_getll(r, 0, 0);
    *retries = (int)pl_pg_getll(r, 0, 1);
    PQclear(r);
    return 0;
}

/* 1 when the rule is one of the project's, 0 when not, -1 with err. */
static int execute_rule_known(PGconn *conn, const char *tenant_id, const char *project_id,
                              const char *rule_id, struct pl_pg_error *err)
{
    const char *p[3] = {rule_id, tenant_id, project_id};
    char *v = NULL;
    int rc = pl_pg_query_text(conn,
                              "SELECT id::text FROM eval_rules WHERE id = $1 AND tenant_id = $2"
                              " AND project_id = $3",
                              3, p, &v, err);
    free(v);
    return rc;
}

static char *execute_payload(enum pl_action_kind kind, json_object *params)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "intended_action", json_object_new_string(pl_action_kind_name(kind)));
    json_object_object_add(o, "action_params", json_object_get(params));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

void api_control_execute(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLE_OWNER, true, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    enum pl_action_kind kind;
    json_object *params = NULL;
    json_object *body = execute_body(req, res, &kind, &params);
    if (!body)
        return;
    const char *project = json_object_get_string(json_object_object_get(body, "project_id"));
    const char *trace = json_object_get_string(json_object_object_get(body, "trace_id"));
    const char *rule = json_object_get_string(json_object_object_get(body, "rule_id"));
    struct pl_service *svc = req->user;
    struct pl_pg_error err;
    char *result = NULL, *payload = execute_payload(kind, params), *json = NULL;
    char claim[PL_TRACE_ID_MAX + 40];
    snprintf(claim, sizeof(claim), "%s/%s", project, trace);
    bool entered = false;
    int claimed = 0;
    struct pl_remediation_trace t = {0};
    PGconn *conn = NULL;
    if (!(entered = remediation_enter(req, res)) || !(conn = api_db(req, res)) ||
        !remediation_switch_off(conn, who.tenant_id, res))
        goto out;
    /* the gates count and the action is stored under one claim on the trace, so two
     * concurrent executes cannot both pass a gate that admits one */
    if ((claimed = pl_action_claim(conn, PL_CLAIM_TRACE, claim, &err)) <= 0) {
        if (claimed == 0)
            pl_http_error(res, 409, "another action is running on this trace; retry later");
        else
            api_db_error(res, &err);
        goto out;
    }
    int rc = pl_remediation_trace_load(conn, who.tenant_id, project, trace, &t, &err);
    if (rc == 1 && rule)
        rc = execute_rule_known(conn, who.tenant_id, project, rule, &err);
    if (rc <= 0) {
        if (rc == 0)
            pl_http_error(res, 404, "%s not found", rule ? "trace or eval rule" : "trace");
        else
            api_db_error(res, &err);
        goto out;
    }
    int remediations, retries;
    if (execute_counts(conn, project, trace, &remediations, &retries, &err) != 0) {
        api_db_error(res, &err);
        goto out;
    }
    struct pl_gate_decision g;
    pl_control_gate(kind, remediations, retries, EXECUTE_MAX_RETRY_DEPTH, EXECUTE_MAX_CASCADE_DEPTH,
                    &g);
    enum pl_action_status status = PL_ACTION_EXECUTED;
    if (g.kind == PL_ACTION_ESCALATE) {
        status = PL_ACTION_PENDING_APPROVAL;
    } else if (g.kind == PL_ACTION_BLOCK) {
        result = strdup("{\"blocked\":true}");
    } else {
        bool executed;
        result = remediation_run(req, res, conn, &t, kind, params, &executed);
        if (!result)
            goto out;
        status = executed ? PL_ACTION_EXECUTED : PL_ACTION_FAILED;
    }
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_action_new a = {
        .tenant_id = who.tenant_id,
        .project_id = project,
        .trace_id = trace,
        .rule_id = rule,
        .attempt_next = true,
        .action_type = pl_action_kind_name(g.kind),
        .status = status,
        .payload_json = payload,
        .result_json = result,
        .escalation_reason = g.escalation_reason,
        .retry_count = g.retry_count,
        .require_approval = g.require_approval,
        .actor_id = actor,
        .events_topic = svc->cfg.kafka_topic_actions,
    };
    char id[37];
    if (pl_action_create(conn, &a, id, &json, &err) != PL_TRANSITION_OK) {
        api_db_error(res, &err);
        goto out;
    }
    pl_info("action %s on trace %s: %s %s by %s", id, trace, a.action_type,
            pl_action_status_name(status), actor);
    api_json_owned(res, 201, json);
out:
    if (claimed > 0)
        pl_action_unclaim(conn, PL_CLAIM_TRACE, claim);
    if (conn)
        api_db_release(req, conn);
    if (entered)
        remediation_leave();
    pl_remediation_trace_free(&t);
    free(result);
    free(payload);
    json_object_put(params);
    json_object_put(body);
}

/* The stored action an approval acts on. */
struct approve_target {
    char status[24], project_id[37];
    char *trace_id;
    enum pl_action_kind intended;
    json_object *params;
};

/* 1 found, 0 not, -1 with err. */
static int approve_load(PGconn *conn, const char *tenant_id, const char *id,
                        struct approve_target *a, struct pl_pg_error *err)
{
    memset(a, 0, sizeof(*a));
    const char *p[2] = {id, tenant_id};
    PGresult *r = pl_pg_query(conn,
                              "SELECT status, project_id, trace_id,"
                              " coalesce(payload ->> 'intended_action', action_type),"
                              " coalesce(payload -> 'action_params', '{}')::text"
                              " FROM control_actions WHERE id = $1 AND tenant_id = $2",
                              2, p, err);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        snprintf(a->status, sizeof(a->status), "%s", PQgetvalue(r, 0, 0));
        snprintf(a->project_id, sizeof(a->project_id), "%s", PQgetvalue(r, 0, 1));
        a->trace_id = strdup(PQgetvalue(r, 0, 2));
        if (pl_action_kind_parse(PQgetvalue(r, 0, 3), &a->intended) != 0)
            a->intended = PL_ACTION_ESCALATE;
        a->params = json_tokener_parse(PQgetvalue(r, 0, 4));
    }
    PQclear(r);
    return found;
}

void api_actions_approve(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, true, "action", &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    const char *id = req->params[0];
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, true, why, sizeof(why));
    if (!body || json_object_object_length(body) > 0) {
        pl_http_error(res, 400, "%s", body ? "approve takes no body members" : why);
        json_object_put(body);
        return;
    }
    json_object_put(body);
    struct pl_service *svc = req->user;
    struct approve_target a = {0};
    struct pl_remediation_trace t = {0};
    struct pl_pg_error err;
    char actor[PL_ACTOR_SIZE], *result = NULL, *json = NULL, current[24] = "";
    api_actor(&who, actor, sizeof(actor));
    if (!remediation_enter(req, res))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn) {
        remediation_leave();
        return;
    }
    /* claimed before the status is read, so the executor runs for one decision only: a
     * concurrent approve, reject or timeout finds the claim taken and loses */
    int claimed = api_claim_decision(conn, who.tenant_id, id, current, &err);
    if (claimed <= 0) {
        if (claimed < 0)
            api_db_error(res, &err);
        else if (current[0])
            api_decision_conflict(res, "approve", current);
        else
            pl_http_json(res, 409, api_decision_busy());
        goto out;
    }
    int found = approve_load(conn, who.tenant_id, id, &a, &err);
    if (found <= 0) {
        if (found == 0)
            pl_http_error(res, 404, "action not found");
        else
            api_db_error(res, &err);
        goto out;
    }
    if (strcmp(a.status, "pending_approval") != 0) {
        api_decision_conflict(res, "approve", a.status);
        goto out;
    }
    if (!remediation_switch_off(conn, who.tenant_id, res))
        goto out;
    enum pl_action_status to = PL_ACTION_EXECUTED;
    json_object *r;
    if (pl_action_is_remediation(a.intended)) { /* the executor runs the intended step once */
        bool executed;
        int found_trace =
            pl_remediation_trace_load(conn, who.tenant_id, a.project_id, a.trace_id, &t, &err);
        if (found_trace <= 0) {
            if (found_trace == 0)
                pl_http_error(res, 404, "trace not found");
            else
                api_db_error(res, &err);
            goto out;
        }
        result = remediation_run(req, res, conn, &t, a.intended, a.params, &executed);
        if (!result)
            goto out;
        to = executed ? PL_ACTION_EXECUTED : PL_ACTION_FAILED;
        r = json_tokener_parse(result);
    } else {
        r = json_object_new_object();
    }
    json_object_object_add(r, "approved_by", json_object_new_string(actor));
    free(result);
    result = strdup(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN));
    json_object_put(r);
    struct pl_action_change ch = {
        .tenant_id = who.tenant_id,
        .action_id = id,
        .to = to,
        .actor = PL_ACTION_BY_OWNER,
        .actor_id = actor,
        .result_json = result,
        .reason = "approved",
        .events_topic = svc->cfg.kafka_topic_actions,
    };
    switch (pl_action_transition(conn, &ch, &json, current, &err)) {
    case PL_TRANSITION_OK:
        pl_info("action %s approved by %s: %s", id, actor, pl_action_status_name(to));
        api_json_owned(res, 200, json);
        break;
    case PL_TRANSITION_NOT_FOUND:
        pl_http_error(res, 404, "action not found");
        break;
    case PL_TRANSITION_CONFLICT: /* a reject (or another approve) won the race */
        api_decision_conflict(res, "approve", current);
        break;
    case PL_TRANSITION_ERROR:
        api_db_error(res, &err);
        break;
    }
out:
    if (claimed > 0)
        pl_action_unclaim(conn, PL_CLAIM_ACTION, id);
    api_db_release(req, conn);
    remediation_leave();
    pl_remediation_trace_free(&t);
    free(a.trace_id);
    json_object_put(a.params);
    free(result);
}

/* {eval_rule_id, rule_name, original_score, remediated_score, delta} of one evaluation. */
static json_object *diff_score(json_object *ev)
{
    json_object *o = json_object_new_object(), *v, *orig = NULL, *os = NULL;
    json_object_object_add(o, "eval_rule_id",
                           json_object_object_get_ex(ev, "eval_rule_id", &v) ? json_object_get(v)
                                                                             : NULL);
    json_object_object_add(
        o, "rule_name", json_object_object_get_ex(ev, "rule_name", &v) ? json_object_get(v) : NULL);
    json_object_object_get_ex(ev, "original", &orig);
    if (orig)
        json_object_object_get_ex(orig, "score", &os);
    double remediated = json_object_object_get_ex(ev, "score", &v) ? json_object_get_double(v) : 0;
    json_object_object_add(o, "original_score", os ? json_object_get(os) : NULL);
    json_object_object_add(o, "remediated_score", json_object_new_double(remediated));
    json_object_object_add(
        o, "delta", os ? json_object_new_double(remediated - json_object_get_double(os)) : NULL);
    return o;
}

void api_actions_diff(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLES_ANY, true, "action", &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    const char *p[2] = {req->params[0], who.tenant_id};
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    PGresult *r = pl_pg_query(conn,
                              "SELECT a.status, coalesce(a.result::text, 'null'), t.output,"
                              " t.latency_ms FROM control_actions a LEFT JOIN traces t"
                              " ON t.project_id = a.project_id AND t.id = a.trace_id COLLATE \"C\""
                              " WHERE a.id = $1 AND a.tenant_id = $2",
                              2, p, &err);
    api_db_release(req, conn);
    if (!r) {
        api_db_error(res, &err);
        return;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        pl_http_error(res, 404, "action not found");
        return;
    }
    const char *status = PQgetvalue(r, 0, 0);
    json_object *result = json_tokener_parse(PQgetvalue(r, 0, 1)), *output = NULL, *v;
    json_object *o = json_object_new_object();
    if (strcmp(status, "pending") == 0 || strcmp(status, "pending_approval") == 0) {
        json_object_object_add(o, "status", json_object_new_string(status));
        json_object_object_add(o, "message",
                               json_object_new_string("the remediation has not run yet"));
        pl_http_json(res, 202, o);
    } else if (!result || !json_object_object_get_ex(result, "output", &output)) {
        json_object_object_add(o, "error",
                               json_object_new_string("the action has no remediated output"));
        json_object_object_add(o, "status", json_object_new_string(status));
        pl_http_json(res, 409, o);
    } else {
        const char *original = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2);
        json_object_object_add(o, "action_id", json_object_new_string(req->params[0]));
        json_object_object_add(
            o, "token_length_delta",
            json_object_new_int64(pl_remediation_tokens(json_object_get_string(output)) -
                                  pl_remediation_tokens(original)));
        bool latency = !PQgetisnull(r, 0, 3) && json_object_object_get_ex(result, "latency_ms", &v);
        json_object_object_add(
            o, "latency_delta_ms",
            latency ? json_object_new_int64(json_object_get_int64(v) - pl_pg_getll(r, 0, 3))
                    : NULL);
        json_object *deltas = json_object_new_array(), *evs;
        if (json_object_object_get_ex(result, "evaluations", &evs) &&
            json_object_is_type(evs, json_type_array))
            for (size_t i = 0; i < json_object_array_length(evs); i++)
                json_object_array_add(deltas, diff_score(json_object_array_get_idx(evs, i)));
        json_object_object_add(o, "score_deltas", deltas);
        pl_http_json(res, 200, o);
    }
    json_object_put(result);
    PQclear(r);
}
