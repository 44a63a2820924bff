/* Unit tests for the tree-less JSON scanner (json_scan.h) and the trace checks built on it
 * (trace.h): syntax, UTF-8 and escapes, depth, numbers, the field rules with their statuses,
 * slices and decoding, generated ids and the pl.traces envelope. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "json_scan.h"
#include "trace.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROJECT "0b5d2c4e-9f1a-4c3b-8d7e-6a5f4e3d2c1b"

static bool scans(const char *text)
{
    struct pl_json_scan s;
    struct pl_json_value v;
    pl_json_scan_init(&s, text, strlen(text));
    return pl_json_scan_value(&s, &v) && pl_json_scan_done(&s);
}

static void test_syntax(void **state)
{
    (void)state;
    const char *good[] = {"{}",
                          "[]",
                          " {\"a\": [1, -2.5e3, true, false, null, \"x\"]} ",
                          "\"\\u00e9\\ud83d\\ude00\"",
                          "0",
                          "-0.0",
                          "[4.9e-324]",
                          "[1e308]",
                          "{\"a\":{\"b\":[[]]}}"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!scans(good[i]))
            fail_msg("refused: %s", good[i]);
    const char *bad[] = {"{",          "{\"a\":1,}",    "[1,]",           "{'a':1}",
                         "[01]",       "[1.]",          "[.5]",           "[NaN]",
                         "[Infinity]", "[tru]",         "{\"a\" 1}",      "[\"\t\"]",
                         "[\"\\x\"]",  "[\"\\ud800\"]", "[\"\\udc00\"]",  "[\"\\u0000\"]",
                         "[1] x",      "[\"\xc3\"]",    "[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]",
                         "[1e400]",    "[1e-400]",      "/* c */ 1",      "[\"abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (scans(bad[i]))
            fail_msg("accepted: %s", bad[i]);
}

static void test_depth(void **state)
{
    (void)state;
    char deep[256];
    int n = PL_JSON_SCAN_MAX_DEPTH;
    memset(deep, '[', (size_t)n);
    memset(deep + n, ']', (size_t)n);
    deep[2 * n] = '\0';
    assert_true(scans(deep));
    memset(deep, '[', (size_t)n + 1);
    memset(deep + n + 1, ']', (size_t)n + 1);
    deep[2 * n + 2] = '\0';
    assert_false(scans(deep));
}

