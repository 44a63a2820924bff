/* libFuzzer target: the strict JSON of trace ingest (json_scan.c, trace.c) and of request
 * bodies (pl_json_object_parse in params.c), each checked against the others. */
#include "fuzz.h"

#include "json_scan.h"
#include "params.h"
#include "trace.h"
#include "util.h"
#include "worker.h"

#include <ctype.h>
#include <json-c/json.h>

#define TENANT   "11111111-2222-4333-8444-555555555555"
#define RECEIVED "2026-01-31T12:00:00.000000Z"

/* A scanned string decodes to exactly its counted bytes: valid UTF-8 without NUL. */
static void check_str(const struct pl_json_str *str)
{
    char *out = malloc(str->len + 1);
    if (!out)
        abort();
    pl_json_str_decode(str, out);
    FUZZ_CHECK(strlen(out) == str->len, "decoded %zu bytes, counted %zu", strlen(out), str->len);
    FUZZ_CHECK(fuzz_utf8_valid(out, str->len), "decoded string is not valid UTF-8");
    if (!str->escaped)
        FUZZ_CHECK(str->len == str->raw_len && memcmp(out, str->raw, str->len) == 0,
                   "unescaped string differs from its raw text");
    if (str->len < 200)
        FUZZ_CHECK(pl_json_str_eq(str, out), "a string is not equal to its own decoding");
    free(out);
}

/* The deepest nesting walk() met: containers, and whether the deepest holds a value. */
static int walk_depth;
static bool walk_deep_value;

/* Walks the value at the cursor with the iteration API (enter, member, item) and compares
 * every container with what pl_json_scan_value makes of the same text. */
static bool walk(struct pl_json_scan *s)
{
    if (!pl_json_scan_ws(s))
        return false;
    char open = *s->p;
    if (open != '{' && open != '[') {
        struct pl_json_value v;
        if (!pl_json_scan_value(s, &v))
            return false;
        if (v.kind == PL_JSON_STRING)
            check_str(&v.str);
        if (s->depth >= walk_depth)
            walk_deep_value = true;
        return true;
    }
    const char *start = s->p;
    int depth = s->depth;
    if (!pl_json_scan_enter(s, open))
        return false;
    if (s->depth > walk_depth) {
        walk_depth = s->depth;
        walk_deep_value = false;
    }
    size_t n = 0;
    int r;
    struct pl_json_str key;
    while ((r = open == '{' ? pl_json_scan_member(s, n, &key) : pl_json_scan_item(s, n)) == 1) {
        if (open == '{') {
            check_str(&key);
            if (s->depth >= walk_depth)
                walk_deep_value = true;
        }
        if (!walk(s))
            return false;
        n++;
    }
    if (r < 0)
        return false;
    FUZZ_CHECK(s->depth == depth, "depth %d after a container entered at %d", s->depth, depth);
    struct pl_json_scan again;
    struct pl_json_value v;
    pl_json_scan_init(&again, start, (size_t)(s->p - start));
    again.depth = depth;
    FUZZ_CHECK(pl_json_scan_value(&again, &v), "value scan refuses what iteration took: %s",
               again.err);
    FUZZ_CHECK(again.p == s->p && v.count == n && v.text == start,
               "value scan and iteration disagree (%zu vs %zu items)", v.count, n);
    return true;
}

/* The envelope read back as the detector reads it (services/detector/detect.c): the trace
 * counted from its own top, whatever the envelope's depth. */
static void check_envelope(const struct pl_trace_view *t)
{
    size_t len = 0;
    char *env = pl_trace_envelope(TENANT, RECEIVED, t, &len);
    FUZZ_CHECK(env && strlen(env) == len, "envelope length");
    struct pl_json_scan s;
    pl_json_scan_init(&s, env, len);
    FUZZ_CHECK(pl_json_scan_enter(&s, '{'), "envelope is not an object: %s", s.err);
    struct pl_json_str key;
    int r;
    bool seen = false;
    for (size_t i = 0; (r = pl_json_scan_member(&s, i, &key)) == 1; i++) {
        if (!pl_json_str_eq(&key, "trace")) {
            struct pl_json_value v;
            FUZZ_CHECK(pl_json_scan_value(&s, &v), "envelope member: %s", s.err);
            continue;
        }
        struct pl_trace_view *back = malloc(sizeof(*back));
        char why[512];
        int depth = s.depth;
        s.depth = 0;
        int st = pl_trace_scan(&s, "trace", back, why, sizeof(why));
        s.depth = depth;
        FUZZ_CHECK(st == 0, "the envelope's trace is refused (%d): %s", st, why);
        FUZZ_CHECK(strcmp(back->id, t->id) == 0 && !back->id_generated, "id %s became %s", t->id,
                   back->id);
        FUZZ_CHECK(strcmp(back->project_id, t->project_id) == 0, "project_id changed");
        FUZZ_CHECK(back->span_errors == t->span_errors, "span errors changed");
        free(back);
        seen = true;
    }
    FUZZ_CHECK(r == 0 && pl_json_scan_done(&s) && seen, "envelope: %s", s.err);
    /* The monitor reads the same message as a json-c tree (services/monitor/watch.c). */
    static const char *const uuid_fields[] = {"tenant_id", "project_id", NULL};
    rd_kafka_message_t msg = {.payload = env, .len = len};
    char why[256] = "";
    json_object *tree = pl_worker_parse_event(&msg, uuid_fields, why, sizeof(why));
    FUZZ_CHECK(tree, "the monitor refuses the envelope of an accepted trace: %s", why);
    json_object *trace, *id;
    FUZZ_CHECK(json_object_object_get_ex(tree, "trace", &trace) &&
                   json_object_object_get_ex(trace, "id", &id) &&
                   strcmp(json_object_get_string(id), t->id) == 0,
               "the monitor reads another trace id");
    json_object_put(tree);
    free(env);
}

