/* Unit tests for the eval-rule evaluators (evaluate.h): every evaluator's pass and fail
 * cases, every config error, regex limits against hostile patterns, UTF-8, concurrency, and
 * the trace and tenant evaluation budgets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evaluate.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL ((struct pl_eval_rule *)0x5e1f)

/* ---- helpers ------------------------------------------------------------------------------ */

static json_object *parse_json(const char *text)
{
    if (!text)
        return NULL;
    json_object *o = json_tokener_parse(text);
    if (!o)
        fail_msg("test JSON does not parse: %s", text);
    return o;
}

static struct pl_eval_rule *compile_obj(const char *type, json_object *cfg, const char *metric)
{
    char err[256] = "";
    struct pl_eval_rule *r = NULL;
    if (pl_eval_rule_compile(type, cfg, metric, &r, err, sizeof(err)) != 0)
        fail_msg("compile %s %s failed: %s", type, cfg ? json_object_to_json_string(cfg) : "-",
                 err);
    assert_non_null(r);
    return r;
}

static struct pl_eval_rule *compile(const char *type, const char *config, const char *metric)
{
    json_object *cfg = parse_json(config);
    struct pl_eval_rule *r = compile_obj(type, cfg, metric);
    json_object_put(cfg);
    return r;
}

/* Compiling must fail with exactly want (which names the field); *out stays untouched. */
static void expect_err_obj(const char *type, json_object *cfg, const char *metric, const char *want)
{
    char err[256] = "";
    struct pl_eval_rule *r = SENTINEL;
    if (pl_eval_rule_compile(type, cfg, metric, &r, err, sizeof(err)) != -1)
        fail_msg("compile %s %s accepted", type, cfg ? json_object_to_json_string(cfg) : "-");
    assert_ptr_equal(r, SENTINEL);
    assert_string_equal(err, want);
}

static void expect_err(const char *type, const char *config, const char *metric, const char *want)
{
    json_object *cfg = parse_json(config);
    expect_err_obj(type, cfg, metric, want);
    json_object_put(cfg);
}

/* Runs r on output (len 0: strlen) and checks the status and the feedback (NULL: any). */
static void expect_run_len(const struct pl_eval_rule *r, const char *output, size_t len,
                           enum pl_eval_status want, const char *feedback)
{
    struct pl_eval_input in = {.output = output, .output_len = len};
    struct pl_eval_result res;
    memset(&res, 'Z', sizeof(res));
    enum pl_eval_status st = pl_eval_rule_run(r, &in, &res);
    if (st != want || res.status != want)
        fail_msg("%s on \"%s\": status %d, want %d (feedback \"%s\")",
                 pl_eval_type_name(pl_eval_rule_type(r)), output ? output : "(null)", st, want,
                 res.feedback);
    assert_int_equal(res.passed, want == PL_EVAL_PASS);
    if (want == PL_EVAL_PASS)
        assert_string_equal(res.feedback, "");
    else if (feedback && strcmp(res.feedback, feedback) != 0)
        fail_msg("%s on \"%s\": feedback \"%s\", want \"%s\"",
                 pl_eval_type_name(pl_eval_rule_type(r)), output ? output : "(null)", res.feedback,
                 feedback);
    else if (!feedback)
        assert_string_not_equal(res.feedback, "");
}

static void expect_run(const struct pl_eval_rule *r, const char *output, enum pl_eval_status want,
                       const char *feedback)
{
    expect_run_len(r, output, 0, want, feedback);
}

static void expect_scores(const struct pl_eval_rule *r, const char *scores,
                          enum pl_eval_status want, const char *feedback)
{
    json_object *s = parse_json(scores);
    struct pl_eval_input in = {.output = "irrelevant", .eval_scores = s};
    struct pl_eval_result res;
    assert_int_equal(pl_eval_rule_run(r, &in, &res), want);
    assert_int_equal(res.passed, want == PL_EVAL_PASS);
    assert_string_equal(res.feedback, feedback);
    json_object_put(s);
}

static char *repeat(char c, size_t n, const char *tail)
{
    size_t tl = strlen(tail);
    char *s = malloc(n + tl + 1);
    assert_non_null(s);
    memset(s, c, n);
    memcpy(s + n, tail, tl + 1);
    return s;
}

/* ---- evaluator types --------------------------------------------------------------------- */

static void test_type_names(void **state)
{
    (void)state;
    static const char *const names[] = {"error_free",   "json_valid",     "regex_match",
                                        "regex_absent", "contains",       "not_contains",
                                        "max_length",   "score_threshold"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        enum pl_eval_type t = (enum pl_eval_type)99;
        assert_int_equal(pl_eval_type_parse(names[i], &t), 0);
        assert_int_equal(t, (enum pl_eval_type)i);
        assert_string_equal(pl_eval_type_name(t), names[i]);
    }
    static const char *const bad[] = {"", "Error_Free", "regex", "contains ", "llm_judge"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum pl_eval_type t = PL_EVAL_MAX_LENGTH;
        assert_int_equal(pl_eval_type_parse(bad[i], &t), -1);
        assert_int_equal(t, PL_EVAL_MAX_LENGTH);
    }
    enum pl_eval_type t;
    assert_int_equal(pl_eval_type_parse(NULL, &t), -1);
}

static void test_compile_type_and_config_shape(void **state)
{
    (void)state;
    const char *want_type = "evaluator_type must be one of error_free, json_valid, regex_match, "
                            "regex_absent, contains, not_contains, max_length, score_threshold";
    expect_err("llm_judge", "{}", "m", want_type);
    expect_err(NULL, "{}", "m", want_type);
    expect_err("", NULL, "m", want_type);
    expect_err("error_free", "[]", "m", "config must be a JSON object");
    expect_err("json_valid", "\"x\"", "m", "config must be a JSON object");
    expect_err("max_length", "5", "m", "config must be a JSON object");

    /* A NULL config is {}: fine where nothing is required. */
    struct pl_eval_rule *r = compile("error_free", NULL, NULL);
    assert_int_equal(pl_eval_rule_type(r), PL_EVAL_ERROR_FREE);
    assert_string_equal(pl_eval_rule_metric(r), "");
    pl_eval_rule_free(r);
    r = compile("json_valid", NULL, "valid_json");
    assert_string_equal(pl_eval_rule_metric(r), "valid_json");
    pl_eval_rule_free(r);
    expect_err("regex_match", NULL, "m", "config.pattern is required");
    expect_err("contains", NULL, "m", "config.value is required");
    expect_err("max_length", NULL, "m", "config.max is required");
    pl_eval_rule_free(NULL);
}

static void test_unknown_fields(void **state)
{
    (void)state;
    expect_err("error_free", "{\"pattern\": \"x\"}", "m",
               "config.pattern is not a field of error_free (it takes none)");
    expect_err("json_valid", "{\"strict\": true}", "m",
               "config.strict is not a field of json_valid (fields: require_object)");
    expect_err("regex_match", "{\"pattern\": \"x\", \"flag\": \"i\"}", "m",
               "config.flag is not a field of regex_match (fields: pattern, flags)");
    expect_err("regex_absent", "{\"pattern\": \"x\", \"value\": \"y\"}", "m",
               "config.value is not a field of regex_absent (fields: pattern, flags)");
    expect_err("contains", "{\"value\": \"x\", \"ignore_case\": true}", "m",
               "config.ignore_case is not a field of contains (fields: value, case_insensitive)");
    expect_err("not_contains", "{\"value\": \"x\", \"pattern\": \"y\"}", "m",
               "config.pattern is not a field of not_contains (fields: value, case_insensitive)");
    expect_err("max_length", "{\"max\": 3, \"unit\": \"bytes\"}", "m",
               "config.unit is not a field of max_length (fields: max)");
    expect_err("score_threshold", "{\"min\": 0.5, \"threshold\": 1}", "m",
               "config.threshold is not a field of score_threshold (fields: min, max)");
}

