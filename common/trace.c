/* The ingest contract: a trace checked and summarised in one pass. */
#include "trace.h"

#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Accepts any JSON value: free-form fields (input, output, metadata...). */
#define ANY_KIND PL_JSON_ABSENT

struct trace_field {
    const char *name;
    enum pl_json_kind kind; /* or ANY_KIND */
    bool integer;           /* numbers: no fraction or exponent */
    bool nullable;          /* JSON null allowed */
    size_t max_len;         /* strings: bytes; arrays: items; objects: keys (0 = no limit) */
};

/* In enum pl_trace_field order. */
static const struct trace_field trace_fields[PL_TF_COUNT] = {
    [PL_TF_ID] = {"id", PL_JSON_STRING, false, false, PL_TRACE_ID_MAX},
    [PL_TF_EXTERNAL_ID] = {"external_id", PL_JSON_STRING, false, true, 256},
    [PL_TF_PROJECT_ID] = {"project_id", PL_JSON_STRING, false, false, 36},
    [PL_TF_NAME] = {"name", PL_JSON_STRING, false, true, 256},
    [PL_TF_INPUT] = {"input", ANY_KIND, false, true, 0},
    [PL_TF_OUTPUT] = {"output", ANY_KIND, false, true, 0},
    [PL_TF_MODEL] = {"model", PL_JSON_STRING, false, true, 128},
    [PL_TF_LATENCY_MS] = {"latency_ms", PL_JSON_NUMBER, true, true, 0},
    [PL_TF_COST] = {"cost", PL_JSON_NUMBER, false, true, 0},
    [PL_TF_ERROR] = {"error", PL_JSON_STRING, false, true, 8192},
    [PL_TF_TAGS] = {"tags", PL_JSON_OBJECT, false, true, PL_TRACE_TAGS_MAX},
    [PL_TF_METADATA] = {"metadata", PL_JSON_OBJECT, false, true, 0},
    [PL_TF_SPANS] = {"spans", PL_JSON_ARRAY, false, true, PL_TRACE_SPANS_MAX},
    [PL_TF_EVENTS] = {"events", PL_JSON_ARRAY, false, true, PL_TRACE_EVENTS_MAX},
    [PL_TF_PROMPT] = {"prompt", PL_JSON_OBJECT, false, true, 0},
    [PL_TF_EVAL_SCORES] = {"eval_scores", PL_JSON_OBJECT, false, true, PL_TRACE_SCORES_MAX},
    [PL_TF_CREATED_AT] = {"created_at", PL_JSON_STRING, false, true, 64},
};

/* The span fields checked beyond their type: first in span_fields. */
enum span_field { SF_NAME, SF_TYPE, SF_ERROR };

static const struct trace_field span_fields[] = {
    {"name", PL_JSON_STRING, false, false, 256},  /* SF_NAME */
    {"type", PL_JSON_STRING, false, true, 16},    /* SF_TYPE */
    {"error", PL_JSON_STRING, false, true, 8192}, /* SF_ERROR */
    {"id", PL_JSON_STRING, false, true, PL_TRACE_ID_MAX},
    {"tokens", ANY_KIND, false, true, 0},
    {"start_time", PL_JSON_STRING, false, true, 64},
    {"end_time", PL_JSON_STRING, false, true, 64},
    {"latency_ms", PL_JSON_NUMBER, true, true, 0},
    {"input", ANY_KIND, false, true, 0},
    {"output", ANY_KIND, false, true, 0},
    {"model", PL_JSON_STRING, false, true, 128},
    {"metadata", PL_JSON_OBJECT, false, true, 0},
};

static const char *trace_kind_name(const struct trace_field *f)
{
    switch (f->kind) {
    case PL_JSON_STRING:
        return "a string";
    case PL_JSON_NUMBER:
        return f->integer ? "an integer" : "a number";
    case PL_JSON_OBJECT:
        return "an object";
    case PL_JSON_ARRAY:
        return "an array";
    default:
        return "a value";
    }
}

static size_t trace_size(const struct pl_json_value *v)
{
    return v->kind == PL_JSON_STRING ? v->str.len : v->count;
}

/* Sets err to "<where>.<field> <problem>" and returns status. */
static int trace_fail(char *err, size_t errsz, int status, const char *where, const char *field,
                      const char *problem)
{
    snprintf(err, errsz, "%s%s%s %s", where, *where ? "." : "", field, problem);
    return status;
}

static int trace_syntax(struct pl_json_scan *s, const char *where, char *err, size_t errsz)
{
    if (s->nul) {
        snprintf(err, errsz, "NUL characters (\\u0000) are not supported in traces");
        return 422;
    }
    snprintf(err, errsz, "%s%sinvalid JSON: %s", where, *where ? ": " : "", s->err);
    return 400;
}