static void check_trace(const char *text, size_t size)
{
    struct pl_json_scan s;
    pl_json_scan_init(&s, text, size);
    struct pl_trace_view *t = malloc(sizeof(*t));
    char why[512] = "";
    int st = pl_trace_scan(&s, "", t, why, sizeof(why));
    FUZZ_CHECK(st == 0 || st == 400 || st == 422, "status %d", st);
    if (st != 0) {
        FUZZ_CHECK(why[0] != '\0', "status %d without a reason", st);
        free(t);
        return;
    }
    FUZZ_CHECK(t->text >= text && t->text + t->text_len <= text + size && t->text_len >= 2 &&
                   t->text[0] == '{' && t->text[t->text_len - 1] == '}',
               "trace slice");
    FUZZ_CHECK(pl_uuid_valid(t->project_id), "project_id %s", t->project_id);
    for (const char *c = t->project_id; *c; c++)
        FUZZ_CHECK(!isupper((unsigned char)*c), "project_id not lower case: %s", t->project_id);
    size_t idlen = strlen(t->id);
    FUZZ_CHECK(idlen >= 1 && idlen <= PL_TRACE_ID_MAX, "id length %zu", idlen);
    for (size_t i = 0; i < idlen; i++)
        FUZZ_CHECK((unsigned char)t->id[i] >= 0x20, "control character in id");
    FUZZ_CHECK(t->span_errors == 0 || t->first_span_error.len > 0, "first span error is empty");
    /* What the ingest scanner took is one value for the plain scanner too. */
    struct pl_json_scan plain;
    struct pl_json_value v;
    pl_json_scan_init(&plain, t->text, t->text_len);
    FUZZ_CHECK(pl_json_scan_value(&plain, &v) && pl_json_scan_done(&plain),
               "the trace's text does not scan: %s", plain.err);
    check_envelope(t);
    free(t);
}

static void check_strict(const char *text, size_t size, bool scan_ok,
                         const struct pl_json_value *top)
{
    char err[256] = "";
    json_object *obj = pl_json_object_parse(text, size, false, "it", err, sizeof(err));
    if (!obj) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
        /* The scanner is the tree parser's equal except for the checks only the latter
         * makes (repeated keys, numbers an int64 or a double cannot hold), and json-c counts
         * a value inside the deepest container as one more level of its 32. */
        bool json_c_depth = walk_depth + (walk_deep_value ? 1 : 0) > PL_JSON_SCAN_MAX_DEPTH;
        FUZZ_CHECK(!scan_ok || top->kind != PL_JSON_OBJECT || strstr(err, "appears twice") ||
                       strstr(err, "number out of range") ||
                       (json_c_depth && strstr(err, "nesting too deep")),
                   "the scanner takes an object the strict parse refuses: %s", err);
        return;
    }
    FUZZ_CHECK(json_object_is_type(obj, json_type_object), "not an object");
    FUZZ_CHECK(scan_ok && top->kind == PL_JSON_OBJECT,
               "the strict parse takes an object the scanner refuses");
    /* An accepted object round-trips through its own serialisation. */
    const char *out = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
    char err2[256] = "";
    json_object *again = pl_json_object_parse(out, strlen(out), false, "it", err2, sizeof(err2));
    FUZZ_CHECK(again, "serialised object refused: %s\n  %s", err2, out);
    FUZZ_CHECK(json_object_equal(obj, again), "round trip changed the object:\n  %s", out);
    struct pl_json_scan s;
    struct pl_json_value v;
    pl_json_scan_init(&s, out, strlen(out));
    FUZZ_CHECK(pl_json_scan_value(&s, &v) && pl_json_scan_done(&s), "serialised: %s", s.err);
    json_object_put(again);
    json_object_put(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct pl_json_scan s;
    struct pl_json_value top = {0};
    pl_json_scan_init(&s, text, size);
    bool scan_ok = pl_json_scan_value(&s, &top) && pl_json_scan_done(&s);
    FUZZ_CHECK(scan_ok || s.err[0] || top.kind != PL_JSON_ABSENT, "refused without a reason");
    if (scan_ok)
        FUZZ_CHECK(top.text >= text && top.text + top.text_len <= text + size, "value slice");

    struct pl_json_scan w;
    pl_json_scan_init(&w, text, size);
    walk_depth = 0;
    walk_deep_value = false;
    bool walk_ok = walk(&w) && pl_json_scan_done(&w);
    FUZZ_CHECK(walk_ok == scan_ok, "iteration %s, value scan %s", walk_ok ? "takes" : "refuses",
               scan_ok ? "takes" : "refuses");

    check_strict(text, size, scan_ok, &top);

    size_t i = 0;
    while (i < size && strchr(" \t\r\n", text[i]) && text[i])
        i++;
    if (i < size && text[i] == '{')
        check_trace(text, size);
    return 0;
}
