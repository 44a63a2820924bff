/* /v1/policies (architecture §7): what the control loop does when a trace of a project fails.
 * Changes are owner-only, every role reads, and only plans with the control loop have them.
 * A policy is validated as a whole — its parameters against its trigger and action types —
 * before it is stored, so the controller never meets a policy it cannot run. */
#include "api.h"

#include "params.h"
#include "policy_store.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enumerations and ids are checked after the field rules (an unknown value is a 422, not a
 * length error), so their length bound is no bound. */
static const struct pl_field_rule policy_fields[] = {
    {"project_id", PL_FIELD_STRING, 0, INT_MAX},
    {"name", PL_FIELD_STRING, 1, 200},
    {"description", PL_FIELD_STRING, 0, 2000},
    {"status", PL_FIELD_STRING, 0, INT_MAX},
    {"trigger_type", PL_FIELD_STRING, 0, INT_MAX},
    {"trigger_params", PL_FIELD_OBJECT, 0, 0},
    {"rule_id", PL_FIELD_STRING, 0, INT_MAX}, /* or null: any rule */
    {"action_type", PL_FIELD_STRING, 0, INT_MAX},
    {"action_params", PL_FIELD_OBJECT, 0, 0},
    {"rule_yaml", PL_FIELD_STRING, 0, 65536}, /* or null */
    {"priority", PL_FIELD_INT, 0, 10000},
    {"rollout_pct", PL_FIELD_INT, 0, 100},
    {"dry_run", PL_FIELD_BOOL, 0, 0},
    {"max_retry_depth", PL_FIELD_INT, 1, 10},
    {"max_cascade_depth", PL_FIELD_INT, 1, 20},
};
#define POLICY_NFIELDS (sizeof(policy_fields) / sizeof(policy_fields[0]))

/* Members of a stored policy that no request may set. */
static const char *const policy_fixed[] = {"id",         "tenant_id",  "project_id",
                                           "created_by", "created_at", "updated_at"};
#define POLICY_NFIXED (sizeof(policy_fixed) / sizeof(policy_fixed[0]))

static const char *const policy_statuses[] = {"draft", "active", "paused", "archived", NULL};
static const char *const policy_triggers[] = {"eval_score", "failure_rate", NULL};
static const char *const policy_actions[] = {"retry",    "fallback_model", "prompt_modification",
                                             "escalate", "block",          NULL};

/* The status list filter and the status field say the same thing when refused. */
#define POLICY_STATUS_ERROR "status must be one of draft, active, paused, archived"
#define POLICY_RULE_ERROR   "rule_id must be the id of an eval rule of the policy's project"

/* How often a change is validated again when the policy changed while it was checked. */
#define POLICY_UPDATE_ATTEMPTS 3

/* One member of trigger_params or action_params. */
struct policy_param {
    const char *name;
    enum { PARAM_INT, PARAM_OPEN_FRACTION, PARAM_TEXT } kind;
    long long min, max; /* ints: value range; text: length range (bytes) */
    bool required;
    long long def; /* ints that are not required: stored when the member is absent (0: none) */
};

/* The parameters of one trigger or action type; `note` explains a refusal when not NULL. */
struct policy_params {
    const char *type;
    const struct policy_param *params;
    size_t n;
    bool exactly_one; /* of params (alternatives) */
    const char *note;
};

static const struct policy_param failure_rate_params[] = {
    {"window_s", PARAM_INT, 1, 86400, false, 3600},
    {"threshold", PARAM_OPEN_FRACTION, 0, 1, true, 0},
    {"min_traces", PARAM_INT, 1, 1000000, false, 20},
};
static const struct policy_param fallback_model_params[] = {
    {"model", PARAM_TEXT, 1, 200, true, 0},
};
/* Alternatives: a text to append to the system prompt, or a registry version of the trace's
 * own prompt. */
static const struct policy_param prompt_modification_params[] = {
    {"append_system", PARAM_TEXT, 1, 32768, false, 0},
    {"version", PARAM_INT, 1, INT_MAX, false, 0},
};