static void test_decode(void **state)
{
    (void)state;
    const char *text = "\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00\"";
    struct pl_json_scan s;
    struct pl_json_value v;
    pl_json_scan_init(&s, text, strlen(text));
    assert_true(pl_json_scan_value(&s, &v));
    assert_int_equal(v.kind, PL_JSON_STRING);
    assert_true(v.str.escaped);
    char out[64];
    pl_json_str_decode(&v.str, out);
    assert_string_equal(out, "a\"b\\c/d\n\t\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(v.str.len, strlen(out));
}

/* Scans a trace with the given members after project_id; returns the status. */
static int scan_trace(const char *members, struct pl_trace_view *t, char *err, size_t errsz)
{
    static char text[4096];
    snprintf(text, sizeof(text), "{\"project_id\":\"%s\"%s%s}", PROJECT, *members ? "," : "",
             members);
    struct pl_json_scan s;
    pl_json_scan_init(&s, text, strlen(text));
    return pl_trace_scan(&s, "traces[0]", t, err, errsz);
}

/* The scanner's UTF-8 rule, as the api applies it to query values and path ids. */
static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(pl_utf8_valid("", 0));
    assert_true(pl_utf8_valid("plain", 5));
    assert_true(pl_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_true(pl_utf8_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_false(pl_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(pl_utf8_valid("\xed\xa0\x80", 3));     /* a surrogate */
    assert_false(pl_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(pl_utf8_valid("ok\xe2\x82", 4));       /* cut short */
    assert_false(pl_utf8_valid("\x80", 1));             /* a lone continuation byte */
}

static void test_trace_rules(void **state)
{
    (void)state;
    static const struct {
        const char *members;
        int status;
        const char *names;
    } cases[] = {
        {"\"id\":\"t1\",\"latency_ms\":5,\"cost\":0.5,\"tags\":{\"k\":\"v\"}", 0, ""},
        {"\"id\":5", 400, "traces[0].id must be a string"},
        {"\"id\":\"\"", 422, "traces[0].id must not be empty"},
        {"\"id\":\"a\\nb\"", 422, "control characters"},
        {"\"latency_ms\":1.5", 400, "latency_ms must be an integer"},
        {"\"latency_ms\":-1", 422, "latency_ms must be between"},
        {"\"latency_ms\":99999999999999999999", 422, "latency_ms must be between"},
        {"\"cost\":-0.5", 422, "cost must be a number >= 0"},
        {"\"colour\":\"red\"", 400, "unknown field \"colour\""},
        {"\"name\":\"a\",\"name\":\"b\"", 400, "name is given twice"},
        {"\"model\":null", 0, ""},
        {"\"tags\":{\"k\":1}", 400, "tags values must be strings"},
        {"\"tags\":{\"\":\"v\"}", 422, "tags keys must be 1 to 64"},
        {"\"spans\":[{\"type\":\"llm\"}]", 400, "traces[0].spans[0].name is required"},
        {"\"spans\":[1]", 400, "traces[0].spans[0] must be an object"},
        {"\"spans\":[{\"name\":\"a\",\"type\":\"db\"}]", 422, "spans[0].type must be llm"},
        {"\"prompt\":{\"name\":\"p\",\"version\":0}", 400, "prompt.version"},
        {"\"prompt\":{\"name\":\"p\",\"other\":1}", 400, "prompt takes only name and version"},
        {"\"prompt\":{\"version\":2}", 400, "prompt.name"},
        {"\"eval_scores\":{\"m\":\"high\"}", 400, "eval_scores values must be numbers"},
        {"\"error\":\"\\ud800\"", 400, "unpaired surrogate"},
        {"\"output\":\"a\\u0000\"", 422, "NUL characters"},
        {"\"output\":\"\\\\u0000\"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pl_trace_view t;
        char err[256] = "";
        int st = scan_trace(cases[i].members, &t, err, sizeof(err));
        if (st != cases[i].status || !strstr(err, cases[i].names))
            fail_msg("%s: got %d \"%s\", want %d \"%s\"", cases[i].members, st, err,
                     cases[i].status, cases[i].names);
    }
    struct pl_trace_view t;
    char err[256];
    const char *no_project = "{\"id\":\"x\"}";
    struct pl_json_scan s;
    pl_json_scan_init(&s, no_project, strlen(no_project));
    assert_int_equal(pl_trace_scan(&s, "", &t, err, sizeof(err)), 400);
    assert_string_equal(err, "project_id is required");
}

static void test_trace_view(void **state)
{
    (void)state;
    struct pl_trace_view t;
    char err[256];
    assert_int_equal(
        scan_trace("\"id\":\"a\\u00e9\",\"output\":{\"x\": [1, 2]},"
                   "\"error\":\"boom\",\"spans\":[{\"name\":\"s\",\"error\":\"e1\"},"
                   "{\"name\":\"t\",\"error\":\"\"},{\"name\":\"u\",\"error\":\"e2\"}],"
                   "\"prompt\":{\"name\":\"support\",\"version\":3}",
                   &t, err, sizeof(err)),
        0);
    assert_string_equal(t.id, "a\xc3\xa9");
    assert_false(t.id_generated);
    assert_string_equal(t.project_id, PROJECT);
    assert_int_equal(t.span_errors, 2);
    struct pl_text_buf b = {0};
    assert_string_equal(pl_json_value_text(&t.f[PL_TF_OUTPUT], &b), "{\"x\": [1, 2]}");
    assert_string_equal(pl_json_value_text(&t.f[PL_TF_ERROR], &b), "boom");
    assert_string_equal(pl_json_value_text(&t.prompt_version, &b), "3");
    assert_null(pl_json_value_text(&t.f[PL_TF_MODEL], &b));
    free(b.p);
}

/* Upper-case project ids become one spelling; a missing id is generated and lands first in
 * the envelope, which parses back to the same trace. */
static void test_envelope(void **state)
{
    (void)state;
    const char *text =
        "{ \"project_id\":\"0B5D2C4E-9F1A-4C3B-8D7E-6A5F4E3D2C1B\",\n\"name\":\"x\"}";
    struct pl_json_scan s;
    pl_json_scan_init(&s, text, strlen(text));
    struct pl_trace_view t;
    char err[256];
    assert_int_equal(pl_trace_scan(&s, "", &t, err, sizeof(err)), 0);
    assert_true(t.id_generated);
    assert_string_equal(t.project_id, PROJECT);
    size_t len = 0;
    char *env = pl_trace_envelope("11111111-2222-4333-8444-555555555555",
                                  "2026-01-01T00:00:00.000000Z", &t, &len);
    assert_non_null(env);
    assert_int_equal(len, strlen(env));
    json_object *o = json_tokener_parse(env);
    assert_non_null(o);
    json_object *trace = json_object_object_get(o, "trace");
    assert_string_equal(json_object_get_string(json_object_object_get(trace, "id")), t.id);
    assert_string_equal(json_object_get_string(json_object_object_get(trace, "name")), "x");
    assert_string_equal(json_object_get_string(json_object_object_get(o, "project_id")), PROJECT);
    json_object_put(o);
    free(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),     cmocka_unit_test(test_depth),
        cmocka_unit_test(test_decode),     cmocka_unit_test(test_trace_rules),
        cmocka_unit_test(test_utf8_valid), cmocka_unit_test(test_trace_view),
        cmocka_unit_test(test_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
