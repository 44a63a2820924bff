/* libFuzzer target: eval rules (evaluate.c) compiled from a fuzzed definition and run on a
 * fuzzed trace, each verdict checked against an oracle or the rule's complement.
 *
 * Input, one field per line: evaluator_type, config (JSON; empty: none), metric_name,
 * eval_scores (JSON; empty: none), the trace error, the span errors (tab-separated), then
 * the output: every byte after the sixth newline (no sixth newline: no output). */
#define _GNU_SOURCE /* memmem */
#include "fuzz.h"

#include "evaluate.h"
#include "json_scan.h"

#include <json-c/json.h>
#include <math.h>

/* Each run's costly searches are cut this far ahead, well before their own 100 ms budget,
 * so that a catastrophic pattern costs milliseconds, not a hang. */
#define FUZZ_DEADLINE_US 5000

static json_object *parse_or_null(const char *p, size_t len)
{
    if (len == 0)
        return NULL;
    char *s = fuzz_cstr((const uint8_t *)p, len);
    json_object *o = json_tokener_parse(s);
    free(s);
    return o;
}

static void check_result(const struct pl_eval_result *res)
{
    size_t n = strnlen(res->feedback, sizeof(res->feedback));
    FUZZ_CHECK(n < sizeof(res->feedback), "feedback is not terminated");
    FUZZ_CHECK(res->passed == (res->status == PL_EVAL_PASS), "passed %d, status %d", res->passed,
               res->status);
    FUZZ_CHECK((n == 0) == (res->status == PL_EVAL_PASS), "feedback \"%s\" with status %d",
               res->feedback, res->status);
    /* Feedback is one readable line (excerpts replace what is not). */
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)res->feedback[i] >= 0x20 && res->feedback[i] != 0x7f,
                   "control character in feedback \"%s\"", res->feedback);
    FUZZ_CHECK(fuzz_utf8_valid(res->feedback, n), "feedback is not UTF-8: \"%s\"", res->feedback);
    if (res->skipped != PL_EVAL_RAN)
        FUZZ_CHECK(res->status == PL_EVAL_ERROR, "a skipped rule did not end in ERROR");
}

static enum pl_eval_status run(const struct pl_eval_rule *r, const struct pl_eval_input *in,
                               struct pl_eval_result *res)
{
    struct pl_eval_budget b = {pl_eval_now_us() + FUZZ_DEADLINE_US, NULL, NULL};
    enum pl_eval_status st = pl_eval_rule_run_budgeted(r, in, &b, res);
    FUZZ_CHECK(st == res->status, "returned %d, result %d", st, res->status);
    check_result(res);
    return st;
}

/* The same config under another evaluator type (regex_match <-> regex_absent, ...). */
static struct pl_eval_rule *compile_as(const char *type, json_object *config, const char *metric)
{
    struct pl_eval_rule *r = NULL;
    char err[256];
    if (pl_eval_rule_compile(type, config, metric, &r, err, sizeof(err)) != 0)
        return NULL;
    return r;
}

/* A rule and its complement never agree (when both were judged). */
static void check_complement(const struct pl_eval_rule *r, const char *other, json_object *config,
                             const struct pl_eval_input *in, enum pl_eval_status st)
{
    struct pl_eval_rule *c = compile_as(other, config, pl_eval_rule_metric(r));
    FUZZ_CHECK(c, "the complement %s of a valid rule does not compile", other);
    struct pl_eval_result res;
    enum pl_eval_status cst = run(c, in, &res);
    if (st != PL_EVAL_ERROR && cst != PL_EVAL_ERROR)
        FUZZ_CHECK(st != cst, "%s and %s agree (%d)", pl_eval_type_name(pl_eval_rule_type(r)),
                   other, st);
    pl_eval_rule_free(c);
}

static bool get_bool(json_object *config, const char *name)
{
    json_object *v;
    return config && json_object_object_get_ex(config, name, &v) && json_object_get_boolean(v);
}

