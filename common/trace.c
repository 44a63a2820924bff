#include "trace.h"

#include "util.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Accepts any JSON value: free-form fields (input, output, metadata...). */
#define ANY_TYPE (-1)

struct trace_field {
    const char *name;
    int type;       /* json_type, or ANY_TYPE */
    bool nullable;  /* JSON null allowed */
    size_t max_len; /* strings: bytes; arrays: items; objects: keys (0 = no limit) */
};

static const struct trace_field trace_fields[] = {
    {"id", json_type_string, false, PL_TRACE_ID_MAX},
    {"external_id", json_type_string, true, 256},
    {"project_id", json_type_string, false, 36},
    {"name", json_type_string, true, 256},
    {"input", ANY_TYPE, true, 0},
    {"output", ANY_TYPE, true, 0},
    {"model", json_type_string, true, 128},
    {"latency_ms", json_type_int, true, 0},
    {"cost", json_type_double, true, 0},
    {"error", json_type_string, true, 8192},
    {"tags", json_type_object, true, PL_TRACE_TAGS_MAX},
    {"metadata", json_type_object, true, 0},
    {"spans", json_type_array, true, PL_TRACE_SPANS_MAX},
    {"events", json_type_array, true, PL_TRACE_EVENTS_MAX},
    {"prompt", json_type_object, true, 0},
    {"eval_scores", json_type_object, true, PL_TRACE_SCORES_MAX},
    {"created_at", json_type_string, true, 64},
};

static const struct trace_field span_fields[] = {
    {"id", json_type_string, true, PL_TRACE_ID_MAX},
    {"name", json_type_string, false, 256},
    {"type", json_type_string, true, 16},
    {"error", json_type_string, true, 8192},
    {"tokens", ANY_TYPE, true, 0},
    {"start_time", json_type_string, true, 64},
    {"end_time", json_type_string, true, 64},
    {"latency_ms", json_type_int, true, 0},
    {"input", ANY_TYPE, true, 0},
    {"output", ANY_TYPE, true, 0},
    {"model", json_type_string, true, 128},
    {"metadata", json_type_object, true, 0},
};

static const char *const trace_type_names[] = {
    [json_type_null] = "null",        [json_type_boolean] = "a boolean",
    [json_type_double] = "a number",  [json_type_int] = "an integer",
    [json_type_object] = "an object", [json_type_array] = "an array",
    [json_type_string] = "a string",
};

/* Numbers: a JSON integer is also a fine "number". */
static bool trace_type_ok(json_object *v, int want)
{
    if (want == ANY_TYPE)
        return true;
    enum json_type t = json_object_get_type(v);
    if (want == json_type_double)
        return t == json_type_double || t == json_type_int;
    return (int)t == want;
}

static size_t trace_size(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
        return (size_t)json_object_get_string_len(v);
    case json_type_array:
        return json_object_array_length(v);
    case json_type_object:
        return (size_t)json_object_object_length(v);
    default:
        return 0;
    }
}

/* Checks obj's members against a field table: unknown and mistyped members are 400s,
 * oversize ones 422s. */
static int trace_check_object(json_object *obj, const struct trace_field *fields, size_t nfields,
                              const char *where, char *err, size_t errsz)
{
    json_object_object_foreach(obj, key, val)
    {
        const struct trace_field *f = NULL;
        for (size_t i = 0; i < nfields && !f; i++)
            if (strcmp(fields[i].name, key) == 0)
                f = &fields[i];
        if (!f) {
            snprintf(err, errsz, "%s%sunknown field \"%s\"", where, *where ? ": " : "", key);
            return 400;
        }
        if (val == NULL) {
            if (!f->nullable) {
                snprintf(err, errsz, "%s%s%s must not be null", where, *where ? "." : "", key);
                return 400;
            }
            continue;
        }
        if (!trace_type_ok(val, f->type)) {
            snprintf(err, errsz, "%s%s%s must be %s", where, *where ? "." : "", key,
                     trace_type_names[f->type]);
            return 400;
        }
        if (f->max_len && trace_size(val) > f->max_len) {
            snprintf(err, errsz, "%s%s%s is too long (at most %zu %s)", where, *where ? "." : "",
                     key, f->max_len,
                     f->type == json_type_string  ? "bytes"
                     : f->type == json_type_array ? "items"
                                                  : "keys");
            return 422;
        }
    }
    return 0;
}

/* Sets err to "<where>.<field> <problem>" and returns status. */
static int trace_fail(char *err, size_t errsz, int status, const char *where, const char *field,
                      const char *problem)
{
    snprintf(err, errsz, "%s%s%s %s", where, *where ? "." : "", field, problem);
    return status;
}

static int trace_check_spans(json_object *spans, const char *where, char *err, size_t errsz)
{
    static const char *const span_types[] = {"llm", "tool", "retrieval", "other"};
    for (size_t i = 0; i < json_object_array_length(spans); i++) {
        json_object *s = json_object_array_get_idx(spans, i);
        char at[96];
        snprintf(at, sizeof(at), "%s%sspans[%zu]", where, *where ? "." : "", i);
        if (!json_object_is_type(s, json_type_object)) {
            snprintf(err, errsz, "%s must be an object", at);
            return 400;
        }
        int st = trace_check_object(s, span_fields, sizeof(span_fields) / sizeof(span_fields[0]),
                                    at, err, errsz);
        if (st)
            return st;
        json_object *v;
        if (!json_object_object_get_ex(s, "name", &v) || !v)
            return trace_fail(err, errsz, 400, at, "name", "is required");
        if (json_object_object_get_ex(s, "type", &v) && v) {
            bool ok = false;
            for (size_t k = 0; k < 4; k++)
                ok |= strcmp(json_object_get_string(v), span_types[k]) == 0;
            if (!ok)
                return trace_fail(err, errsz, 422, at, "type",
                                  "must be llm, tool, retrieval or other");
        }
    }
    return 0;
}