static void test_err_buffer(void **state)
{
    (void)state;
    json_object *cfg = parse_json("{\"pattern\": \"\"}");
    struct pl_eval_rule *r = SENTINEL;
    /* A tiny buffer is truncated, not overrun; no buffer at all is fine too. */
    char small[10];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(pl_eval_rule_compile("regex_match", cfg, "m", &r, small, 8), -1);
    assert_string_equal(small, "config.");
    assert_int_equal(small[8], 'Z');
    assert_int_equal(pl_eval_rule_compile("regex_match", cfg, "m", &r, NULL, 0), -1);
    assert_ptr_equal(r, SENTINEL);
    json_object_put(cfg);
}

/* ---- error_free -------------------------------------------------------------------------- */

static void expect_errors(const struct pl_eval_rule *r, const char *error, const char *const *spans,
                          size_t nspans, enum pl_eval_status want, const char *feedback)
{
    struct pl_eval_input in = {
        .output = NULL, .error = error, .span_errors = spans, .n_span_errors = nspans};
    struct pl_eval_result res;
    assert_int_equal(pl_eval_rule_run(r, &in, &res), want);
    assert_int_equal(res.passed, want == PL_EVAL_PASS);
    assert_string_equal(res.feedback, feedback);
}

static void test_error_free(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("error_free", "{}", "no_errors");
    expect_errors(r, NULL, NULL, 0, PL_EVAL_PASS, "");
    expect_errors(r, "", NULL, 0, PL_EVAL_PASS, ""); /* an empty error is no error */
    expect_run(r, "any output", PL_EVAL_PASS, NULL);
    expect_errors(r, "upstream timeout after 30s", NULL, 0, PL_EVAL_FAIL,
                  "trace error: upstream timeout after 30s");
    expect_errors(r, NULL, NULL, 1, PL_EVAL_FAIL, "1 span has an error");
    expect_errors(r, NULL, NULL, 3, PL_EVAL_FAIL, "3 spans have errors");
    const char *spans[] = {"", "tool call failed: 503", "rate limited"};
    expect_errors(r, NULL, spans, 3, PL_EVAL_FAIL,
                  "span error: tool call failed: 503 (and 2 more)");
    expect_errors(r, NULL, spans + 1, 1, PL_EVAL_FAIL, "span error: tool call failed: 503");
    const char *blank[] = {NULL, ""};
    expect_errors(r, NULL, blank, 2, PL_EVAL_FAIL, "2 spans have errors");
    /* The trace error is reported before span errors. */
    expect_errors(r, "boom", spans, 3, PL_EVAL_FAIL, "trace error: boom");

    /* A long or multi-line error is cut to one short line, on a UTF-8 boundary. */
    char *longerr = repeat('x', 500, "");
    struct pl_eval_input in = {.error = longerr};
    struct pl_eval_result res;
    assert_int_equal(pl_eval_rule_run(r, &in, &res), PL_EVAL_FAIL);
    assert_true(strlen(res.feedback) < 120);
    assert_non_null(strstr(res.feedback, "xxx..."));
    free(longerr);
    expect_errors(r, "line one\nline\ttwo", NULL, 0, PL_EVAL_FAIL,
                  "trace error: line one?line?two");
    char *utf = repeat('a', 95, "\xc3\xa9tail"); /* "é" straddles the 96-byte cut */
    in.error = utf;
    assert_int_equal(pl_eval_rule_run(r, &in, &res), PL_EVAL_FAIL);
    char want[160];
    snprintf(want, sizeof(want), "trace error: %.95s...", utf);
    assert_string_equal(res.feedback, want);
    free(utf);
    pl_eval_rule_free(r);
}

/* ---- json_valid -------------------------------------------------------------------------- */