static void check_json_valid(json_object *config, const struct pl_eval_input *in,
                             enum pl_eval_status st, const struct pl_eval_result *res)
{
    if (!in->output || st == PL_EVAL_ERROR)
        return;
    size_t len = in->output_len ? in->output_len : strlen(in->output);
    struct pl_json_scan s;
    struct pl_json_value v;
    pl_json_scan_init(&s, in->output, len);
    bool scan_ok = pl_json_scan_value(&s, &v) && pl_json_scan_done(&s);
    bool want_object = get_bool(config, "require_object");
    if (scan_ok)
        FUZZ_CHECK(st == PL_EVAL_PASS || (want_object && v.kind != PL_JSON_OBJECT),
                   "the strict scanner takes this output, json_valid says: %s", res->feedback);
    /* The scanner refuses more: \u0000, lone surrogates, numbers no double holds, depth. */
    if (st == PL_EVAL_PASS && !scan_ok)
        FUZZ_CHECK(s.nul || strstr(s.err, "surrogate") || strstr(s.err, "number") ||
                       strstr(s.err, "nesting"),
                   "json_valid passes an output the scanner refuses: %s", s.err);
}

static void check_contains(const struct pl_eval_rule *r, json_object *config,
                           const struct pl_eval_input *in, enum pl_eval_status st)
{
    json_object *value;
    if (!in->output || st == PL_EVAL_ERROR || !json_object_object_get_ex(config, "value", &value))
        return;
    size_t len = in->output_len ? in->output_len : strlen(in->output);
    bool want = pl_eval_rule_type(r) == PL_EVAL_CONTAINS;
    bool found = memmem(in->output, len, json_object_get_string(value),
                        (size_t)json_object_get_string_len(value)) != NULL;
    if (!get_bool(config, "case_insensitive"))
        FUZZ_CHECK((st == PL_EVAL_PASS) == (found == want), "memmem finds it: %d, status %d", found,
                   st);
    else if (found) /* folding case finds at least what an exact search finds */
        FUZZ_CHECK((st == PL_EVAL_PASS) == want, "an exact match missed when folding case");
}

static void check_score(json_object *config, const char *metric, json_object *scores,
                        enum pl_eval_status st)
{
    json_object *v, *lo, *hi;
    bool pass = false;
    if (scores && json_object_is_type(scores, json_type_object) &&
        json_object_object_get_ex(scores, metric, &v) &&
        (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))) {
        double x = json_object_is_type(v, json_type_int) ? (double)json_object_get_int64(v)
                                                         : json_object_get_double(v);
        pass = isfinite(x);
        if (json_object_object_get_ex(config, "min", &lo))
            pass = pass && x >= json_object_get_double(lo);
        if (json_object_object_get_ex(config, "max", &hi))
            pass = pass && x <= json_object_get_double(hi);
    }
    FUZZ_CHECK((st == PL_EVAL_PASS) == pass, "score_threshold says %d, expected a %s", st,
               pass ? "pass" : "fail");
}

