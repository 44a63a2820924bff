/* Unit tests for request-input validation (params.h) and the small helpers in util.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "params.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define SENTINEL 424242LL

/* ---- pl_param_int ------------------------------------------------------------------------ */

static void test_param_int_default(void **state)
{
    (void)state;
    long long v = SENTINEL;
    char err[128] = "";
    assert_int_equal(pl_param_int("limit", NULL, 50, 1, 200, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 50);
    assert_string_equal(err, "");
}

static void expect_int_ok(const char *value, long long min, long long max, long long want)
{
    long long v = SENTINEL;
    char err[128] = "";
    if (pl_param_int("offset", value, 7, min, max, &v, err, sizeof(err)) != 0)
        fail_msg("pl_param_int(\"%s\") failed: %s", value, err);
    assert_int_equal(v, want);
}

static void expect_int_bad(const char *value, long long min, long long max)
{
    long long v = SENTINEL;
    char err[128] = "";
    if (pl_param_int("offset", value, 7, min, max, &v, err, sizeof(err)) != -1)
        fail_msg("pl_param_int(\"%s\") accepted (%lld)", value, v);
    /* The message names the parameter and the output is left alone. */
    assert_non_null(strstr(err, "offset"));
    assert_int_equal(v, SENTINEL);
}

static void test_param_int_range(void **state)
{
    (void)state;
    expect_int_ok("0", 0, 200, 0);
    expect_int_ok("200", 0, 200, 200);
    expect_int_ok("17", 0, 200, 17);
    expect_int_ok("-5", -10, 10, -5);
    expect_int_bad("201", 0, 200);
    expect_int_bad("-1", 0, 200);
    expect_int_bad("0", 1, 200);
    /* The whole long long range is reachable. */
    expect_int_ok("9223372036854775807", LLONG_MIN, LLONG_MAX, LLONG_MAX);
    expect_int_ok("-9223372036854775808", LLONG_MIN, LLONG_MAX, LLONG_MIN);
}

static void test_param_int_syntax(void **state)
{
    (void)state;
    const char *bad[] = {"abc", "",  "1.5", " 5",  "5 ",       "5x",   "0x10", "1e3",
                         "--1", "-", "\t5", "5\n", "\xd9\xa1", "12 3", "NaN"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_int_bad(bad[i], LLONG_MIN, LLONG_MAX);
    /* Overflow is an error, not a clamp to LLONG_MAX. */
    expect_int_bad("99999999999999999999", LLONG_MIN, LLONG_MAX);
    expect_int_bad("9223372036854775808", LLONG_MIN, LLONG_MAX);
    expect_int_bad("-9223372036854775809", LLONG_MIN, LLONG_MAX);
}

static void test_param_int_err_text(void **state)
{
    (void)state;
    long long v;
    char err[128] = "";
    assert_int_equal(pl_param_int("limit", "201", 50, 1, 200, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "limit must be an integer between 1 and 200");
    /* A tiny error buffer is truncated, not overrun. */
    char small[8];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(pl_param_int("limit", "x", 50, 1, 200, &v, small, 6), -1);
    assert_string_equal(small, "limit");
    assert_int_equal(small[6], 'Z');
    assert_int_equal(small[7], 'Z');
}

/* ---- pl_param_json_object ---------------------------------------------------------------- */

static json_object *parse_body(const char *body, bool allow_empty, char *err, size_t errsz)
{
    return pl_param_json_object(body, strlen(body), allow_empty, err, errsz);
}

static void test_json_empty_body(void **state)
{
    (void)state;
    char err[256] = "";
    json_object *o = parse_body("", true, err, sizeof(err));
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_object));
    assert_int_equal(json_object_object_length(o), 0);
    json_object_put(o);

    err[0] = '\0';
    assert_null(parse_body("", false, err, sizeof(err)));
    assert_string_equal(err, "request body must be a JSON object");
}

static void test_json_whitespace_only(void **state)
{
    (void)state;
    char err[256] = "";
    json_object *o = parse_body(" \r\n\t  ", true, err, sizeof(err));
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_object));
    assert_int_equal(json_object_object_length(o), 0);
    json_object_put(o);

    err[0] = '\0';
    assert_null(parse_body(" \r\n\t  ", false, err, sizeof(err)));
    assert_string_not_equal(err, "");
}

