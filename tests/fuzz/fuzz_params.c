/* libFuzzer target: request parameters (params.c, util.c), action-list cursors
 * (action_store.c) and the API's enum names, each checked against an independent reading. */
#define _GNU_SOURCE /* strptime */
#include "fuzz.h"

#include "action.h"
#include "action_store.h"
#include "auth.h"
#include "control.h"
#include "deploy.h"
#include "evaluate.h"
#include "log.h"
#include "params.h"
#include "trace.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <time.h>

static int days_in_month(int m, int y)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return m == 2 && leap ? 29 : days[m - 1];
}

/* What PostgreSQL's timestamptz input takes of the accepted shape: a real calendar date
 * (years 1 to 9999, four digits), seconds up to 60 (a leap second), a fraction, and
 * an offset of digits within +-15:59 (the API passes these to `$n::timestamptz`, where any
 * other value is an error, not a 400). */
static bool instant_ok(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || s[4] != '-') /* a shorter year is another year there ("1-01-01": 2001) */
        return false;
    int y = tm.tm_year + 1900;
    if (y < 1 || y > 9999 || tm.tm_mday > days_in_month(tm.tm_mon + 1, y) || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    if (*end == '.')
        for (end++; isdigit((unsigned char)*end); end++)
            ;
    if (*end == 'Z')
        return end[1] == '\0';
    if ((*end != '+' && *end != '-') || strlen(end) != 6 || end[3] != ':')
        return false;
    for (int i = 1; i < 6; i++)
        if (i != 3 && !isdigit((unsigned char)end[i]))
            return false;
    return (end[1] - '0') * 10 + (end[2] - '0') <= 15 && end[4] <= '5';
}

static void check_int(const char *s)
{
    static const struct {
        long long def, min, max;
    } ranges[] = {{50, 1, 200}, {0, 0, 1000000000LL}, {0, LLONG_MIN, LLONG_MAX}, {-5, -10, -1}};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        long long v = 12345, w;
        char err[128] = "";
        int rc = pl_param_int("limit", s, ranges[i].def, ranges[i].min, ranges[i].max, &v, err,
                              sizeof(err));
        if (rc == 0) {
            FUZZ_CHECK(v >= ranges[i].min && v <= ranges[i].max, "%lld out of range", v);
            FUZZ_CHECK(pl_parse_ll(s, &w) == 0 && w == v, "param and parse_ll differ");
            char *end;
            errno = 0;
            FUZZ_CHECK(strtoll(s, &end, 10) == v && errno == 0 && *end == '\0' && s[0] &&
                           !isspace((unsigned char)s[0]),
                       "\"%s\" is not the whole decimal %lld", s, v);
        } else {
            FUZZ_CHECK(v == 12345, "a refused value was stored");
            FUZZ_CHECK(strstr(err, "limit"), "the message does not name the parameter: %s", err);
        }
    }
    long long v;
    FUZZ_CHECK(pl_param_int("x", NULL, 7, 1, 9, &v, NULL, 0) == 0 && v == 7, "default");
    if (pl_parse_ll(s, &v) == 0) {
        char back[32];
        long long w;
        snprintf(back, sizeof(back), "%lld", v);
        FUZZ_CHECK(pl_parse_ll(back, &w) == 0 && w == v, "%lld does not parse back", v);
    }
}

static void check_timestamps(const char *s)
{
    bool param = pl_param_timestamp_ok(s);
    bool trace = pl_trace_timestamp_ok(s);
    FUZZ_CHECK(!param || instant_ok(s), "a query timestamp the database would refuse: \"%s\"", s);
    FUZZ_CHECK(!trace || instant_ok(s), "a received_at the database would refuse: \"%s\"", s);
    /* received_at's fixed form is one of the instants a query takes. */
    FUZZ_CHECK(!trace || param, "received_at \"%s\" is no query timestamp", s);
}

static void check_cursor(const char *s)
{
    static const enum pl_action_list_kind kinds[] = {PL_ACTION_LIST_NEWEST, PL_ACTION_LIST_QUEUE};
    for (size_t k = 0; k < 2; k++) {
        struct pl_action_cursor c, back;
        if (pl_action_cursor_decode(kinds[k], s, &c) != 0)
            continue;
        FUZZ_CHECK(pl_uuid_valid(c.id), "decoded id %s", c.id);
        FUZZ_CHECK(pl_action_cursor_decode(kinds[1 - k], s, &back) != 0,
                   "one cursor reads as both lists'");
        char enc[PL_ACTION_CURSOR_MAX];
        pl_action_cursor_encode(kinds[k], &c, enc);
        for (const char *p = enc; *p; p++)
            FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '-' || *p == '_', "cursor %s", enc);
        FUZZ_CHECK(pl_action_cursor_decode(kinds[k], enc, &back) == 0 &&
                       back.created_us == c.created_us && strcmp(back.id, c.id) == 0,
                   "cursor %s does not round-trip", enc);
    }
}