/* Tenant budgets: pure bookkeeping on the caller's clock, fed from the input. */
static void check_ledger(const char *tenant, size_t spent)
{
    static struct pl_eval_ledger *ledger;
    static int64_t now;
    if (!ledger)
        ledger = pl_eval_ledger_new(2, 50);
    now += 1000;
    char key[40];
    snprintf(key, sizeof(key), "%s", tenant);
    pl_eval_ledger_charge(ledger, key, (int64_t)spent, now);
    int64_t left = pl_eval_ledger_left(ledger, key, now);
    FUZZ_CHECK(left >= 0 && left <= 2000, "left %lld of a 2000 us budget", (long long)left);
    FUZZ_CHECK(pl_eval_ledger_left(ledger, key, now + ((int64_t)1 << 50)) == 2000,
               "a budget does not come back after its window");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_fields f;
    fuzz_split_lines(data, size, 7, &f);
    if (f.n < 1)
        return 0;
    char *type = fuzz_cstr((const uint8_t *)f.p[0], f.len[0]);
    json_object *config = f.n > 1 ? parse_or_null(f.p[1], f.len[1]) : NULL;
    char *metric = f.n > 2 ? fuzz_cstr((const uint8_t *)f.p[2], f.len[2]) : NULL;
    json_object *scores = f.n > 3 ? parse_or_null(f.p[3], f.len[3]) : NULL;
    char *error = f.n > 4 ? fuzz_cstr((const uint8_t *)f.p[4], f.len[4]) : NULL;
    char *spans = f.n > 5 ? fuzz_cstr((const uint8_t *)f.p[5], f.len[5]) : NULL;
    const char *span_errors[16];
    size_t n_spans = 0;
    for (char *p = spans, *tab; p && *p && n_spans < 16; p = tab ? tab + 1 : NULL) {
        tab = strchr(p, '\t');
        if (tab)
            *tab = '\0';
        span_errors[n_spans++] = p;
    }
    /* The output holds exactly its bytes (no NUL after it), so an over-read is caught. */
    char *output = NULL;
    size_t output_len = f.n > 6 ? f.len[6] : 0;
    if (f.n > 6 && output_len > 0) {
        output = malloc(output_len);
        memcpy(output, f.p[6], output_len);
    }
    struct pl_eval_input in = {
        .output = f.n > 6 ? (output ? output : "") : NULL,
        .output_len = output_len,
        .error = error,
        .span_errors = span_errors,
        .n_span_errors = n_spans,
        .eval_scores = scores,
    };

    struct pl_eval_rule *r = NULL;
    char err[256] = "";
    if (pl_eval_rule_compile(type, config, metric, &r, err, sizeof(err)) != 0) {
        FUZZ_CHECK(r == NULL && err[0] != '\0', "a refused rule without a reason");
    } else {
        enum pl_eval_type t;
        FUZZ_CHECK(pl_eval_type_parse(type, &t) == 0 && t == pl_eval_rule_type(r) &&
                       strcmp(pl_eval_type_name(t), type) == 0,
                   "type %s", type);
        FUZZ_CHECK(strcmp(pl_eval_rule_metric(r), metric ? metric : "") == 0, "metric");
        struct pl_eval_result res;
        enum pl_eval_status st = run(r, &in, &res);
        switch (pl_eval_rule_type(r)) {
        case PL_EVAL_ERROR_FREE:
            FUZZ_CHECK((st == PL_EVAL_PASS) == ((!error || !error[0]) && n_spans == 0),
                       "error_free says %d", st);
            break;
        case PL_EVAL_JSON_VALID:
            check_json_valid(config, &in, st, &res);
            break;
        case PL_EVAL_REGEX_MATCH:
            check_complement(r, "regex_absent", config, &in, st);
            break;
        case PL_EVAL_REGEX_ABSENT:
            check_complement(r, "regex_match", config, &in, st);
            break;
        case PL_EVAL_CONTAINS:
            check_complement(r, "not_contains", config, &in, st);
            check_contains(r, config, &in, st);
            break;
        case PL_EVAL_NOT_CONTAINS:
            check_complement(r, "contains", config, &in, st);
            check_contains(r, config, &in, st);
            break;
        case PL_EVAL_MAX_LENGTH: {
            json_object *max;
            json_object_object_get_ex(config, "max", &max);
            if (in.output && fuzz_utf8_valid(in.output, output_len))
                FUZZ_CHECK((st == PL_EVAL_PASS) ==
                               ((long long)fuzz_utf8_chars(in.output, output_len) <=
                                (long long)json_object_get_int64(max)),
                           "max_length says %d", st);
            break;
        }
        case PL_EVAL_SCORE_THRESHOLD:
            check_score(config, metric, scores, st);
            break;
        }
        /* Unbudgeted runs of linear rules are deterministic. */
        if (!pl_eval_rule_costly(r)) {
            struct pl_eval_result again;
            pl_eval_rule_run(r, &in, &again);
            FUZZ_CHECK(again.status == st && strcmp(again.feedback, res.feedback) == 0,
                       "a second run differs");
        }
        pl_eval_rule_free(r);
    }
    check_ledger(metric ? metric : "", output_len);

    free(output);
    free(spans);
    free(error);
    json_object_put(scores);
    free(metric);
    json_object_put(config);
    free(type);
    return 0;
}