static const struct policy_params trigger_params[] = {
    {"eval_score", NULL, 0, false, NULL},
    {"failure_rate", failure_rate_params, 3, false, NULL},
};
static const struct policy_params action_params[] = {
    {"retry", NULL, 0, false, "a retry uses the trace's own messages and model"},
    {"fallback_model", fallback_model_params, 1, false, NULL},
    {"prompt_modification", prompt_modification_params, 2, true, NULL},
    {"escalate", NULL, 0, false, NULL},
    {"block", NULL, 0, false, NULL},
};

static bool policy_one_of(const char *value, const char *const *values)
{
    for (const char *const *v = values; *v; v++)
        if (strcmp(value, *v) == 0)
            return true;
    return false;
}

/* "a, b, c" of a NULL-terminated list, for messages. */
static void policy_list_text(const char *const *values, char *buf, size_t bufsz)
{
    size_t len = 0;
    buf[0] = '\0';
    for (const char *const *v = values; *v && len < bufsz; v++)
        len += (size_t)snprintf(buf + len, bufsz - len, "%s%s", v == values ? "" : ", ", *v);
}

/* True when a string anywhere in v holds a NUL character, which PostgreSQL's text and jsonb
 * cannot store. */
static bool policy_has_nul(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
        return strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v);
    case json_type_object: {
        json_object_object_foreach(v, key, val)
        {
            (void)key;
            if (policy_has_nul(val))
                return true;
        }
        return false;
    }
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++)
            if (policy_has_nul(json_object_array_get_idx(v, i)))
                return true;
        return false;
    default:
        return false;
    }
}

/*
 * Checks params (an object) against the parameters of its type. @returns the object to
 * store — the given members with the defaults of absent ones (caller puts it) — or NULL
 * with why naming the member ("trigger_params.threshold ...").
 */
static json_object *policy_params_check(const char *what, const struct policy_params *spec,
                                        json_object *params, char *why, size_t whysz)
{
    json_object_object_foreach(params, key, val)
    {
        (void)val;
        bool known = false;
        for (size_t i = 0; i < spec->n; i++)
            known = known || strcmp(spec->params[i].name, key) == 0;
        if (!known) {
            snprintf(why, whysz, "%s.%s is not a parameter of %s%s%s%s", what, key, spec->type,
                     spec->note ? " (" : "", spec->note ? spec->note : "", spec->note ? ")" : "");
            return NULL;
        }
    }
    json_object *out = json_object_new_object();
    for (size_t i = 0; i < spec->n; i++) {
        const struct policy_param *p = &spec->params[i];
        json_object *v;
        if (!json_object_object_get_ex(params, p->name, &v)) {
            if (p->required) {
                snprintf(why, whysz, "%s.%s is required for %s", what, p->name, spec->type);
                json_object_put(out);
                return NULL;
            }
            if (p->kind == PARAM_INT && p->def)
                json_object_object_add(out, p->name, json_object_new_int64(p->def));
            continue;
        }
        bool ok = false;
        switch (p->kind) {
        case PARAM_INT:
            ok = json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= p->min &&
                 json_object_get_int64(v) <= p->max;
            if (!ok)
                snprintf(why, whysz, "%s.%s must be an integer between %lld and %lld", what,
                         p->name, p->min, p->max);
            break;
        case PARAM_OPEN_FRACTION:
            ok = (json_object_is_type(v, json_type_int) ||
                  json_object_is_type(v, json_type_double)) &&
                 json_object_get_double(v) > (double)p->min &&
                 json_object_get_double(v) <= (double)p->max;
            if (!ok)
                snprintf(why, whysz, "%s.%s must be a number greater than %lld and at most %lld",
                         what, p->name, p->min, p->max);
            break;
        case PARAM_TEXT:
            ok = json_object_is_type(v, json_type_string) &&
                 json_object_get_string_len(v) >= p->min && json_object_get_string_len(v) <= p->max;
            if (!ok)
                snprintf(why, whysz, "%s.%s must be a string of %lld to %lld characters", what,
                         p->name, p->min, p->max);
            break;
        }
        if (!ok) {
            json_object_put(out);
            return NULL;
        }
        json_object_object_add(out, p->name, json_object_get(v));
    }
    if (spec->exactly_one && json_object_object_length(out) != 1) {
        snprintf(why, whysz,
                 "%s must hold exactly one of append_system (a text for the system prompt)"
                 " and version (a registry version of the trace's prompt)",
                 what);
        json_object_put(out);
        return NULL;
    }
    return out;
}