/*
 * Scans the object at the cursor member by member against a field table (unknown and
 * mistyped members are 400s, oversize ones 422s), recording each known member in found
 * (indexed like fields). A repeated member is refused: the forwarded text must mean one thing.
 */
static int trace_scan_object(struct pl_json_scan *s, const struct trace_field *fields,
                             size_t nfields, struct pl_json_value *found, const char *where,
                             char *err, size_t errsz)
{
    if (!pl_json_scan_enter(s, '{'))
        return trace_syntax(s, where, err, errsz);
    struct pl_json_str key;
    int r;
    for (size_t i = 0; (r = pl_json_scan_member(s, i, &key)) == 1; i++) {
        const struct trace_field *f = NULL;
        for (size_t k = 0; k < nfields && !f; k++)
            if (pl_json_str_eq(&key, fields[k].name))
                f = &fields[k];
        if (!f) {
            /* At most 64 bytes of it, cut before a UTF-8 continuation byte. */
            size_t cut = key.raw_len < 64 ? key.raw_len : 64;
            while (cut < key.raw_len && cut > 0 && ((unsigned char)key.raw[cut] & 0xc0) == 0x80)
                cut--;
            char name[72];
            snprintf(name, sizeof(name), "%.*s", (int)cut, key.raw);
            snprintf(err, errsz, "%s%sunknown field \"%s\"", where, *where ? ": " : "", name);
            return 400;
        }
        struct pl_json_value *v = &found[f - fields];
        if (v->kind != PL_JSON_ABSENT)
            return trace_fail(err, errsz, 400, where, f->name, "is given twice");
        if (!pl_json_scan_value(s, v))
            return trace_syntax(s, where, err, errsz);
        if (v->kind == PL_JSON_NULL) {
            if (!f->nullable)
                return trace_fail(err, errsz, 400, where, f->name, "must not be null");
            continue;
        }
        if (f->kind != ANY_KIND && (v->kind != f->kind || (f->integer && !v->is_int))) {
            char problem[48];
            snprintf(problem, sizeof(problem), "must be %s", trace_kind_name(f));
            return trace_fail(err, errsz, 400, where, f->name, problem);
        }
        if (f->max_len && trace_size(v) > f->max_len) {
            char problem[64];
            snprintf(problem, sizeof(problem), "is too long (at most %zu %s)", f->max_len,
                     f->kind == PL_JSON_STRING  ? "bytes"
                     : f->kind == PL_JSON_ARRAY ? "items"
                                                : "keys");
            return trace_fail(err, errsz, 422, where, f->name, problem);
        }
    }
    return r == 0 ? 0 : trace_syntax(s, where, err, errsz);
}

static bool trace_present(const struct pl_json_value *v)
{
    return v->kind != PL_JSON_ABSENT && v->kind != PL_JSON_NULL;
}

/* An already scanned number's value. */
static double trace_number(const struct pl_json_value *v)
{
    char buf[72];
    snprintf(buf, sizeof(buf), "%.*s", (int)(v->text_len < 64 ? v->text_len : 64), v->text);
    return strtod(buf, NULL);
}

static int trace_check_spans(struct pl_trace_view *t, const char *where, char *err, size_t errsz)
{
    static const char *const span_types[] = {"llm", "tool", "retrieval", "other"};
    const struct pl_json_value *spans = &t->f[PL_TF_SPANS];
    struct pl_json_scan s;
    pl_json_scan_init(&s, spans->text, spans->text_len);
    pl_json_scan_enter(&s, '[');
    for (size_t i = 0; pl_json_scan_item(&s, i) == 1; i++) {
        char at[96];
        snprintf(at, sizeof(at), "%s%sspans[%zu]", where, *where ? "." : "", i);
        pl_json_scan_ws(&s);
        if (*s.p != '{') {
            snprintf(err, errsz, "%s must be an object", at);
            return 400;
        }
        struct pl_json_value found[sizeof(span_fields) / sizeof(span_fields[0])] = {0};
        int st = trace_scan_object(&s, span_fields, sizeof(span_fields) / sizeof(span_fields[0]),
                                   found, at, err, errsz);
        if (st)
            return st;
        if (!trace_present(&found[SF_NAME]))
            return trace_fail(err, errsz, 400, at, "name", "is required");
        if (trace_present(&found[SF_TYPE])) {
            bool ok = false;
            for (size_t k = 0; k < 4; k++)
                ok |= pl_json_str_eq(&found[SF_TYPE].str, span_types[k]);
            if (!ok)
                return trace_fail(err, errsz, 422, at, "type",
                                  "must be llm, tool, retrieval or other");
        }
        if (trace_present(&found[SF_ERROR]) && found[SF_ERROR].str.len > 0 && t->span_errors++ == 0)
            t->first_span_error = found[SF_ERROR].str;
    }
    return 0;
}