/* Each enum's parse is the inverse of its name. */
static void check_enums(const char *s)
{
    enum pl_action_status as;
    if (pl_action_status_parse(s, &as) == 0)
        FUZZ_CHECK(strcmp(pl_action_status_name(as), s) == 0, "action status %s", s);
    enum pl_action_kind ak;
    if (pl_action_kind_parse(s, &ak) == 0)
        FUZZ_CHECK(strcmp(pl_action_kind_name(ak), s) == 0, "action kind %s", s);
    enum pl_deploy_status ds;
    if (pl_deploy_status_parse(s, &ds) == 0)
        FUZZ_CHECK(strcmp(pl_deploy_status_name(ds), s) == 0, "deploy status %s", s);
    enum pl_role role;
    if (pl_auth_role_parse(s, &role) == 0)
        FUZZ_CHECK(strcmp(pl_auth_role_name(role), s) == 0, "role %s", s);
    enum pl_eval_type et;
    if (pl_eval_type_parse(s, &et) == 0)
        FUZZ_CHECK(strcmp(pl_eval_type_name(et), s) == 0, "eval type %s", s);
    enum pl_log_level level;
    if (pl_log_level_parse(s, &level) == 0)
        FUZZ_CHECK(level >= PL_LOG_DEBUG && level <= PL_LOG_ERROR, "log level %s", s);
    if (pl_uuid_valid(s))
        FUZZ_CHECK(strlen(s) == 36 && s[8] == '-' && s[23] == '-', "uuid %s", s);
}

/* A body's fields against a table with every field type, re-checked here member by member. */
static void check_fields(const uint8_t *data, size_t size)
{
    static const struct pl_field_rule rules[] = {
        {"name", PL_FIELD_STRING, 1, 16},      {"enabled", PL_FIELD_BOOL, 0, 0},
        {"count", PL_FIELD_INT, -5, 100},      {"rate", PL_FIELD_FRACTION, 0, 0},
        {"weight", PL_FIELD_NUMBER, -10, 10},  {"config", PL_FIELD_OBJECT, 0, 0},
        {"empty_ok", PL_FIELD_STRING, 0, 200},
    };
    char err[256] = "";
    json_object *o = pl_param_json_object((const char *)data, size, true, err, sizeof(err));
    if (!o) {
        FUZZ_CHECK(err[0], "a body refused without a reason");
        return;
    }
    enum pl_field_result r =
        pl_param_check_fields(o, rules, sizeof(rules) / sizeof(rules[0]), err, sizeof(err));
    if (r != PL_FIELDS_OK) {
        FUZZ_CHECK(err[0], "fields refused without a reason");
        json_object_put(o);
        return;
    }
    json_object_object_foreach(o, key, val)
    {
        const struct pl_field_rule *rule = NULL;
        for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
            if (strcmp(rules[i].name, key) == 0)
                rule = &rules[i];
        FUZZ_CHECK(rule, "unknown field %s taken", key);
        switch (rule->type) {
        case PL_FIELD_STRING: {
            const char *v = json_object_get_string(val);
            size_t len = (size_t)json_object_get_string_len(val);
            FUZZ_CHECK(json_object_is_type(val, json_type_string) && fuzz_utf8_valid(v, len), "%s",
                       key);
            size_t chars = fuzz_utf8_chars(v, len);
            FUZZ_CHECK((long long)chars >= rule->min && (long long)chars <= rule->max,
                       "%s has %zu characters", key, chars);
            break;
        }
        case PL_FIELD_BOOL:
            FUZZ_CHECK(json_object_is_type(val, json_type_boolean), "%s", key);
            break;
        case PL_FIELD_INT: {
            long long v = json_object_get_int64(val);
            FUZZ_CHECK(json_object_is_type(val, json_type_int) && v >= rule->min && v <= rule->max,
                       "%s = %lld", key, v);
            break;
        }
        case PL_FIELD_FRACTION:
        case PL_FIELD_NUMBER: {
            double v = json_object_get_double(val);
            double lo = rule->type == PL_FIELD_FRACTION ? 0 : (double)rule->min;
            double hi = rule->type == PL_FIELD_FRACTION ? 1 : (double)rule->max;
            FUZZ_CHECK(isfinite(v) && v >= lo && v <= hi, "%s = %g", key, v);
            break;
        }
        case PL_FIELD_OBJECT:
            FUZZ_CHECK(json_object_is_type(val, json_type_object), "%s", key);
            break;
        }
    }
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    check_int(s);
    check_timestamps(s);
    check_cursor(s);
    check_enums(s);
    check_fields(data, size);
    free(s);
    return 0;
}