/* Replaces p's member `what` (absent: {}) with its checked form for the type named by
 * p's member `type_field`; false with why when it is refused. */
static bool policy_params_apply(json_object *p, const char *what, const char *type_field,
                                const struct policy_params *specs, size_t nspecs, char *why,
                                size_t whysz)
{
    const char *type = json_object_get_string(json_object_object_get(p, type_field));
    const struct policy_params *spec = NULL;
    for (size_t i = 0; type && i < nspecs; i++)
        if (strcmp(specs[i].type, type) == 0)
            spec = &specs[i];
    if (!spec) { /* policy_valid checked the type first */
        snprintf(why, whysz, "%s is not known", type_field);
        return false;
    }
    json_object *given = NULL;
    json_object_object_get_ex(p, what, &given);
    json_object *empty = given ? NULL : json_object_new_object();
    json_object *checked = policy_params_check(what, spec, given ? given : empty, why, whysz);
    json_object_put(empty);
    if (!checked)
        return false;
    json_object_object_add(p, what, checked);
    return true;
}

json_object *api_action_params_check(const char *action_type, json_object *params, const char *what,
                                     char *why, size_t whysz)
{
    for (size_t i = 0; i < sizeof(action_params) / sizeof(action_params[0]); i++)
        if (strcmp(action_params[i].type, action_type) == 0)
            return policy_params_check(what, &action_params[i], params, why, whysz);
    snprintf(why, whysz, "action_type %s is not known", action_type);
    return NULL;
}

/*
 * Checks a whole policy (the create body, or the stored policy with a change merged in)
 * beyond what the field rules check, and puts the parameters in their stored form. Sets a
 * 422 naming the field and returns false when something is refused.
 */
static bool policy_valid(json_object *p, struct pl_http_response *res)
{
    char why[512], values[128];
    static const struct {
        const char *field;
        const char *const *values;
    } enums[] = {
        {"status", policy_statuses},
        {"trigger_type", policy_triggers},
        {"action_type", policy_actions},
    };
    for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
        json_object *v;
        if (json_object_object_get_ex(p, enums[i].field, &v) &&
            !policy_one_of(json_object_get_string(v), enums[i].values)) {
            policy_list_text(enums[i].values, values, sizeof(values));
            pl_http_error(res, 422, "%s must be one of %s", enums[i].field, values);
            return false;
        }
    }
    json_object *rule;
    if (json_object_object_get_ex(p, "rule_id", &rule) && rule &&
        !pl_uuid_valid(json_object_get_string(rule))) {
        pl_http_error(res, 422, POLICY_RULE_ERROR);
        return false;
    }
    if (!policy_params_apply(p, "trigger_params", "trigger_type", trigger_params,
                             sizeof(trigger_params) / sizeof(trigger_params[0]), why,
                             sizeof(why)) ||
        !policy_params_apply(p, "action_params", "action_type", action_params,
                             sizeof(action_params) / sizeof(action_params[0]), why, sizeof(why))) {
        pl_http_error(res, 422, "%s", why);
        return false;
    }
    return true;
}

/*
 * Parses a request body and checks every member on its own: unknown members and wrong types
 * are 400, values out of range 422; rule_id and rule_yaml may be null. fixed_refused: a
 * member of policy_fixed is named as one that cannot change (PATCH) rather than unknown.
 * @returns the body (caller puts it), or NULL with the response set.
 */
