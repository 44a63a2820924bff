/* One remediation of a failing trace (see remediate.h). */
#include "remediate.h"

#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *remediate_dup_or_null(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) || !*PQgetvalue(res, 0, col) ? NULL
                                                                 : strdup(PQgetvalue(res, 0, col));
}

int pl_remediation_trace_load(PGconn *conn, const char *tenant_id, const char *project_id,
                              const char *trace_id, struct pl_remediation_trace *out,
                              struct pl_pg_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *p[3] = {tenant_id, project_id, trace_id};
    PGresult *res =
        pl_pg_query_prepared(conn, "pl_remediation_trace_load",
                             "SELECT coalesce(input::text, '\"\"'), model, output, latency_ms,"
                             " eval::text, prompt_name"
                             " FROM traces WHERE tenant_id = $1 AND project_id = $2 AND id = $3",
                             3, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    snprintf(out->tenant_id, sizeof(out->tenant_id), "%s", tenant_id);
    snprintf(out->project_id, sizeof(out->project_id), "%s", project_id);
    out->trace_id = strdup(trace_id);
    out->input = json_tokener_parse(PQgetvalue(res, 0, 0));
    if (!out->input)
        out->input = json_object_new_string("");
    out->model = remediate_dup_or_null(res, 1);
    out->output = PQgetisnull(res, 0, 2) ? NULL : strdup(PQgetvalue(res, 0, 2));
    out->latency_ms = PQgetisnull(res, 0, 3) ? -1 : pl_pg_getll(res, 0, 3);
    out->eval = PQgetisnull(res, 0, 4) ? NULL : json_tokener_parse(PQgetvalue(res, 0, 4));
    out->prompt_name = remediate_dup_or_null(res, 5);
    PQclear(res);
    return 1;
}

void pl_remediation_trace_free(struct pl_remediation_trace *t)
{
    free(t->trace_id);
    json_object_put(t->input);
    free(t->model);
    free(t->output);
    json_object_put(t->eval);
    free(t->prompt_name);
    memset(t, 0, sizeof(*t));
}

/* The system message of registry version `version` of the trace's prompt: 1 + *out (caller
 * frees), 0 when there is none, -1 with err. */
static int remediate_registry_system(PGconn *conn, const struct pl_remediation_trace *t,
                                     int version, char **out, struct pl_pg_error *err)
{
    *out = NULL;
    char v[16];
    snprintf(v, sizeof(v), "%d", version);
    const char *p[4] = {t->tenant_id, t->project_id, t->prompt_name, v};
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT v.manifest::text FROM prompts p JOIN prompt_versions v"
                    " ON v.prompt_id = p.id WHERE p.tenant_id = $1 AND p.project_id = $2"
                    " AND p.name = $3 AND v.version = $4::int",
                    4, p, err);
    if (!res)
        return -1;
    json_object *manifest = PQntuples(res) ? json_tokener_parse(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    const char *system = manifest ? pl_registry_manifest_system(manifest) : NULL;
    if (system)
        *out = strdup(system);
    json_object_put(manifest);
    return *out ? 1 : 0;
}

/* The trace's first system message, or NULL. */
static const char *remediate_trace_system(json_object *input)
{
    json_object *msgs;
    if (!json_object_is_type(input, json_type_object) ||
        !json_object_object_get_ex(input, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *e = json_object_array_get_idx(msgs, i), *role, *content;
        if (json_object_object_get_ex(e, "role", &role) &&
            json_object_object_get_ex(e, "content", &content) &&
            json_object_is_type(content, json_type_string) &&
            strcmp(json_object_get_string(role), "system") == 0)
            return json_object_get_string(content);
    }
    return NULL;
}

/* The conversation: the given system prompt (when not NULL) first, then the trace's other
 * messages; an input without messages is one user message. */
static struct pl_llm_message *remediate_messages(json_object *input, const char *system, size_t *n)
{
    json_object *msgs = NULL;
    size_t len = 0;
    if (json_object_is_type(input, json_type_object) &&
        json_object_object_get_ex(input, "messages", &msgs) &&
        json_object_is_type(msgs, json_type_array))
        len = json_object_array_length(msgs);
    struct pl_llm_message *m = calloc(len + 2, sizeof(*m));
    if (!m)
        return NULL;
    size_t k = 0;
    if (system)
        m[k++] = (struct pl_llm_message){"system", system};
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(msgs, i), *role, *content;
        if (!json_object_object_get_ex(e, "role", &role) ||
            !json_object_is_type(role, json_type_string) ||
            !json_object_object_get_ex(e, "content", &content) ||
            !json_object_is_type(content, json_type_string) ||
            strcmp(json_object_get_string(role), "system") == 0)
            continue;
        m[k++] =
            (struct pl_llm_message){json_object_get_string(role), json_object_get_string(content)};
    }
    if (k == (system ? 1u : 0u)) /* no usable conversation: the input itself is the question */
        m[k++] = (struct pl_llm_message){
            "user", json_object_is_type(input, json_type_string)
                        ? json_object_get_string(input)
                        : json_object_to_json_string_ext(input, JSON_C_TO_STRING_PLAIN)};
    *n = k;
    return m;
}

static const char *remediate_param_text(json_object *params, const char *key)
{
    json_object *v;
    return params && json_object_object_get_ex(params, key, &v) &&
                   json_object_is_type(v, json_type_string) && *json_object_get_string(v)
               ? json_object_get_string(v)
               : NULL;
}

int pl_remediation_prepare(PGconn *conn, const struct pl_remediation_trace *t,
                           enum pl_action_kind kind, json_object *action_params,
                           struct pl_remediation *out, char *why, size_t whysz,
                           struct pl_pg_error *err)
{
    memset(out, 0, sizeof(*out));
    why[0] = '\0';
    const char *system = remediate_trace_system(t->input);
    const char *model = t->model;
    if (kind == PL_ACTION_FALLBACK_MODEL) {
        model = remediate_param_text(action_params, "model");
        if (!model) {
            snprintf(why, whysz, "fallback_model needs action_params.model");
            return 1;
        }
    } else if (kind == PL_ACTION_PROMPT_MODIFICATION) {
        const char *append = remediate_param_text(action_params, "append_system");
        json_object *version;
        if (append) {
            size_t len = (system ? strlen(system) + 2 : 0) + strlen(append) + 1;
            if (!(out->system = malloc(len)))
                goto oom;
            snprintf(out->system, len, "%s%s%s", system ? system : "", system ? "\n\n" : "",
                     append);
        } else if (action_params && json_object_object_get_ex(action_params, "version", &version) &&
                   json_object_is_type(version, json_type_int)) {
            if (!t->prompt_name) {
                snprintf(why, whysz, "the trace names no registry prompt to take version %d of",
                         json_object_get_int(version));
                return 1;
            }
            int rc =
                remediate_registry_system(conn, t, json_object_get_int(version), &out->system, err);
            if (rc <= 0) {
                if (rc == 0)
                    snprintf(why, whysz, "prompt %.128s has no version %d with a system message",
                             t->prompt_name, json_object_get_int(version));
                return rc < 0 ? -1 : 1;
            }
        } else {
            snprintf(why, whysz,
                     "prompt_modification needs action_params.append_system or .version");
            return 1;
        }
        system = out->system;
    } else if (kind != PL_ACTION_RETRY) {
        snprintf(why, whysz, "%s is not a remediation", pl_action_kind_name(kind));
        return 1;
    }
    if (system && !out->system && !(out->system = strdup(system)))
        goto oom;
    if (model && !(out->model = strdup(model)))
        goto oom;
    out->messages = remediate_messages(t->input, out->system, &out->call.nmessages);
    if (!out->messages)
        goto oom;
    out->call.messages = out->messages;
    out->call.model = out->model;
    out->call.temperature = -1;
    return 0;
oom:
    pl_remediation_clear(out);
    snprintf(err->message, sizeof(err->message), "out of memory");
    err->sqlstate[0] = '\0';
    return -1;
}

void pl_remediation_clear(struct pl_remediation *r)
{
    pl_llm_call_clear(&r->call);
    free(r->messages);
    free(r->system);
    free(r->model);
    memset(r, 0, sizeof(*r));
}

/* {passed, score, feedback} of the trace's own evaluation of a metric, or NULL when the
 * detector recorded none. */
static json_object *remediate_original(json_object *eval, const char *metric)
{
    json_object *e, *passed, *feedback;
    if (!eval || !json_object_object_get_ex(eval, metric, &e) ||
        !json_object_object_get_ex(e, "passed", &passed))
        return NULL;
    bool ok = json_object_get_boolean(passed);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "passed", json_object_new_boolean(ok));
    json_object_object_add(o, "score", json_object_new_double(ok ? 1.0 : 0.0));
    json_object_object_add(
        o, "feedback",
        json_object_object_get_ex(e, "feedback", &feedback) ? json_object_get(feedback) : NULL);
    return o;
}