static int trace_check_tags(const struct pl_json_value *tags, const char *where, char *err,
                            size_t errsz)
{
    struct pl_json_scan s;
    pl_json_scan_init(&s, tags->text, tags->text_len);
    pl_json_scan_enter(&s, '{');
    struct pl_json_str key;
    for (size_t i = 0; pl_json_scan_member(&s, i, &key) == 1; i++) {
        struct pl_json_value v;
        pl_json_scan_value(&s, &v);
        if (key.len == 0 || key.len > PL_TRACE_TAG_KEY_MAX)
            return trace_fail(err, errsz, 422, where, "tags", "keys must be 1 to 64 characters");
        if (v.kind != PL_JSON_STRING || v.str.len > 256)
            return trace_fail(err, errsz, 400, where, "tags",
                              "values must be strings of at most 256 bytes");
    }
    return 0;
}

static int trace_check_scores(const struct pl_json_value *scores, const char *where, char *err,
                              size_t errsz)
{
    struct pl_json_scan s;
    pl_json_scan_init(&s, scores->text, scores->text_len);
    pl_json_scan_enter(&s, '{');
    struct pl_json_str key;
    for (size_t i = 0; pl_json_scan_member(&s, i, &key) == 1; i++) {
        struct pl_json_value v;
        pl_json_scan_value(&s, &v);
        if (v.kind != PL_JSON_NUMBER) /* the scanner refused non-finite numbers */
            return trace_fail(err, errsz, 400, where, "eval_scores", "values must be numbers");
    }
    return 0;
}

static int trace_check_prompt(struct pl_trace_view *t, const char *where, char *err, size_t errsz)
{
    static const struct trace_field prompt_fields[] = {
        {"name", ANY_KIND, false, true, 0},
        {"version", ANY_KIND, false, true, 0},
    };
    struct pl_json_value found[2] = {0};
    struct pl_json_scan s;
    pl_json_scan_init(&s, t->f[PL_TF_PROMPT].text, t->f[PL_TF_PROMPT].text_len);
    char at[96];
    snprintf(at, sizeof(at), "%s%sprompt", where, *where ? "." : "");
    if (trace_scan_object(&s, prompt_fields, 2, found, at, err, errsz) != 0)
        return trace_fail(err, errsz, 400, where, "prompt", "takes only name and version");
    const struct pl_json_value *name = &found[0], *version = &found[1];
    if (name->kind != PL_JSON_STRING || name->str.len == 0 || name->str.len > 256)
        return trace_fail(err, errsz, 400, where, "prompt.name", "must be a non-empty string");
    if (trace_present(version) &&
        !(version->kind == PL_JSON_NUMBER && version->is_int && trace_number(version) >= 1) &&
        !(version->kind == PL_JSON_STRING && version->str.len >= 1 && version->str.len <= 64))
        return trace_fail(err, errsz, 400, where, "prompt.version",
                          "must be a positive integer or a version alias");
    t->prompt_name = *name;
    t->prompt_version = *version;
    return 0;
}