static void test_json_valid_accepts(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("json_valid", "{}", "m");
    static const char *const ok[] = {
        "{}",
        "[]",
        "[1,2]",
        "42",
        "0",
        "-0",
        "-0.5e+3",
        "1E5",
        "\"s\"",
        "true",
        "false",
        "null",
        " \r\n\t{\"a\": [1, {\"b\": null}], \"c\": \"x\\n\\u00e9\\/\"} \n",
        "{\"k\": \"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}",
        "\"\\ud83d\\ude00\"",
        "{\"a\":1,\"a\":2}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        expect_run(r, ok[i], PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);
}

static void test_json_valid_rejects(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("json_valid", "{\"require_object\": false}", "m");
    static const struct {
        const char *output, *feedback;
    } bad[] = {
        {"", "output is not valid JSON: unexpected end of data"},
        {"   ", "output is not valid JSON: unexpected end of data"},
        {"{", "output is not valid JSON: unexpected end of data"},
        {"{\"a\": \"abc", "output is not valid JSON: unexpected end of data"},
        {"[tru", "output is not valid JSON: unexpected end of data"},
        {"{\"a\":1,}", NULL},
        {"[1,]", NULL},
        {"{a:1}", NULL},
        {"'x'", NULL},
        {"[1 2]", NULL},
        {"[1,//c\n2]", NULL},
        {"/* c */ {}", NULL},
        {"NaN", "output is not valid JSON: invalid literal"},
        {"[Infinity]", "output is not valid JSON: invalid literal"},
        {"-Infinity", "output is not valid JSON: invalid number"},
        {"True", "output is not valid JSON: boolean expected"},
        {"1.", "output is not valid JSON: invalid number"},
        {"[1.]", "output is not valid JSON: invalid number"},
        {"1.e5", "output is not valid JSON: invalid number"},
        {"1e", NULL},
        {"00", "output is not valid JSON: invalid number"},
        {"[01]", NULL},
        {"-", "output is not valid JSON: unexpected end of data"},
        {"+1", NULL},
        {".5", NULL},
        {"0x10", NULL},
        {"\"a\tb\"", "output is not valid JSON: control character in string"},
        {"[\"\xed\xa0\x80\"]", "output is not valid JSON: invalid UTF-8 in string"},
        {"[\"\xc0\xaf\"]", "output is not valid JSON: invalid UTF-8 in string"},
        {"[\"\xf4\x90\x80\x80\"]", "output is not valid JSON: invalid UTF-8 in string"},
        {"\"\\x41\"", NULL},
        {"\xef\xbb\xbf{}", NULL},
        {"{\"a\":1} x", "output is not valid JSON: data after the JSON value"},
        {"{} {}", "output is not valid JSON: data after the JSON value"},
        {"[1]//c", "output is not valid JSON: data after the JSON value"},
        {"```json\n{}\n```", NULL},
        {"Sure! Here is the JSON: {\"a\": 1}", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_run(r, bad[i].output, PL_EVAL_FAIL, bad[i].feedback);
        struct pl_eval_input in = {.output = bad[i].output};
        struct pl_eval_result res;
        pl_eval_rule_run(r, &in, &res);
        assert_non_null(strstr(res.feedback, "output is not valid JSON: "));
    }
    /* An embedded NUL is not JSON (the length is taken from output_len). */
    expect_run_len(r, "{}\0", 3, PL_EVAL_FAIL,
                   "output is not valid JSON: data after the JSON value");
    expect_run_len(r, "\"a\0b\"", 5, PL_EVAL_FAIL, NULL);
    expect_run(r, NULL, PL_EVAL_FAIL, "no output");
    pl_eval_rule_free(r);
}

static void test_json_valid_depth(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("json_valid", "{}", "m");
    char buf[2 * (PL_EVAL_JSON_MAX_DEPTH + 1) + 1];
    for (int depth = PL_EVAL_JSON_MAX_DEPTH - 1; depth <= PL_EVAL_JSON_MAX_DEPTH + 1; depth++) {
        memset(buf, '[', (size_t)depth);
        memset(buf + depth, ']', (size_t)depth);
        buf[2 * depth] = '\0';
        expect_run(r, buf, depth <= PL_EVAL_JSON_MAX_DEPTH ? PL_EVAL_PASS : PL_EVAL_FAIL,
                   depth <= PL_EVAL_JSON_MAX_DEPTH ? NULL
                                                   : "output is not valid JSON: nesting too deep");
    }
    pl_eval_rule_free(r);
}

static void test_json_require_object(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("json_valid", "{\"require_object\": true}", "m");
    expect_run(r, "{\"answer\": 42}", PL_EVAL_PASS, NULL);
    expect_run(r, " {} ", PL_EVAL_PASS, NULL);
    expect_run(r, "[{}]", PL_EVAL_FAIL, "output is valid JSON but not an object");
    expect_run(r, "\"{}\"", PL_EVAL_FAIL, "output is valid JSON but not an object");
    expect_run(r, "1", PL_EVAL_FAIL, "output is valid JSON but not an object");
    expect_run(r, "null", PL_EVAL_FAIL, "output is valid JSON but not an object");
    /* Invalid JSON is reported as such, not as "not an object". */
    expect_run(r, "{\"a\":", PL_EVAL_FAIL, "output is not valid JSON: unexpected end of data");
    expect_run(r, NULL, PL_EVAL_FAIL, "no output");
    pl_eval_rule_free(r);

    r = compile("json_valid", "{\"require_object\": false}", "m");
    expect_run(r, "[1]", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);

    expect_err("json_valid", "{\"require_object\": \"yes\"}", "m",
               "config.require_object must be a boolean");
    expect_err("json_valid", "{\"require_object\": 1}", "m",
               "config.require_object must be a boolean");
    expect_err("json_valid", "{\"require_object\": null}", "m",
               "config.require_object must be a boolean");
}

/* ---- regex_match / regex_absent ---------------------------------------------------------- */

static void test_regex_match_absent(void **state)
{
    (void)state;
    struct pl_eval_rule *m = compile("regex_match", "{\"pattern\": \"^\\\\d{3}-\\\\d{4}$\"}", "m");
    struct pl_eval_rule *a = compile("regex_absent", "{\"pattern\": \"as an AI\"}", "m");
    expect_run(m, "555-1234", PL_EVAL_PASS, NULL);
    expect_run(m, "call 555-1234", PL_EVAL_FAIL,
               "output does not match pattern \"^\\d{3}-\\d{4}$\"");
    expect_run(m, "", PL_EVAL_FAIL, NULL);
    expect_run(a, "Here is the answer.", PL_EVAL_PASS, NULL);
    expect_run(a, "Well, as an AI, I cannot", PL_EVAL_FAIL,
               "output matches forbidden pattern \"as an AI\"");
    expect_run(a, "AS AN AI", PL_EVAL_PASS, NULL); /* no flags: case matters */
    /* The explicit length is honoured: a NUL is an ordinary character. */
    struct pl_eval_rule *nul = compile("regex_match", "{\"pattern\": \"a\\\\x00b$\"}", "m");
    expect_run_len(nul, "xa\0b", 4, PL_EVAL_PASS, NULL);
    expect_run_len(nul, "xa\0bc", 5, PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(nul);
    pl_eval_rule_free(m);
    pl_eval_rule_free(a);

    /* A long pattern is quoted in part. */
    char pattern[300];
    memset(pattern, 'q', 200);
    pattern[200] = '\0';
    json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "pattern", json_object_new_string(pattern));
    m = compile_obj("regex_match", cfg, "m");
    struct pl_eval_input in = {.output = "nothing"};
    struct pl_eval_result res;
    assert_int_equal(pl_eval_rule_run(m, &in, &res), PL_EVAL_FAIL);
    assert_true(strlen(res.feedback) < 140);
    assert_non_null(strstr(res.feedback, "qqq...\""));
    pl_eval_rule_free(m);
    json_object_put(cfg);
}

static void test_regex_flags(void **state)
{
    (void)state;
    struct pl_eval_rule *r =
        compile("regex_match", "{\"pattern\": \"hello\", \"flags\": \"i\"}", "m");
    expect_run(r, "HeLLo there", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"^two$\", \"flags\": \"m\"}", "m");
    expect_run(r, "one\ntwo\nthree", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"^two$\", \"flags\": \"\"}", "m");
    expect_run(r, "one\ntwo\nthree", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"a.b\", \"flags\": \"s\"}", "m");
    expect_run(r, "a\nb", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"a.b\"}", "m");
    expect_run(r, "a\nb", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"a b  c # comment\", \"flags\": \"x\"}", "m");
    expect_run(r, "abc", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_absent", "{\"pattern\": \"^SORRY.*$\", \"flags\": \"xsim\"}", "m");
    expect_run(r, "ok\nsorry\nabout that", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);

    expect_err("regex_match", "{\"pattern\": \"a\", \"flags\": \"g\"}", "m",
               "config.flags may only hold i, m, s and x");
    expect_err("regex_match", "{\"pattern\": \"a\", \"flags\": \"I\"}", "m",
               "config.flags may only hold i, m, s and x");
    expect_err("regex_match", "{\"pattern\": \"a\", \"flags\": \"imi\"}", "m",
               "config.flags repeats \"i\"");
    expect_err("regex_match", "{\"pattern\": \"a\", \"flags\": [\"i\"]}", "m",
               "config.flags must be a string");
    expect_err("regex_absent", "{\"pattern\": \"a\", \"flags\": null}", "m",
               "config.flags must be a string");
}

static void test_regex_config_errors(void **state)
{
    (void)state;
    expect_err("regex_match", "{}", "m", "config.pattern is required");
    expect_err("regex_absent", "{\"flags\": \"i\"}", "m", "config.pattern is required");
    expect_err("regex_match", "{\"pattern\": 5}", "m", "config.pattern must be a string");
    expect_err("regex_match", "{\"pattern\": null}", "m", "config.pattern must be a string");
    expect_err("regex_match", "{\"pattern\": \"\"}", "m", "config.pattern must not be empty");
    expect_err("regex_match", "{\"pattern\": \"(abc\"}", "m",
               "config.pattern is not a valid regular expression: missing closing parenthesis "
               "at offset 4");
    expect_err("regex_absent", "{\"pattern\": \"a{2,1}\"}", "m",
               "config.pattern is not a valid regular expression: numbers out of order in {} "
               "quantifier at offset 5");
    expect_err("regex_match", "{\"pattern\": \"[z-a]\"}", "m",
               "config.pattern is not a valid regular expression: range out of order in "
               "character class at offset 3");
    /* \C could split a UTF-8 character. */
    expect_err("regex_match", "{\"pattern\": \"a\\\\Cb\"}", "m",
               "config.pattern is not a valid regular expression: using \\C is disabled by "
               "the application at offset 3");

    /* 1024 bytes is the most a pattern may have. */
    json_object *cfg = json_object_new_object();
    char *p = repeat('a', PL_EVAL_TEXT_MAX, "");
    json_object_object_add(cfg, "pattern", json_object_new_string(p));
    struct pl_eval_rule *r = compile_obj("regex_match", cfg, "m");
    pl_eval_rule_free(r);
    free(p);
    p = repeat('a', PL_EVAL_TEXT_MAX + 1, "");
    json_object_object_add(cfg, "pattern", json_object_new_string(p));
    expect_err_obj("regex_match", cfg, "m", "config.pattern must be at most 1024 bytes");
    free(p);
    /* Ill-formed UTF-8 in a pattern (possible from a json-c object built in code). */
    json_object_object_add(cfg, "pattern", json_object_new_string_len("ab\xff", 3));
    expect_err_obj("regex_match", cfg, "m", "config.pattern is not valid UTF-8");
    json_object_put(cfg);
}

static void test_regex_utf8(void **state)
{
    (void)state;
    /* Characters, not bytes: "café" is four characters. */
    struct pl_eval_rule *r = compile("regex_match", "{\"pattern\": \"^.{4}$\"}", "m");
    expect_run(r, "caf\xc3\xa9", PL_EVAL_PASS, NULL);
    expect_run(r, "cafe!", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"\xc3\xa9\\\\w*\", \"flags\": \"i\"}", "m");
    expect_run(r,
               "\xc3\x89"
               "cole",
               PL_EVAL_PASS, NULL); /* "École" against "é" caseless */
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"\\\\x{65e5}\\\\x{672c}\"}", "m");
    expect_run(r, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);

    /* Ill-formed UTF-8 in the output is no error: those bytes just never match. */
    r = compile("regex_match", "{\"pattern\": \"cd\"}", "m");
    expect_run(r, "ab\xff\xfe cd", PL_EVAL_PASS, NULL);
    expect_run(r, "ab\xc3", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);
    r = compile("regex_match", "{\"pattern\": \"b.c\"}", "m");
    expect_run(r,
               "ab\xff"
               "cd",
               PL_EVAL_FAIL, "output does not match pattern \"b.c\"");
    pl_eval_rule_free(r);
    r = compile("regex_absent", "{\"pattern\": \"forbidden\"}", "m");
    expect_run(r, "\xed\xa0\x80\xc0\xaf ok", PL_EVAL_PASS, NULL);
    expect_run(r, "\xff forbidden \xff", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(r);
}

static void test_regex_null_output(void **state)
{
    (void)state;
    struct pl_eval_rule *m = compile("regex_match", "{\"pattern\": \"^$\"}", "m");
    struct pl_eval_rule *a = compile("regex_absent", "{\"pattern\": \"x\"}", "m");
    /* No output: a required pattern is missing, a forbidden one is absent. */
    expect_run(m, NULL, PL_EVAL_FAIL, "no output");
    expect_run(a, NULL, PL_EVAL_PASS, NULL);
    expect_run(m, "", PL_EVAL_PASS, NULL); /* an empty output is an output */
    pl_eval_rule_free(m);
    pl_eval_rule_free(a);
}

/* Runs r on output and checks it ends as a limit ERROR within a second. */
static void expect_limit(const struct pl_eval_rule *r, const char *output)
{
    struct pl_eval_input in = {.output = output};
    struct pl_eval_result res;
    int64_t t0 = pl_now_ms();
    enum pl_eval_status st = pl_eval_rule_run(r, &in, &res);
    int64_t took = pl_now_ms() - t0;
    assert_int_equal(st, PL_EVAL_ERROR);
    assert_int_equal(res.status, PL_EVAL_ERROR);
    assert_false(res.passed); /* fail-safe */
    assert_string_equal(res.feedback, "regex match limit exceeded");
    if (took >= 1000)
        fail_msg("limit took %lld ms", (long long)took);
}

static void test_regex_catastrophic(void **state)
{
    (void)state;
    /* Exponential backtracking: the match limit stops it at the first start position. */
    struct pl_eval_rule *m = compile("regex_match", "{\"pattern\": \"(a+)+$\"}", "m");
    struct pl_eval_rule *a = compile("regex_absent", "{\"pattern\": \"(a+)+$\"}", "m");
    char *s = repeat('a', 40, "b");
    expect_limit(m, s);
    expect_limit(a, s);
    free(s);
    s = repeat('a', 100000, "b");
    expect_limit(m, s);
    free(s);
    /* A harmless subject still matches normally. */
    expect_run(m, "xaaa", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(m);
    pl_eval_rule_free(a);

    m = compile("regex_match", "{\"pattern\": \"^(\\\\w+\\\\s?)*$\"}", "m");
    s = repeat('a', 60, "!");
    expect_limit(m, s);
    free(s);
    pl_eval_rule_free(m);

    /* Nested backtracking frames: the depth limit. */
    m = compile("regex_match", "{\"pattern\": \"(a|b)*$\"}", "m");
    s = repeat('a', 5000, "x");
    expect_limit(m, s);
    free(s);
    pl_eval_rule_free(m);

    /* PCRE2 resets its match limit at every start position: this pattern stays under it
     * (2^15 paths) at each of 30000 positions, which took ~50 s before the time budget. */
    m = compile("regex_absent",
                "{\"pattern\": \"(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)(a|a)"
                "(a|a)(a|a)(a|a)b\"}",
                "m");
    s = repeat('a', 30000, "cb");
    expect_limit(m, s);
    free(s);
    pl_eval_rule_free(m);
}

/* ---- contains / not_contains ------------------------------------------------------------- */

static void test_contains(void **state)
{
    (void)state;
    struct pl_eval_rule *c = compile("contains", "{\"value\": \"Sources:\"}", "m");
    struct pl_eval_rule *n = compile("not_contains", "{\"value\": \"lorem\"}", "m");
    expect_run(c, "Answer.\nSources: [1]", PL_EVAL_PASS, NULL);
    expect_run(c, "Answer. sources: [1]", PL_EVAL_FAIL, "output does not contain \"Sources:\"");
    expect_run(c, "", PL_EVAL_FAIL, NULL);
    expect_run(c, NULL, PL_EVAL_FAIL, "no output");
    expect_run(n, "a fine answer", PL_EVAL_PASS, NULL);
    expect_run(n, "Lorem ipsum", PL_EVAL_PASS, NULL);
    expect_run(n, "x lorem ipsum", PL_EVAL_FAIL, "output contains forbidden text \"lorem\"");
    expect_run(n, NULL, PL_EVAL_PASS, NULL);
    pl_eval_rule_free(c);
    pl_eval_rule_free(n);

    /* The value is literal text, never a pattern. */
    c = compile("contains", "{\"value\": \"a.b(\", \"case_insensitive\": true}", "m");
    expect_run(c, "xA.B(y", PL_EVAL_PASS, NULL);
    expect_run(c, "axb(", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(c);
    c = compile("contains", "{\"value\": \"a.b(\"}", "m");
    expect_run(c, "a.b(", PL_EVAL_PASS, NULL);
    expect_run(c, "axb(", PL_EVAL_FAIL, NULL);
    pl_eval_rule_free(c);

    /* Embedded NUL in value and output. */
    json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "value", json_object_new_string_len("a\0b", 3));
    c = compile_obj("contains", cfg, "m");
    expect_run_len(c, "xa\0by", 5, PL_EVAL_PASS, NULL);
    expect_run_len(c, "xa\0cy", 5, PL_EVAL_FAIL, "output does not contain \"a?b\"");
    pl_eval_rule_free(c);
    json_object_put(cfg);
}

static void test_contains_case_insensitive(void **state)
{
    (void)state;
    struct pl_eval_rule *c =
        compile("contains", "{\"value\": \"Thank You\", \"case_insensitive\": true}", "m");
    struct pl_eval_rule *n =
        compile("not_contains", "{\"value\": \"AS AN AI\", \"case_insensitive\": true}", "m");
    expect_run(c, "THANK YOU for asking", PL_EVAL_PASS, NULL);
    expect_run(c, "thank you", PL_EVAL_PASS, NULL);
    expect_run(c, "thanks", PL_EVAL_FAIL, "output does not contain \"Thank You\"");
    expect_run(c, NULL, PL_EVAL_FAIL, "no output");
    expect_run(n, "As an ai model...", PL_EVAL_FAIL, "output contains forbidden text \"AS AN AI\"");
    expect_run(n, "As an assistant", PL_EVAL_PASS, NULL);
    expect_run(n, NULL, PL_EVAL_PASS, NULL);
    pl_eval_rule_free(c);
    pl_eval_rule_free(n);

    /* Unicode case folding, not only ASCII: "ÉCOLE" finds "école", "ΣΟΦΊΑ" finds "σοφία". */
    c = compile("contains",
                "{\"value\": \"\xc3\x89"
                "COLE\", \"case_insensitive\": true}",
                "m");
    expect_run(c,
               "une \xc3\xa9"
               "cole",
               PL_EVAL_PASS, NULL);
    expect_run(c, "une ecole", PL_EVAL_FAIL, NULL);
    expect_run(c,
               "\xff\xfe \xc3\xa9"
               "cole",
               PL_EVAL_PASS, NULL); /* ill-formed bytes are fine */
    pl_eval_rule_free(c);
    c = compile("contains",
                "{\"value\": \"\xce\xa3\xce\x9f\xce\xa6\xce\x8a\xce\x91\", "
                "\"case_insensitive\": true}",
                "m");
    expect_run(c, "\xcf\x83\xce\xbf\xcf\x86\xce\xaf\xce\xb1", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(c);
    /* Without the flag the bytes must be equal. */
    c = compile("contains",
                "{\"value\": \"\xc3\x89"
                "COLE\", \"case_insensitive\": false}",
                "m");
    expect_run(c,
               "une \xc3\xa9"
               "cole",
               PL_EVAL_FAIL, NULL);
    expect_run(c,
               "une \xc3\x89"
               "COLE",
               PL_EVAL_PASS, NULL);
    pl_eval_rule_free(c);
}

static void test_contains_config_errors(void **state)
{
    (void)state;
    expect_err("contains", "{}", "m", "config.value is required");
    expect_err("not_contains", "{\"case_insensitive\": true}", "m", "config.value is required");
    expect_err("contains", "{\"value\": 3}", "m", "config.value must be a string");
    expect_err("contains", "{\"value\": [\"a\"]}", "m", "config.value must be a string");
    expect_err("not_contains", "{\"value\": \"\"}", "m", "config.value must not be empty");
    expect_err("contains", "{\"value\": \"a\", \"case_insensitive\": \"true\"}", "m",
               "config.case_insensitive must be a boolean");
    expect_err("not_contains", "{\"value\": \"a\", \"case_insensitive\": 1}", "m",
               "config.case_insensitive must be a boolean");
    json_object *cfg = json_object_new_object();
    char *v = repeat('v', PL_EVAL_TEXT_MAX + 1, "");
    json_object_object_add(cfg, "value", json_object_new_string(v));
    expect_err_obj("contains", cfg, "m", "config.value must be at most 1024 bytes");
    v[PL_EVAL_TEXT_MAX] = '\0';
    json_object_object_add(cfg, "value", json_object_new_string(v));
    json_object_object_add(cfg, "case_insensitive", json_object_new_boolean(1));
    pl_eval_rule_free(compile_obj("contains", cfg, "m"));
    free(v);
    json_object_object_add(cfg, "value", json_object_new_string_len("\xc3(", 2));
    expect_err_obj("contains", cfg, "m", "config.value is not valid UTF-8");
    json_object_put(cfg);
}

/* ---- max_length -------------------------------------------------------------------------- */

static void test_max_length(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("max_length", "{\"max\": 5}", "m");
    expect_run(r, "hello", PL_EVAL_PASS, NULL);
    expect_run(r, "hello!", PL_EVAL_FAIL, "output is 6 characters long, max 5");
    expect_run(r, "", PL_EVAL_PASS, NULL);
    expect_run(r, NULL, PL_EVAL_PASS, NULL);
    /* Characters, not bytes. */
    expect_run(r, "caf\xc3\xa9s", PL_EVAL_PASS, NULL); /* 6 bytes, 5 characters */
    expect_run(r,
               "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
               "\xf0\x9f\x98\x80",
               PL_EVAL_PASS, NULL); /* 5 emoji, 20 bytes */
    expect_run(r, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
               PL_EVAL_FAIL, "output is 6 characters long, max 5");
    /* Each ill-formed byte is one character. */
    expect_run(r, "\xff\xff\xff\xff\xff", PL_EVAL_PASS, NULL);
    expect_run(r, "\xff\xff\xff\x80\x80\x80", PL_EVAL_FAIL, "output is 6 characters long, max 5");
    expect_run(r, "abcd\xc3", PL_EVAL_PASS, NULL);
    expect_run_len(r, "ab\0cde", 6, PL_EVAL_FAIL, "output is 6 characters long, max 5");
    pl_eval_rule_free(r);

    r = compile("max_length", "{\"max\": 1}", "m");
    expect_run(r, "\xc3\xa9", PL_EVAL_PASS, NULL);
    expect_run(r, "ab", PL_EVAL_FAIL, "output is 2 characters long, max 1");
    pl_eval_rule_free(r);
    r = compile("max_length", "{\"max\": 9223372036854775807}", "m");
    expect_run(r, "anything", PL_EVAL_PASS, NULL);
    pl_eval_rule_free(r);

    expect_err("max_length", "{}", "m", "config.max is required");
    expect_err("max_length", "{\"max\": 0}", "m", "config.max must be at least 1");
    expect_err("max_length", "{\"max\": -3}", "m", "config.max must be at least 1");
    expect_err("max_length", "{\"max\": 1.5}", "m", "config.max must be an integer");
    expect_err("max_length", "{\"max\": 100.0}", "m", "config.max must be an integer");
    expect_err("max_length", "{\"max\": \"10\"}", "m", "config.max must be an integer");
    expect_err("max_length", "{\"max\": true}", "m", "config.max must be an integer");
    expect_err("max_length", "{\"max\": null}", "m", "config.max must be an integer");
}

/* ---- score_threshold --------------------------------------------------------------------- */

static void test_score_threshold(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("score_threshold", "{\"min\": 0.5}", "faithfulness");
    assert_string_equal(pl_eval_rule_metric(r), "faithfulness");
    expect_scores(r, "{\"faithfulness\": 0.5}", PL_EVAL_PASS, ""); /* equal to min passes */
    expect_scores(r, "{\"faithfulness\": 0.9}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"faithfulness\": 1}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"faithfulness\": 0.49}", PL_EVAL_FAIL,
                  "score 0.49 is below the minimum 0.5");
    expect_scores(r, "{\"faithfulness\": -2}", PL_EVAL_FAIL, "score -2 is below the minimum 0.5");
    expect_scores(r, "{\"relevance\": 0.9}", PL_EVAL_FAIL, "no score");
    expect_scores(r, "{}", PL_EVAL_FAIL, "no score");
    expect_scores(r, NULL, PL_EVAL_FAIL, "no score");
    expect_scores(r, "[0.9]", PL_EVAL_FAIL, "no score");
    expect_scores(r, "{\"faithfulness\": \"0.9\"}", PL_EVAL_FAIL, "score is not a number");
    expect_scores(r, "{\"faithfulness\": true}", PL_EVAL_FAIL, "score is not a number");
    expect_scores(r, "{\"faithfulness\": null}", PL_EVAL_FAIL, "score is not a number");
    json_object *nan = json_object_new_object();
    json_object_object_add(nan, "faithfulness", json_object_new_double(NAN));
    struct pl_eval_input in = {.eval_scores = nan};
    struct pl_eval_result res;
    assert_int_equal(pl_eval_rule_run(r, &in, &res), PL_EVAL_FAIL);
    assert_string_equal(res.feedback, "score is not a number");
    json_object_put(nan);
    pl_eval_rule_free(r);

    r = compile("score_threshold", "{\"max\": 0.8}", "toxicity");
    expect_scores(r, "{\"toxicity\": 0.8}", PL_EVAL_PASS, ""); /* equal to max passes */
    expect_scores(r, "{\"toxicity\": 0}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"toxicity\": 0.81}", PL_EVAL_FAIL, "score 0.81 is above the maximum 0.8");
    pl_eval_rule_free(r);

    r = compile("score_threshold", "{\"min\": 2, \"max\": 4}", "stars");
    expect_scores(r, "{\"stars\": 2}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"stars\": 4}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"stars\": 3.5}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"stars\": 1}", PL_EVAL_FAIL, "score 1 is below the minimum 2");
    expect_scores(r, "{\"stars\": 5}", PL_EVAL_FAIL, "score 5 is above the maximum 4");
    pl_eval_rule_free(r);

    r = compile("score_threshold", "{\"min\": 1, \"max\": 1}", "exact");
    expect_scores(r, "{\"exact\": 1.0}", PL_EVAL_PASS, "");
    expect_scores(r, "{\"exact\": 0.999}", PL_EVAL_FAIL, "score 0.999 is below the minimum 1");
    pl_eval_rule_free(r);
}

static void test_score_config_errors(void **state)
{
    (void)state;
    expect_err("score_threshold", "{}", "m", "config.min or config.max is required");
    expect_err("score_threshold", NULL, "m", "config.min or config.max is required");
    expect_err("score_threshold", "{\"min\": \"0.5\"}", "m", "config.min must be a number");
    expect_err("score_threshold", "{\"max\": true}", "m", "config.max must be a number");
    expect_err("score_threshold", "{\"min\": null}", "m", "config.min must be a number");
    expect_err("score_threshold", "{\"min\": 0.9, \"max\": 0.1}", "m",
               "config.min must not be greater than config.max");
    expect_err("score_threshold", "{\"min\": 0.5}", NULL,
               "metric_name is required for score_threshold");
    expect_err("score_threshold", "{\"min\": 0.5}", "",
               "metric_name is required for score_threshold");
    json_object *cfg = json_object_new_object();
    json_object_object_add(cfg, "max", json_object_new_double(INFINITY));
    expect_err_obj("score_threshold", cfg, "m", "config.max must be a finite number");
    json_object_put(cfg);
}

/* ---- several rules ----------------------------------------------------------------------- */

static void test_first_failure(void **state)
{
    (void)state;
    struct pl_eval_rule *rules[] = {
        compile("error_free", "{}", "no_errors"),
        compile("contains", "{\"value\": \"ok\"}", "says_ok"),
        compile("max_length", "{\"max\": 10}", "short"),
        compile("regex_absent", "{\"pattern\": \"(x+)+$\"}", "no_x_run"),
    };
    const struct pl_eval_rule *const *rs = (const struct pl_eval_rule *const *)rules;
    size_t n = sizeof(rules) / sizeof(rules[0]);
    struct pl_eval_result res;
    size_t failed = 77;

    struct pl_eval_input in = {.output = "ok then"};
    assert_false(pl_eval_first_failure(rs, n, &in, &failed, &res));
    assert_int_equal(failed, 77);
    assert_true(res.passed);
    assert_int_equal(res.status, PL_EVAL_PASS);
    assert_string_equal(res.feedback, "");

    in.output = "fine then";
    assert_true(pl_eval_first_failure(rs, n, &in, &failed, &res));
    assert_int_equal(failed, 1);
    assert_false(res.passed);
    assert_string_equal(res.feedback, "output does not contain \"ok\"");

    /* Rules run in order: the first failure wins even when later ones fail too. */
    in.error = "boom";
    in.output = "not ok at all, far too long";
    assert_true(pl_eval_first_failure(rs, n, &in, &failed, &res));
    assert_int_equal(failed, 0);
    assert_string_equal(res.feedback, "trace error: boom");

    in.error = NULL;
    assert_true(pl_eval_first_failure(rs, n, &in, &failed, &res));
    assert_int_equal(failed, 2);
    assert_string_equal(res.feedback, "output is 27 characters long, max 10");

    /* A limit hit does not pass: fail-safe. */
    char *s = repeat('x', 40, "!");
    s[0] = 'o';
    s[1] = 'k';
    struct pl_eval_rule *tail[] = {rules[1], rules[3]};
    in.output = s;
    assert_true(
        pl_eval_first_failure((const struct pl_eval_rule *const *)tail, 2, &in, &failed, &res));
    assert_int_equal(failed, 1);
    assert_int_equal(res.status, PL_EVAL_ERROR);
    assert_string_equal(res.feedback, "regex match limit exceeded");
    free(s);

    /* No rules: nothing fails. */
    assert_false(pl_eval_first_failure(rs, 0, &in, &failed, &res));
    assert_true(res.passed);
    for (size_t i = 0; i < n; i++)
        pl_eval_rule_free(rules[i]);
}

/* ---- concurrency ------------------------------------------------------------------------- */

struct shared_rules {
    const struct pl_eval_rule *regex, *icontains, *hostile;
    int bad; /* wrong results seen, written under the mutex */
    pthread_mutex_t lock;
};

static void *runner(void *arg)
{
    struct shared_rules *sr = arg;
    char *hostile = repeat('a', 30, "b");
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        struct pl_eval_result res;
        struct pl_eval_input yes = {.output = "Order #12345 is \xc3\x89TABLI"};
        struct pl_eval_input no = {.output = "no order here"};
        bad += pl_eval_rule_run(sr->regex, &yes, &res) != PL_EVAL_PASS;
        bad += pl_eval_rule_run(sr->regex, &no, &res) != PL_EVAL_FAIL;
        bad += pl_eval_rule_run(sr->icontains, &yes, &res) != PL_EVAL_PASS;
        bad += pl_eval_rule_run(sr->icontains, &no, &res) != PL_EVAL_FAIL;
        if (i % 50 == 0) {
            struct pl_eval_input h = {.output = hostile};
            bad += pl_eval_rule_run(sr->hostile, &h, &res) != PL_EVAL_ERROR;
        }
    }
    free(hostile);
    pthread_mutex_lock(&sr->lock);
    sr->bad += bad;
    pthread_mutex_unlock(&sr->lock);
    return NULL;
}

static void test_concurrent_runs(void **state)
{
    (void)state;
    struct shared_rules sr = {
        .regex = compile("regex_match", "{\"pattern\": \"#\\\\d{5}\\\\b\"}", "m"),
        .icontains =
            compile("contains", "{\"value\": \"\xc3\xa9tabli\", \"case_insensitive\": true}", "m"),
        .hostile = compile("regex_match", "{\"pattern\": \"(a+)+$\"}", "m"),
    };
    pthread_mutex_init(&sr.lock, NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, runner, &sr), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sr.bad, 0);
    pthread_mutex_destroy(&sr.lock);
    pl_eval_rule_free((struct pl_eval_rule *)sr.regex);
    pl_eval_rule_free((struct pl_eval_rule *)sr.icontains);
    pl_eval_rule_free((struct pl_eval_rule *)sr.hostile);
}

/* ---- budgets ------------------------------------------------------------------------------ */

#define TA "00000000-0000-0000-0000-00000000000a"
#define TB "00000000-0000-0000-0000-00000000000b"

static void test_ledger_rate(void **state)
{
    (void)state;
    /* 250 ms per 1000 ms: each ms spent is 4 ms of wall time to earn back. */
    struct pl_eval_ledger *l = pl_eval_ledger_new(250, 1000);
    assert_non_null(l);
    assert_int_equal(pl_eval_ledger_left(l, TA, 0), 250000);
    pl_eval_ledger_charge(l, TA, 100000, 0);
    assert_int_equal(pl_eval_ledger_left(l, TA, 0), 150000);
    assert_int_equal(pl_eval_ledger_left(l, TB, 0), 250000); /* tenants are apart */
    pl_eval_ledger_charge(l, TA, 150000, 0);
    assert_int_equal(pl_eval_ledger_left(l, TA, 0), 0);
    /* An overrun (a search cut a little late) is debt too: it takes longer to refill. */
    pl_eval_ledger_charge(l, TA, 50000, 0);
    assert_int_equal(pl_eval_ledger_left(l, TA, 200000), 0);
    assert_int_equal(pl_eval_ledger_left(l, TA, 300000), 25000);
    /* Refills at budget/window, never past the budget. */
    assert_int_equal(pl_eval_ledger_left(l, TA, 1000000), 200000);
    assert_int_equal(pl_eval_ledger_left(l, TA, 1100000), 225000);
    assert_int_equal(pl_eval_ledger_left(l, TA, 1200000), 250000);
    assert_int_equal(pl_eval_ledger_left(l, TA, 9000000), 250000);
    /* Spending while in debt adds to the debt, not to now. */
    pl_eval_ledger_charge(l, TA, 40000, 1100000);
    assert_int_equal(pl_eval_ledger_left(l, TA, 1100000), 185000);
    /* Nothing spent, nothing charged. */
    pl_eval_ledger_charge(l, TB, 0, 0);
    pl_eval_ledger_charge(l, TB, -5, 0);
    assert_int_equal(pl_eval_ledger_left(l, TB, 0), 250000);
    pl_eval_ledger_free(l);

    /* No tenant budget: unbounded, and charging is a no-op. */
    l = pl_eval_ledger_new(0, 1000);
    pl_eval_ledger_charge(l, TA, 1000000000, 0);
    assert_true(pl_eval_ledger_left(l, TA, 0) == INT64_MAX);
    pl_eval_ledger_free(l);
    assert_true(pl_eval_ledger_left(NULL, TA, 0) == INT64_MAX);
    pl_eval_ledger_free(NULL);
}

static void test_ledger_many_tenants(void **state)
{
    (void)state;
    struct pl_eval_ledger *l = pl_eval_ledger_new(100, 1000);
    char t[40];
    /* 5000 tenants in debt at once: the table grows and forgets none of them. */
    for (int i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "tenant-%d", i);
        pl_eval_ledger_charge(l, t, 1000 + i, 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "tenant-%d", i);
        assert_int_equal(pl_eval_ledger_left(l, t, 0), 100000 - 1000 - i);
    }
    /* Later, tenants out of debt are dropped as room is made: they are as good as new. */
    for (int i = 0; i < 20000; i++) {
        snprintf(t, sizeof(t), "late-%d", i);
        pl_eval_ledger_charge(l, t, 100, 10000000 + i);
    }
    snprintf(t, sizeof(t), "tenant-%d", 7);
    assert_int_equal(pl_eval_ledger_left(l, t, 10000000), 100000);
    snprintf(t, sizeof(t), "late-%d", 19999);
    assert_int_equal(pl_eval_ledger_left(l, t, 10000000 + 19999), 99900);
    pl_eval_ledger_free(l);
}

static void test_costly(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("regex_match", "{\"pattern\": \"a\"}", "m");
    assert_true(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
    r = compile("regex_absent", "{\"pattern\": \"a\"}", "m");
    assert_true(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
    r = compile("contains", "{\"value\": \"a\", \"case_insensitive\": true}", "m");
    assert_true(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
    r = compile("contains", "{\"value\": \"a\"}", "m");
    assert_false(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
    r = compile("json_valid", NULL, "m");
    assert_false(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
    r = compile("max_length", "{\"max\": 3}", "m");
    assert_false(pl_eval_rule_costly(r));
    pl_eval_rule_free(r);
}

/* The repro's output: runs of 16 "a" each ended by "!", 176 times. */
static char *evil_output(void)
{
    char *s = malloc(17 * 176 + 1);
    for (int i = 0; i < 176; i++) {
        memset(s + i * 17, 'a', 16);
        s[i * 17 + 16] = '!';
    }
    s[17 * 176] = '\0';
    return s;
}

static void test_budget_trace_spent(void **state)
{
    (void)state;
    struct pl_eval_rule *re = compile("regex_match", "{\"pattern\": \"a\"}", "m");
    struct pl_eval_rule *ml = compile("max_length", "{\"max\": 3}", "m");
    struct pl_eval_input in = {.output = "abc"};
    struct pl_eval_result res;
    /* A trace past its deadline skips every rule, cheap or costly. */
    struct pl_eval_budget b = {.trace_deadline_us = pl_eval_now_us() - 1};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pl_eval_rule_run_budgeted(i ? ml : re, &in, &b, &res), PL_EVAL_ERROR);
        assert_false(res.passed);
        assert_int_equal(res.skipped, PL_EVAL_SKIP_TRACE);
        assert_string_equal(res.feedback, "not evaluated: the trace's evaluation budget exceeded");
    }
    /* Within the deadline, or with none, rules run as pl_eval_rule_run runs them. */
    b.trace_deadline_us = pl_eval_now_us() + 60000000;
    assert_int_equal(pl_eval_rule_run_budgeted(re, &in, &b, &res), PL_EVAL_PASS);
    assert_int_equal(res.skipped, PL_EVAL_RAN);
    struct pl_eval_budget none = {0};
    assert_int_equal(pl_eval_rule_run_budgeted(ml, &in, &none, &res), PL_EVAL_PASS);
    in.output = "abcd";
    assert_int_equal(pl_eval_rule_run_budgeted(ml, &in, &none, &res), PL_EVAL_FAIL);
    assert_int_equal(res.skipped, PL_EVAL_RAN);
    pl_eval_rule_free(re);
    pl_eval_rule_free(ml);
}

static void test_budget_tenant_spent(void **state)
{
    (void)state;
    struct pl_eval_ledger *l = pl_eval_ledger_new(100, 1000);
    struct pl_eval_rule *re = compile("regex_absent", "{\"pattern\": \"x\"}", "m");
    struct pl_eval_rule *ct = compile("contains", "{\"value\": \"b\"}", "m");
    struct pl_eval_input in = {.output = "abc"};
    struct pl_eval_result res;
    struct pl_eval_budget b = {.ledger = l, .tenant_id = TA};
    pl_eval_ledger_charge(l, TA, 100000, pl_eval_now_us());
    /* The tenant's costly rules are skipped; its cheap rules still run. */
    assert_int_equal(pl_eval_rule_run_budgeted(re, &in, &b, &res), PL_EVAL_ERROR);
    assert_int_equal(res.skipped, PL_EVAL_SKIP_TENANT);
    assert_false(res.passed);
    assert_string_equal(res.feedback, "not evaluated: the tenant's evaluation budget exceeded");
    assert_int_equal(pl_eval_rule_run_budgeted(ct, &in, &b, &res), PL_EVAL_PASS);
    assert_int_equal(res.skipped, PL_EVAL_RAN);
    /* Another tenant is not affected. */
    b.tenant_id = TB;
    assert_int_equal(pl_eval_rule_run_budgeted(re, &in, &b, &res), PL_EVAL_PASS);
    assert_int_equal(res.skipped, PL_EVAL_RAN);
    assert_true(pl_eval_ledger_left(l, TB, pl_eval_now_us()) <= 100000);
    pl_eval_rule_free(re);
    pl_eval_rule_free(ct);
    pl_eval_ledger_free(l);
}

static void test_budget_cuts_search(void **state)
{
    (void)state;
    struct pl_eval_rule *r = compile("regex_match", "{\"pattern\": \"(a|aa)+$\"}", "m");
    char *out = evil_output();
    struct pl_eval_input in = {.output = out};
    struct pl_eval_result res;

    /* A distant deadline: the search's own limit ends it, reported as before. */
    struct pl_eval_rule *nested = compile("regex_match", "{\"pattern\": \"(a+)+$\"}", "m");
    char *s = repeat('a', 40, "b");
    struct pl_eval_input nin = {.output = s};
    struct pl_eval_budget b = {.trace_deadline_us = pl_eval_now_us() + 60000000};
    int64_t t0 = pl_now_ms();
    assert_int_equal(pl_eval_rule_run_budgeted(nested, &nin, &b, &res), PL_EVAL_ERROR);
    assert_int_equal(res.skipped, PL_EVAL_RAN);
    assert_string_equal(res.feedback, "regex match limit exceeded");
    assert_true(pl_now_ms() - t0 < 1000);
    free(s);
    pl_eval_rule_free(nested);

    /* The trace's deadline comes first: the search is abandoned there, as skipped. */
    b.trace_deadline_us = pl_eval_now_us() + 20000;
    t0 = pl_now_ms();
    assert_int_equal(pl_eval_rule_run_budgeted(r, &in, &b, &res), PL_EVAL_ERROR);
    int64_t took = pl_now_ms() - t0;
    assert_int_equal(res.skipped, PL_EVAL_SKIP_TRACE);
    if (took >= PL_EVAL_REGEX_BUDGET_MS - 10)
        fail_msg("cut at 20 ms took %lld ms", (long long)took);

    /* The tenant's budget comes first: abandoned there, and the time is charged. */
    struct pl_eval_ledger *l = pl_eval_ledger_new(100, 1000);
    pl_eval_ledger_charge(l, TA, 80000, pl_eval_now_us());
    b = (struct pl_eval_budget){.ledger = l, .tenant_id = TA};
    t0 = pl_now_ms();
    assert_int_equal(pl_eval_rule_run_budgeted(r, &in, &b, &res), PL_EVAL_ERROR);
    took = pl_now_ms() - t0;
    assert_int_equal(res.skipped, PL_EVAL_SKIP_TENANT);
    assert_string_equal(res.feedback, "not evaluated: the tenant's evaluation budget exceeded");
    if (took >= PL_EVAL_REGEX_BUDGET_MS - 10)
        fail_msg("cut at the tenant's 20 ms took %lld ms", (long long)took);
    assert_true(pl_eval_ledger_left(l, TA, pl_eval_now_us()) < 20000);
    /* ... and the next costly rule of that tenant is not run at all. */
    pl_eval_ledger_charge(l, TA, 1000000, pl_eval_now_us());
    t0 = pl_now_ms();
    assert_int_equal(pl_eval_rule_run_budgeted(r, &in, &b, &res), PL_EVAL_ERROR);
    assert_int_equal(res.skipped, PL_EVAL_SKIP_TENANT);
    assert_true(pl_now_ms() - t0 < 10);
    pl_eval_ledger_free(l);
    free(out);
    pl_eval_rule_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_compile_type_and_config_shape),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_error_free),
        cmocka_unit_test(test_json_valid_accepts),
        cmocka_unit_test(test_json_valid_rejects),
        cmocka_unit_test(test_json_valid_depth),
        cmocka_unit_test(test_json_require_object),
        cmocka_unit_test(test_regex_match_absent),
        cmocka_unit_test(test_regex_flags),
        cmocka_unit_test(test_regex_config_errors),
        cmocka_unit_test(test_regex_utf8),
        cmocka_unit_test(test_regex_null_output),
        cmocka_unit_test(test_regex_catastrophic),
        cmocka_unit_test(test_contains),
        cmocka_unit_test(test_contains_case_insensitive),
        cmocka_unit_test(test_contains_config_errors),
        cmocka_unit_test(test_max_length),
        cmocka_unit_test(test_score_threshold),
        cmocka_unit_test(test_score_config_errors),
        cmocka_unit_test(test_first_failure),
        cmocka_unit_test(test_concurrent_runs),
        cmocka_unit_test(test_ledger_rate),
        cmocka_unit_test(test_ledger_many_tenants),
        cmocka_unit_test(test_costly),
        cmocka_unit_test(test_budget_trace_spent),
        cmocka_unit_test(test_budget_tenant_spent),
        cmocka_unit_test(test_budget_cuts_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