static void test_json_objects_accepted(void **state)
{
    (void)state;
    char err[256] = "";
    json_object *o = parse_body("{}", false, err, sizeof(err));
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_object));
    assert_int_equal(json_object_object_length(o), 0);
    json_object_put(o);

    /* Trailing (and leading) whitespace is fine. */
    o = parse_body("{}  \n", false, err, sizeof(err));
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 0);
    json_object_put(o);
    o = parse_body("\n {\"a\": 1, \"b\": \"x\"}\r\n", false, err, sizeof(err));
    assert_non_null(o);
    json_object *a = NULL, *b = NULL;
    assert_true(json_object_object_get_ex(o, "a", &a));
    assert_int_equal(json_object_get_int64(a), 1);
    assert_true(json_object_object_get_ex(o, "b", &b));
    assert_string_equal(json_object_get_string(b), "x");
    json_object_put(o);

    /* A non-empty object when allow_empty is set is still the parsed object. */
    o = parse_body("{\"k\":true}", true, err, sizeof(err));
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 1);
    json_object_put(o);
}

static void test_json_respects_len(void **state)
{
    (void)state;
    char err[256] = "";
    /* Only len bytes are the body: the rest of the buffer is not looked at. */
    const char buf[] = "{\"a\":1}garbage";
    json_object *o = pl_param_json_object(buf, 7, false, err, sizeof(err));
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 1);
    json_object_put(o);
    /* ... but an embedded NUL inside len is data after the value. */
    const char nul[] = {'{', '}', '\0', 'x'};
    err[0] = '\0';
    assert_null(pl_param_json_object(nul, sizeof(nul), false, err, sizeof(err)));
    assert_string_not_equal(err, "");
}

static void test_json_not_an_object(void **state)
{
    (void)state;
    const char *bodies[] = {"[]", "[{}]", "\"s\""};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(bodies[i], false, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("\"%s\" accepted as an object", bodies[i]);
        }
        assert_string_equal(err, "request body must be a JSON object");
    }
    /* Top-level scalars are refused as well, with the same message; "true " once came back
     * as a boolean, which pl_param_check_fields then read as an object (a crash). */
    const char *scalars[] = {"null", "true", "123", "  null  ", "true ", "false\n", " true\t"};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(scalars[i], true, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("\"%s\" accepted as an object", scalars[i]);
        }
        assert_string_equal(err, "request body must be a JSON object");
    }
    /* json-c's lenient extensions are not JSON: strict parsing refuses them (json-c 0.16
     * still takes single-quoted strings and NaN even when strict; PostgreSQL's json types
     * refuse NaN where it matters). Invalid UTF-8 is refused too. */
    const char *lenient[] = {"{\"a\":1,}", "{\"a\":1 /* c */}", "{\"a\":\"\xff\xfe\"}"};
    for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(lenient[i], false, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("\"%s\" accepted", lenient[i]);
        }
        assert_non_null(strstr(err, "not valid JSON"));
    }
}

static void test_json_invalid(void **state)
{
    (void)state;
    const char *bodies[] = {"{", "{\"a\":", "{\"a\" 1}", "}", "{]", "nope", "{\"a\":tru}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(bodies[i], false, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("\"%s\" accepted", bodies[i]);
        }
        if (strstr(err, "not valid JSON") == NULL)
            fail_msg("\"%s\": unexpected error \"%s\"", bodies[i], err);
    }
}