int pl_trace_validate(json_object *trace, const char *where, char *err, size_t errsz)
{
    if (!json_object_is_type(trace, json_type_object)) {
        snprintf(err, errsz, "%s%strace must be an object", where, *where ? ": " : "");
        return 400;
    }
    int st = trace_check_object(trace, trace_fields, sizeof(trace_fields) / sizeof(trace_fields[0]),
                                where, err, errsz);
    if (st)
        return st;
    json_object *v;
    if (!json_object_object_get_ex(trace, "project_id", &v))
        return trace_fail(err, errsz, 400, where, "project_id", "is required");
    if (!pl_uuid_valid(json_object_get_string(v)))
        return trace_fail(err, errsz, 400, where, "project_id", "must be a uuid");
    if (json_object_object_get_ex(trace, "id", &v)) {
        const char *id = json_object_get_string(v);
        if (!*id)
            return trace_fail(err, errsz, 422, where, "id", "must not be empty");
        for (const char *p = id; *p; p++)
            if ((unsigned char)*p < 0x20)
                return trace_fail(err, errsz, 422, where, "id", "has control characters");
    } else {
        unsigned char b[16];
        if (pl_random_bytes(b, sizeof(b)) != 0)
            return trace_fail(err, errsz, 500, where, "id", "could not be generated");
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        char id[37];
        snprintf(id, sizeof(id),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                 b[15]);
        json_object_object_add(trace, "id", json_object_new_string(id));
    }
    if (json_object_object_get_ex(trace, "latency_ms", &v) && v &&
        (json_object_get_int64(v) < 0 || json_object_get_int64(v) > 86400000LL))
        return trace_fail(err, errsz, 422, where, "latency_ms", "must be between 0 and 86400000");
    if (json_object_object_get_ex(trace, "cost", &v) && v) {
        double c = json_object_get_double(v);
        if (!isfinite(c) || c < 0)
            return trace_fail(err, errsz, 422, where, "cost", "must be a number >= 0");
    }
    if (json_object_object_get_ex(trace, "tags", &v) && v) {
        json_object_object_foreach(v, tk, tv)
        {
            if (strlen(tk) == 0 || strlen(tk) > PL_TRACE_TAG_KEY_MAX)
                return trace_fail(err, errsz, 422, where, "tags",
                                  "keys must be 1 to 64 characters");
            if (!tv || !json_object_is_type(tv, json_type_string) ||
                json_object_get_string_len(tv) > 256)
                return trace_fail(err, errsz, 400, where, "tags",
                                  "values must be strings of at most 256 bytes");
        }
    }
    if (json_object_object_get_ex(trace, "eval_scores", &v) && v) {
        json_object_object_foreach(v, sk, sv)
        {
            (void)sk;
            if (!sv || !trace_type_ok(sv, json_type_double) ||
                !isfinite(json_object_get_double(sv)))
                return trace_fail(err, errsz, 400, where, "eval_scores", "values must be numbers");
        }
    }
    if (json_object_object_get_ex(trace, "prompt", &v) && v) {
        json_object *name, *version;
        if (!json_object_object_get_ex(v, "name", &name) ||
            !json_object_is_type(name, json_type_string) || json_object_get_string_len(name) == 0 ||
            json_object_get_string_len(name) > 256)
            return trace_fail(err, errsz, 400, where, "prompt.name", "must be a non-empty string");
        if (json_object_object_get_ex(v, "version", &version) && version &&
            !(json_object_is_type(version, json_type_int) && json_object_get_int64(version) >= 1) &&
            !(json_object_is_type(version, json_type_string) &&
              json_object_get_string_len(version) >= 1 &&
              json_object_get_string_len(version) <= 64))
            return trace_fail(err, errsz, 400, where, "prompt.version",
                              "must be a positive integer or a version alias");
        if (json_object_object_length(v) > 2 ||
            (json_object_object_length(v) == 2 && !json_object_object_get_ex(v, "version", NULL)))
            return trace_fail(err, errsz, 400, where, "prompt", "takes only name and version");
    }
    if (json_object_object_get_ex(trace, "spans", &v) && v)
        return trace_check_spans(v, where, err, errsz);
    return 0;
}

char *pl_trace_envelope(const char *tenant_id, const char *project_id, const char *received_at,
                        json_object *trace)
{
    json_object *env = json_object_new_object();
    json_object_object_add(env, "schema_version", json_object_new_int(1));
    json_object_object_add(env, "tenant_id", json_object_new_string(tenant_id));
    json_object_object_add(env, "project_id", json_object_new_string(project_id));
    json_object_object_add(env, "received_at", json_object_new_string(received_at));
    json_object_object_add(env, "trace", json_object_get(trace));
    char *text = strdup(json_object_to_json_string_ext(env, JSON_C_TO_STRING_PLAIN |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(env);
    return text;
}

static const char *trace_str(json_object *obj, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

const char *pl_trace_output(json_object *trace)
{
    json_object *v;
    if (!json_object_object_get_ex(trace, "output", &v) || !v)
        return NULL;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

const char *pl_trace_error(json_object *trace, int *span_errors)
{
    const char *first = trace_str(trace, "error");
    json_object *spans;
    *span_errors = 0;
    if (json_object_object_get_ex(trace, "spans", &spans) &&
        json_object_is_type(spans, json_type_array))
        for (size_t i = 0; i < json_object_array_length(spans); i++) {
            const char *se = trace_str(json_object_array_get_idx(spans, i), "error");
            if (se && *se) {
                (*span_errors)++;
                if (!first || !*first)
                    first = se;
            }
        }
    return first && *first ? first : NULL;
}