int pl_trace_scan(struct pl_json_scan *s, const char *where, struct pl_trace_view *t, char *err,
                  size_t errsz)
{
    memset(t, 0, sizeof(*t));
    if (!pl_json_scan_ws(s) || *s->p != '{') {
        snprintf(err, errsz, "%s%strace must be an object", where, *where ? ": " : "");
        return 400;
    }
    t->text = s->p;
    int st = trace_scan_object(s, trace_fields, PL_TF_COUNT, t->f, where, err, errsz);
    if (st)
        return st;
    t->text_len = (size_t)(s->p - t->text);
    const struct pl_json_value *v = &t->f[PL_TF_PROJECT_ID];
    if (v->kind == PL_JSON_ABSENT)
        return trace_fail(err, errsz, 400, where, "project_id", "is required");
    pl_json_str_decode(&v->str, t->project_id);
    if (!pl_uuid_valid(t->project_id))
        return trace_fail(err, errsz, 400, where, "project_id", "must be a uuid");
    for (char *c = t->project_id; *c; c++)
        *c = (char)tolower((unsigned char)*c); /* one spelling per project downstream */
    v = &t->f[PL_TF_ID];
    if (v->kind != PL_JSON_ABSENT) {
        pl_json_str_decode(&v->str, t->id);
        if (!t->id[0])
            return trace_fail(err, errsz, 422, where, "id", "must not be empty");
        for (size_t i = 0; i < v->str.len; i++)
            if ((unsigned char)t->id[i] < 0x20)
                return trace_fail(err, errsz, 422, where, "id", "has control characters");
    } else {
        unsigned char b[16];
        if (pl_random_bytes(b, sizeof(b)) != 0)
            return trace_fail(err, errsz, 500, where, "id", "could not be generated");
        b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
        b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
        snprintf(t->id, sizeof(t->id),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                 b[15]);
        t->id_generated = true;
    }
    v = &t->f[PL_TF_LATENCY_MS];
    if (trace_present(v) && (trace_number(v) < 0 || trace_number(v) > 86400000.0))
        return trace_fail(err, errsz, 422, where, "latency_ms", "must be between 0 and 86400000");
    v = &t->f[PL_TF_COST];
    if (trace_present(v) && !(trace_number(v) >= 0))
        return trace_fail(err, errsz, 422, where, "cost", "must be a number >= 0");
    if (trace_present(&t->f[PL_TF_TAGS]) &&
        (st = trace_check_tags(&t->f[PL_TF_TAGS], where, err, errsz)) != 0)
        return st;
    if (trace_present(&t->f[PL_TF_EVAL_SCORES]) &&
        (st = trace_check_scores(&t->f[PL_TF_EVAL_SCORES], where, err, errsz)) != 0)
        return st;
    if (trace_present(&t->f[PL_TF_PROMPT]) && (st = trace_check_prompt(t, where, err, errsz)) != 0)
        return st;
    if (trace_present(&t->f[PL_TF_SPANS]))
        return trace_check_spans(t, where, err, errsz);
    return 0;
}

char *pl_trace_envelope(const char *tenant_id, const char *received_at,
                        const struct pl_trace_view *t, size_t *len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "{\"schema_version\":1,\"tenant_id\":\"%s\",\"project_id\":\"%s\","
                     "\"received_at\":\"%s\",\"trace\":",
                     tenant_id, t->project_id, received_at);
    char id[PL_TRACE_ID_MAX + 16] = "";
    int idn = t->id_generated ? snprintf(id, sizeof(id), "\"id\":\"%s\",", t->id) : 0;
    size_t total = (size_t)n + t->text_len + (size_t)idn + 2;
    char *out = malloc(total);
    if (!out)
        return NULL;
    char *p = out;
    memcpy(p, head, (size_t)n);
    p += n;
    /* A generated id goes first in the object; an empty object takes it without a comma. */
    const char *body = t->text + 1;
    size_t body_len = t->text_len - 1;
    *p++ = '{';
    if (idn) {
        bool empty = true;
        for (size_t i = 0; i < body_len && empty; i++)
            empty = strchr(" \t\r\n}", body[i]) != NULL;
        memcpy(p, id, (size_t)idn - (empty ? 1 : 0));
        p += idn - (empty ? 1 : 0);
    }
    memcpy(p, body, body_len);
    p += body_len;
    *p++ = '}';
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}

const char *pl_json_value_text(const struct pl_json_value *v, struct pl_text_buf *b)
{
    if (v->kind == PL_JSON_ABSENT || v->kind == PL_JSON_NULL)
        return NULL;
    const char *src = v->kind == PL_JSON_STRING ? v->str.raw : v->text;
    size_t len = v->kind == PL_JSON_STRING ? v->str.raw_len : v->text_len;
    if (b->cap < len + 1) {
        size_t cap = len + 1 > 2 * b->cap ? len + 1 : 2 * b->cap;
        char *p = realloc(b->p, cap);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    if (v->kind == PL_JSON_STRING && v->str.escaped) {
        pl_json_str_decode(&v->str, b->p);
    } else {
        memcpy(b->p, src, len);
        b->p[len] = '\0';
    }
    return b->p;
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

bool pl_trace_timestamp_ok(const char *s)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return false;
    int y = pl_digits(s, 4), mo = pl_digits(s + 5, 2), d = pl_digits(s + 8, 2),
        h = pl_digits(s + 11, 2), mi = pl_digits(s + 14, 2), sec = pl_digits(s + 17, 2);
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59)
        return false;
    const char *end = s + 19;
    if (*end == '.') {
        int digits = 0;
        for (end++; *end >= '0' && *end <= '9'; end++)
            digits++;
        if (digits < 1 || digits > 6)
            return false;
    }
    return end[0] == 'Z' && end[1] == '\0';
}