static json_object *policy_body(struct pl_http_request *req, struct pl_http_response *res,
                                bool fixed_refused)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    for (size_t i = 0; fixed_refused && i < POLICY_NFIXED; i++)
        if (json_object_object_get_ex(body, policy_fixed[i], NULL)) {
            pl_http_error(res, 400, "%s cannot be changed", policy_fixed[i]);
            json_object_put(body);
            return NULL;
        }
    /* The field rules know no null: a null rule_id or rule_yaml is left out of their check. */
    json_object *typed = json_object_new_object();
    json_object_object_foreach(body, key, val)
    {
        if (!val && (strcmp(key, "rule_id") == 0 || strcmp(key, "rule_yaml") == 0))
            continue;
        json_object_object_add(typed, key, json_object_get(val));
    }
    enum pl_field_result fr =
        pl_param_check_fields(typed, policy_fields, POLICY_NFIELDS, why, sizeof(why));
    json_object_put(typed);
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return NULL;
    }
    json_object_object_foreach(body, field, value)
    {
        if (policy_has_nul(value)) {
            pl_http_error(res, 422, "%s must not contain NUL characters", field);
            json_object_put(body);
            return NULL;
        }
    }
    return body;
}

static const char *policy_text(json_object *obj)
{
    return json_object_to_json_string_ext(obj,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* 409 for a policy that cannot change now, with its status (like a refused transition). */
static void policy_conflict(struct pl_http_response *res, const char *message, const char *status)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(message));
    json_object_object_add(o, "status", json_object_new_string(status));
    pl_http_json(res, 409, o);
}

void api_policies_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, true, &who))
        return;
    static const char *const allowed[] = {"project_id", "status", "limit", "offset", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    const char *status = pl_http_query(req, "status");
    if (status && !policy_one_of(status, policy_statuses)) {
        pl_http_error(res, 400, POLICY_STATUS_ERROR);
        return;
    }
    long long limit, offset;
    if (!api_page_params(req, res, &limit, &offset))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_policy_store_list(conn, who.tenant_id, project, status, limit, offset, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}

void api_policies_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, true, pl_policy_store_get, "policy");
}

void api_policies_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLE_OWNER, true, &who))
        return;
    json_object *body = policy_body(req, res, false);
    if (!body)
        return;
    static const char *const required[] = {"project_id", "name", "trigger_type", "action_type"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!json_object_object_get_ex(body, required[i], NULL)) {
            pl_http_error(res, 400, "%s is required", required[i]);
            goto out;
        }
    /* as for eval rules: a malformed project is bad input, another tenant's one is a 404 */
    if (!pl_uuid_valid(json_object_get_string(json_object_object_get(body, "project_id")))) {
        pl_http_error(res, 400, "project_id must be a uuid");
        goto out;
    }
    if (!policy_valid(body, res))
        goto out;
    PGconn *conn = api_db(req, res);
    if (!conn)
        goto out;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    char *json = NULL;
    enum pl_policy_result r =
        pl_policy_store_create(conn, who.tenant_id, actor, policy_text(body), &json, &err);
    api_db_release(req, conn);
    if (r == PL_POLICY_OK)
        api_json_owned(res, 201, json);
    else if (r == PL_POLICY_NOT_FOUND)
        pl_http_error(res, 404, "project not found");
    else if (r == PL_POLICY_BAD_RULE)
        pl_http_error(res, 422, POLICY_RULE_ERROR);
    else
        api_db_error(res, &err);
out:
    json_object_put(body);
}

/*
 * One attempt at a change: reads the policy, merges patch into it, validates the result and
 * writes it if the policy is unchanged since the read. @returns STALE when it was changed
 * meanwhile (nothing written, no response set, status holds the status read); otherwise
 * the response is set.
 */