static void test_json_trailing_data(void **state)
{
    (void)state;
    const char *bodies[] = {"{} x", "{}{}", "{} {}", "{}\n,", "{\"a\":1} 2"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(bodies[i], true, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("\"%s\" accepted", bodies[i]);
        }
        assert_string_equal(err, "request body has data after the JSON value");
    }
}

/* What json-c would let through and the system cannot hold: each is refused with the place
 * named; their neighbours that are fine pass. */
static void test_json_strict(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t len; /* 0: strlen */
        const char *err;
    } bad[] = {
        {"{\"name\":\"a\\u0000b\"}", 0, "request body: name: "},
        {"{\"a\":{\"b\":[1,\"x\\u0000\"]}}", 0, "request body: a.b[1]: "},
        {"{\"name\":\"\xC0\xAF\"}", 0, "request body"},
        {"{\"name\":\"\xED\xA0\x80\"}", 0, "request body"},
        {"{\"name\":\"\xF4\x90\x80\x80\"}", 0, "request body"},
        {"{\"ab_alpha\":1e-400}", 0, "request body: ab_alpha: number out of range"},
        {"{\"x\":1e400}", 0, "request body: x: number out of range"},
        {"{\"n\":99999999999999999999}", 0, "request body: n: number out of range"},
        {"{\"a\":1,\"a\":2}", 0, "request body: the key \"a\" appears twice"},
        {"{\"o\":{\"k\":1,\"j\":2,\"k\":3}}", 0, "request body: o: the key \"k\" appears twice"},
        {"{\"secret\\u0000suffix\":1}", 0, "request body"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        json_object *o = pl_param_json_object(
            bad[i].body, bad[i].len ? bad[i].len : strlen(bad[i].body), false, err, sizeof(err));
        if (o) {
            json_object_put(o);
            fail_msg("%zu: accepted %s", i, bad[i].body);
        }
        if (strncmp(err, bad[i].err, strlen(bad[i].err)) != 0)
            fail_msg("%zu: \"%s\" does not start with \"%s\"", i, err, bad[i].err);
    }
    static const char *const good[] = {
        "{\"name\":\"caf\xC3\xA9 \xF0\x9F\x98\x80\"}",
        "{\"ab_alpha\":1e-300}",
        "{\"n\":9223372036854775807}",
        "{\"a\":{\"k\":1},\"b\":{\"k\":1}}",
        "{\"a\":[{\"k\":1},{\"k\":2}]}",
        "{\"s\":\"\\u00e9\\ud83d\\ude00\"}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char err[256] = "";
        json_object *o = parse_body(good[i], false, err, sizeof(err));
        if (!o)
            fail_msg("%zu: refused %s: %s", i, good[i], err);
        json_object_put(o);
    }
}

/* ---- pl_param_check_fields --------------------------------------------------------------- */

/* A string's length is counted in characters: 1000 two-byte characters fit a limit of 1000,
 * 1001 do not. */
static void test_fields_length_in_characters(void **state)
{
    (void)state;
    static const struct pl_field_rule reason[] = {{"reason", PL_FIELD_STRING, 0, 1000}};
    for (int n = 1000; n <= 1001; n++) {
        size_t cap = 16 + 2 * (size_t)n;
        char *body = malloc(cap);
        size_t len = (size_t)snprintf(body, cap, "{\"reason\":\"");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(body + len, cap - len, "\xC3\xA9");
        snprintf(body + len, cap - len, "\"}");
        char err[256] = "";
        json_object *o = pl_param_json_object(body, strlen(body), false, err, sizeof(err));
        assert_non_null(o);
        assert_int_equal(pl_param_check_fields(o, reason, 1, err, sizeof(err)),
                         n == 1000 ? PL_FIELDS_OK : PL_FIELDS_UNPROCESSABLE);
        json_object_put(o);
        free(body);
    }
}

static const struct pl_field_rule rules[] = {
    {"name", PL_FIELD_STRING, 1, 10},
    {"enabled", PL_FIELD_BOOL, 0, 0},
    {"size", PL_FIELD_INT, 1, 100},
    {"delta", PL_FIELD_INT, -5, 5},
};
#define NRULES (sizeof(rules) / sizeof(rules[0]))