char *pl_remediation_result(const struct pl_remediation_trace *t, const struct pl_rule_set *rules,
                            const struct pl_remediation *r, bool *passed)
{
    json_object *o = json_object_new_object();
    *passed = false;
    if (!r->call.ok) {
        json_object_object_add(o, "error", json_object_new_string(r->call.error));
        json_object_object_add(o, "attempts", json_object_new_int(r->call.attempts));
        json_object_object_add(o, "passed", json_object_new_boolean(false));
    } else {
        const char *output = r->call.content ? r->call.content : "";
        struct pl_eval_input in = {.output = output};
        json_object *evals = json_object_new_array();
        bool all = true;
        for (size_t i = 0; i < rules->n; i++) {
            struct pl_eval_result res;
            pl_eval_rule_run(rules->rules[i], &in, &res);
            all = all && res.passed;
            json_object *e = json_object_new_object();
            json_object_object_add(e, "eval_rule_id", json_object_new_string(rules->ids[i]));
            json_object_object_add(e, "rule_name", json_object_new_string(rules->metrics[i]));
            json_object_object_add(e, "context", json_object_new_string("remediation"));
            json_object_object_add(e, "passed", json_object_new_boolean(res.passed));
            json_object_object_add(e, "score", json_object_new_double(res.passed ? 1.0 : 0.0));
            json_object_object_add(e, "feedback", json_object_new_string(res.feedback));
            json_object_object_add(e, "original", remediate_original(t->eval, rules->metrics[i]));
            json_object_array_add(evals, e);
        }
        *passed = all;
        json_object_object_add(o, "output", json_object_new_string(output));
        json_object_object_add(o, "model", r->model ? json_object_new_string(r->model) : NULL);
        json_object_object_add(o, "latency_ms", json_object_new_int64(r->call.latency_ms));
        json_object_object_add(o, "prompt_tokens", json_object_new_int64(r->call.prompt_tokens));
        json_object_object_add(o, "completion_tokens",
                               json_object_new_int64(r->call.completion_tokens));
        json_object_object_add(o, "passed", json_object_new_boolean(all));
        json_object_object_add(o, "evaluations", evals);
    }
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

char *pl_remediation_refused(const char *why)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(why));
    json_object_object_add(o, "passed", json_object_new_boolean(false));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

char *pl_remediation_execute(PGconn *conn, struct pl_llm_client *llm,
                             const struct pl_remediation_trace *t, const struct pl_rule_set *rules,
                             enum pl_action_kind kind, json_object *action_params, bool *executed,
                             bool *passed, struct pl_pg_error *err)
{
    *executed = *passed = false;
    struct pl_remediation r;
    char why[256];
    int rc = pl_remediation_prepare(conn, t, kind, action_params, &r, why, sizeof(why), err);
    if (rc < 0)
        return NULL;
    if (rc > 0)
        return pl_remediation_refused(why);
    pl_llm_run(llm, &r.call, 1);
    *executed = r.call.ok;
    char *result = pl_remediation_result(t, rules, &r, passed);
    pl_remediation_clear(&r);
    return result;
}

long long pl_remediation_tokens(const char *text)
{
    return text ? (long long)((strlen(text) + 3) / 4) : 0;
}