static enum pl_policy_result policy_update_once(struct pl_http_request *req,
                                                struct pl_http_response *res, PGconn *conn,
                                                const struct pl_principal *who, json_object *patch,
                                                char status[16])
{
    struct pl_pg_error err;
    char *current = NULL;
    int found = pl_policy_store_get(conn, who->tenant_id, req->params[0], &current, &err);
    if (found < 0) {
        api_db_error(res, &err);
        return PL_POLICY_ERROR;
    }
    if (!found) {
        pl_http_error(res, 404, "policy not found");
        return PL_POLICY_NOT_FOUND;
    }
    json_object *merged = json_tokener_parse(current);
    free(current);
    if (!merged) {
        pl_http_error(res, 500, "internal error");
        return PL_POLICY_ERROR;
    }
    enum pl_policy_result r = PL_POLICY_ERROR;
    char updated_at[64];
    snprintf(updated_at, sizeof(updated_at), "%s",
             json_object_get_string(json_object_object_get(merged, "updated_at")));
    snprintf(status, 16, "%s", json_object_get_string(json_object_object_get(merged, "status")));
    if (strcmp(status, "archived") == 0) {
        policy_conflict(res, "an archived policy cannot be changed", "archived");
        r = PL_POLICY_ARCHIVED;
        goto out;
    }
    json_object_object_foreach(patch, key, val)
    {
        json_object_object_add(merged, key, json_object_get(val));
    }
    for (size_t i = 0; i < POLICY_NFIXED; i++)
        json_object_object_del(merged, policy_fixed[i]);
    if (!policy_valid(merged, res))
        goto out;
    char actor[PL_ACTOR_SIZE];
    api_actor(who, actor, sizeof(actor));
    char *json = NULL;
    r = pl_policy_store_update(conn, who->tenant_id, req->params[0], actor, policy_text(merged),
                               policy_text(patch), updated_at, &json, &err);
    switch (r) {
    case PL_POLICY_OK:
        api_json_owned(res, 200, json);
        break;
    case PL_POLICY_NOT_FOUND:
        pl_http_error(res, 404, "policy not found");
        break;
    case PL_POLICY_ARCHIVED:
        policy_conflict(res, "an archived policy cannot be changed", "archived");
        break;
    case PL_POLICY_BAD_RULE:
        pl_http_error(res, 422, POLICY_RULE_ERROR);
        break;
    case PL_POLICY_STALE:
        break;
    case PL_POLICY_ERROR:
        api_db_error(res, &err);
        break;
    }
out:
    json_object_put(merged);
    return r;
}

void api_policies_update(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, true, "policy", &who))
        return;
    json_object *patch = policy_body(req, res, true);
    if (!patch)
        return;
    if (json_object_object_length(patch) == 0) {
        pl_http_error(res, 400, "no fields to change");
        json_object_put(patch);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn) {
        json_object_put(patch);
        return;
    }
    /* A change is validated against the policy as read; when another change lands in
     * between, it is validated again against the newer policy rather than written over it. */
    enum pl_policy_result r = PL_POLICY_STALE;
    char status[16] = "";
    for (int i = 0; i < POLICY_UPDATE_ATTEMPTS && r == PL_POLICY_STALE; i++)
        r = policy_update_once(req, res, conn, &who, patch, status);
    if (r == PL_POLICY_STALE)
        policy_conflict(res, "the policy is being changed by other requests; retry", status);
    api_db_release(req, conn);
    json_object_put(patch);
}

void api_policies_delete(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, true, "policy", &who))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    struct pl_pg_error err;
    enum pl_policy_result r =
        pl_policy_store_archive(conn, who.tenant_id, req->params[0], actor, &err);
    api_db_release(req, conn);
    if (r == PL_POLICY_OK) /* archived now, or already: the same answer */
        pl_http_text(res, 204, "application/json", NULL);
    else if (r == PL_POLICY_NOT_FOUND)
        pl_http_error(res, 404, "policy not found");
    else
        api_db_error(res, &err);
}