static enum pl_field_result check(const char *json, char *err, size_t errsz)
{
    json_object *o = json_tokener_parse(json);
    if (!o)
        fail_msg("test JSON does not parse: %s", json);
    err[0] = '\0';
    enum pl_field_result r = pl_param_check_fields(o, rules, NRULES, err, errsz);
    json_object_put(o);
    return r;
}

static void expect_fields(const char *json, enum pl_field_result want, const char *field)
{
    char err[256];
    enum pl_field_result r = check(json, err, sizeof(err));
    if (r != want)
        fail_msg("%s: result %d, want %d (err \"%s\")", json, r, want, err);
    if (field && !strstr(err, field))
        fail_msg("%s: error \"%s\" does not name %s", json, err, field);
}

static void test_fields_ok(void **state)
{
    (void)state;
    expect_fields("{}", PL_FIELDS_OK, NULL);
    expect_fields("{\"name\":\"abc\",\"enabled\":true,\"size\":5,\"delta\":-5}", PL_FIELDS_OK,
                  NULL);
    expect_fields("{\"enabled\":false}", PL_FIELDS_OK, NULL);
    /* Bounds are inclusive. */
    expect_fields("{\"size\":1}", PL_FIELDS_OK, NULL);
    expect_fields("{\"size\":100}", PL_FIELDS_OK, NULL);
    expect_fields("{\"delta\":5}", PL_FIELDS_OK, NULL);
    expect_fields("{\"name\":\"a\"}", PL_FIELDS_OK, NULL);
    expect_fields("{\"name\":\"0123456789\"}", PL_FIELDS_OK, NULL);
}

static void test_fields_unknown(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(check("{\"bogus\":1}", err, sizeof(err)), PL_FIELDS_BAD_REQUEST);
    assert_string_equal(err, "unknown field \"bogus\"");
    expect_fields("{\"name\":\"ok\",\"colour\":\"red\"}", PL_FIELDS_BAD_REQUEST, "colour");
    /* Names match exactly (no case folding). */
    expect_fields("{\"Name\":\"ok\"}", PL_FIELDS_BAD_REQUEST, "Name");
    /* No rules at all: every member is unknown. */
    json_object *o = json_tokener_parse("{\"x\":1}");
    assert_int_equal(pl_param_check_fields(o, rules, 0, err, sizeof(err)), PL_FIELDS_BAD_REQUEST);
    json_object_put(o);
}

static void test_fields_wrong_type(void **state)
{
    (void)state;
    expect_fields("{\"enabled\":\"true\"}", PL_FIELDS_BAD_REQUEST, "enabled");
    expect_fields("{\"enabled\":1}", PL_FIELDS_BAD_REQUEST, "enabled");
    expect_fields("{\"enabled\":null}", PL_FIELDS_BAD_REQUEST, "enabled");
    expect_fields("{\"size\":1.5}", PL_FIELDS_BAD_REQUEST, "size");
    expect_fields("{\"size\":2.0}", PL_FIELDS_BAD_REQUEST, "size");
    expect_fields("{\"size\":\"3\"}", PL_FIELDS_BAD_REQUEST, "size");
    expect_fields("{\"size\":true}", PL_FIELDS_BAD_REQUEST, "size");
    expect_fields("{\"size\":[3]}", PL_FIELDS_BAD_REQUEST, "size");
    expect_fields("{\"name\":5}", PL_FIELDS_BAD_REQUEST, "name");
    expect_fields("{\"name\":{}}", PL_FIELDS_BAD_REQUEST, "name");
    expect_fields("{\"name\":null}", PL_FIELDS_BAD_REQUEST, "name");
    /* The message says which type was expected. */
    expect_fields("{\"enabled\":\"no\"}", PL_FIELDS_BAD_REQUEST, "must be a boolean");
    expect_fields("{\"size\":\"3\"}", PL_FIELDS_BAD_REQUEST, "must be an integer");
    expect_fields("{\"name\":1}", PL_FIELDS_BAD_REQUEST, "must be a string");
}

static void test_fields_out_of_range(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(check("{\"size\":0}", err, sizeof(err)), PL_FIELDS_UNPROCESSABLE);
    assert_string_equal(err, "size must be between 1 and 100");
    expect_fields("{\"size\":101}", PL_FIELDS_UNPROCESSABLE, "size");
    expect_fields("{\"size\":-1}", PL_FIELDS_UNPROCESSABLE, "size");
    expect_fields("{\"delta\":-6}", PL_FIELDS_UNPROCESSABLE, "delta");
    expect_fields("{\"delta\":6}", PL_FIELDS_UNPROCESSABLE, "delta");
    /* Far beyond int64: still an integer, still out of range (never wraps into range). */
    expect_fields("{\"size\":99999999999999999999}", PL_FIELDS_UNPROCESSABLE, "size");
    expect_fields("{\"delta\":-99999999999999999999}", PL_FIELDS_UNPROCESSABLE, "delta");
    expect_fields("{\"delta\":18446744073709551615}", PL_FIELDS_UNPROCESSABLE, "delta");
}

static void test_fields_numbers(void **state)
{
    (void)state;
    static const struct pl_field_rule num_rules[] = {
        {"rate", PL_FIELD_FRACTION, 0, 0},
        {"h", PL_FIELD_NUMBER, 1, 50},
    };
    static const struct {
        const char *json;
        enum pl_field_result want;
        const char *err;
    } cases[] = {
        {"{\"rate\":0}", PL_FIELDS_OK, ""},
        {"{\"rate\":1}", PL_FIELDS_OK, ""},
        {"{\"rate\":0.05,\"h\":4.5}", PL_FIELDS_OK, ""},
        {"{\"h\":50}", PL_FIELDS_OK, ""},
        {"{\"rate\":1.01}", PL_FIELDS_UNPROCESSABLE, "rate must be between 0 and 1"},
        {"{\"rate\":-0.1}", PL_FIELDS_UNPROCESSABLE, "rate must be between 0 and 1"},
        {"{\"h\":0.5}", PL_FIELDS_UNPROCESSABLE, "h must be between 1 and 50"},
        {"{\"h\":51}", PL_FIELDS_UNPROCESSABLE, "h must be between 1 and 50"},
        {"{\"rate\":\"0.1\"}", PL_FIELDS_BAD_REQUEST, "rate must be a number"},
        {"{\"h\":true}", PL_FIELDS_BAD_REQUEST, "h must be a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = json_tokener_parse(cases[i].json);
        char err[256] = "";
        enum pl_field_result r = pl_param_check_fields(o, num_rules, 2, err, sizeof(err));
        json_object_put(o);
        if (r != cases[i].want || strcmp(err, cases[i].err) != 0)
            fail_msg("%s: result %d \"%s\", want %d \"%s\"", cases[i].json, r, err, cases[i].want,
                     cases[i].err);
    }
}

static void test_json_names_what_it_parses(void **state)
{
    (void)state;
    char err[256];
    assert_null(pl_json_object_parse("[1]", 3, false, "reply", err, sizeof(err)));
    assert_string_equal(err, "reply must be a JSON object");
    assert_null(pl_json_object_parse("{\"a\":", 5, false, "reply", err, sizeof(err)));
    assert_string_equal(err, "reply is not valid JSON: unexpected end");
    assert_null(pl_json_object_parse("{} x", 4, false, "reply", err, sizeof(err)));
    assert_string_equal(err, "reply has data after the JSON value");
}

static void test_fields_string_length(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(check("{\"name\":\"\"}", err, sizeof(err)), PL_FIELDS_UNPROCESSABLE);
    assert_string_equal(err, "name must be 1 to 10 characters long");
    expect_fields("{\"name\":\"01234567890\"}", PL_FIELDS_UNPROCESSABLE, "name");
    /* Lengths are characters: ten 2-byte characters fit, eleven do not. */
    expect_fields(
        "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\"}",
        PL_FIELDS_OK, NULL);
    expect_fields(
        "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\"}",
        PL_FIELDS_UNPROCESSABLE, "name");
    /* An escaped character counts once, as its decoded byte. */
    expect_fields("{\"name\":\"\\n\\n\\n\\n\\n\\n\\n\\n\\n\\n\"}", PL_FIELDS_OK, NULL);
}

static void test_fields_first_error_wins_per_member(void **state)
{
    (void)state;
    /* Valid members before an invalid one do not hide it. */
    expect_fields("{\"name\":\"ok\",\"enabled\":true,\"size\":500}", PL_FIELDS_UNPROCESSABLE,
                  "size");
    expect_fields("{\"size\":5,\"name\":\"ok\",\"enabled\":\"yes\"}", PL_FIELDS_BAD_REQUEST,
                  "enabled");
}

/* ---- util.h ------------------------------------------------------------------------------ */

/* ---- pl_param_timestamp_ok --------------------------------------------------------------- */

static void test_timestamp(void **state)
{
    (void)state;
    const char *good[] = {"2026-01-31T12:00:00Z",      "2026-01-31T12:00:00.123456Z",
                          "2026-01-31T12:00:00+05:30", "2026-01-31T12:00:00-15:59",
                          "2024-02-29T00:00:00Z",      "2026-12-31T23:59:60Z",
                          "0001-01-01T00:00:00Z",      "9999-12-31T23:59:59.5+00:00"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!pl_param_timestamp_ok(good[i]))
            fail_msg("refused: %s", good[i]);
    /* Each of these is an error of PostgreSQL's timestamptz input (a 500 had it been passed
     * on) or a different instant there ("1-01-01" is 2001). */
    const char *bad[] = {
        "2026-02-31T00:00:00Z",      "2023-02-29T00:00:00Z",      "0000-01-01T00:00:00Z",
        "2026-01-31T23:59:61Z",      "2026-01-31T12:60:00Z",      "2026-01-31T12:00:00+ab:cd",
        "2026-01-31T12:00:00+16:00", "2026-01-31T12:00:00+15:60", "1-01-01T00:00:00Z",
        "2026- 1-31T12:00:00Z",      "2026-01-31T12:00:00",       "2026-01-31",
        "2026-01-31T12:00:00Zx",     "2026-01-31 12:00:00Z",      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pl_param_timestamp_ok(bad[i]))
            fail_msg("accepted: %s", bad[i]);
}

static void test_parse_ll(void **state)
{
    (void)state;
    long long v = SENTINEL;
    assert_int_equal(pl_parse_ll("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(pl_parse_ll("-12", &v), 0);
    assert_int_equal(v, -12);
    assert_int_equal(pl_parse_ll("0042", &v), 0); /* base 10, not octal */
    assert_int_equal(v, 42);
    assert_int_equal(pl_parse_ll("9223372036854775807", &v), 0);
    assert_int_equal(v, LLONG_MAX);
    assert_int_equal(pl_parse_ll("-9223372036854775808", &v), 0);
    assert_int_equal(v, LLONG_MIN);

    const char *bad[] = {"",
                         " 1",
                         "1 ",
                         "\t1",
                         "1\n",
                         "1a",
                         "0x10",
                         "1.0",
                         "1e2",
                         "--1",
                         "-",
                         "+",
                         "a1",
                         "1,0",
                         "9223372036854775808",
                         "-9223372036854775809",
                         "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = SENTINEL;
        if (pl_parse_ll(bad[i], &v) != -1)
            fail_msg("pl_parse_ll(\"%s\") accepted (%lld)", bad[i], v);
        assert_int_equal(v, SENTINEL);
    }
    assert_int_equal(pl_parse_ll(NULL, &v), -1);
}

static void test_uuid_valid(void **state)
{
    (void)state;
    assert_true(pl_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(pl_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_true(pl_uuid_valid("ABCDEF01-2345-6789-ABCD-EF0123456789"));
    assert_true(pl_uuid_valid("abcdef01-2345-6789-abcd-ef0123456789"));
    assert_true(pl_uuid_valid("AbCdEf01-2345-6789-aBcD-eF0123456789"));

    const char *bad[] = {
        "",
        "123e4567-e89b-12d3-a456-42661417400",   /* 35 */
        "123e4567-e89b-12d3-a456-4266141740000", /* 37 */
        "123e4567e89b12d3a456426614174000",      /* no dashes */
        "123e456-7e89b-12d3-a456-426614174000",  /* first dash one early */
        "123e45678-e89-b12d3-a456-42661417400",  /* dashes shifted */
        "123e4567-e89b-12d3-a4564-26614174000",  /* last dash one late */
        "123e4567_e89b_12d3_a456_426614174000",  /* wrong separator */
        "123e4567-e89b-12d3-a456-42661417400g",  /* non-hex */
        "z23e4567-e89b-12d3-a456-426614174000",  /* non-hex at start */
        "123e4567-e89b-12d3-a456-4266 4174000",  /* space */
        "{23e4567-e89b-12d3-a456-42661417400}",  /* braces */
        "------------------------------------",  /* all dashes */
        "123e4567-e89b-12d3-a456-42661417400\n", /* newline in the last place */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pl_uuid_valid(bad[i]))
            fail_msg("pl_uuid_valid(\"%s\") accepted", bad[i]);
    assert_false(pl_uuid_valid(NULL));
}

static void test_sha256_hex(void **state)
{
    (void)state;
    char out[65];
    memset(out, 'Q', sizeof(out));
    pl_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    pl_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* FIPS 180-2 two-block example. */
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pl_sha256_hex(two, strlen(two), out);
    assert_string_equal(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* Hashes len bytes, embedded NULs included: different from hashing "abc". */
    pl_sha256_hex("abc\0", 4, out);
    assert_string_not_equal(out,
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(strlen(out), 64);
    for (int i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", out[i]));
}

static void test_random_bytes(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(pl_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(pl_random_bytes(b, sizeof(b)), 0);
    /* 2^-256 chance of a false failure. */
    assert_memory_not_equal(a, b, sizeof(a));
}

static void test_clock(void **state)
{
    (void)state;
    int64_t t0 = pl_now_ms();
    pl_sleep_ms(30);
    int64_t t1 = pl_now_ms();
    assert_true(t1 - t0 >= 30);
    assert_true(t1 - t0 < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_int_default),
        cmocka_unit_test(test_param_int_range),
        cmocka_unit_test(test_param_int_syntax),
        cmocka_unit_test(test_param_int_err_text),
        cmocka_unit_test(test_json_empty_body),
        cmocka_unit_test(test_json_whitespace_only),
        cmocka_unit_test(test_json_objects_accepted),
        cmocka_unit_test(test_json_respects_len),
        cmocka_unit_test(test_json_not_an_object),
        cmocka_unit_test(test_json_invalid),
        cmocka_unit_test(test_json_trailing_data),
        cmocka_unit_test(test_json_strict),
        cmocka_unit_test(test_fields_length_in_characters),
        cmocka_unit_test(test_fields_ok),
        cmocka_unit_test(test_fields_unknown),
        cmocka_unit_test(test_fields_wrong_type),
        cmocka_unit_test(test_fields_out_of_range),
        cmocka_unit_test(test_fields_numbers),
        cmocka_unit_test(test_json_names_what_it_parses),
        cmocka_unit_test(test_fields_string_length),
        cmocka_unit_test(test_fields_first_error_wins_per_member),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_parse_ll),
        cmocka_unit_test(test_uuid_valid),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
