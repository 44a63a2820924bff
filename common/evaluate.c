/* Eval rules run on a trace, with per-trace and per-tenant time budgets (see evaluate.h). */
/* memmem: glibc's two-way search, linear in the output even for a hostile value. */
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8

#include "evaluate.h"

#include "util.h"

#include <limits.h>
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pl_eval_rule {
    enum pl_eval_type type;
    char *metric;          /* copy of metric_name, "" when none */
    char *text;            /* regex pattern or contains value (may hold NULs: see text_len) */
    size_t text_len;       /* bytes of text */
    pcre2_code *re;        /* regex rules, and case-insensitive contains */
    bool require_object;   /* json_valid */
    long long max_chars;   /* max_length */
    bool has_min, has_max; /* score_threshold */
    double min, max;
};

/* One row per evaluator, in enum order: its name and the config members it takes. */
static const struct evaluator {
    const char *name;
    const char *const *fields;
    const char *fields_text; /* for "not a field" messages */
} evaluators[] = {
    [PL_EVAL_ERROR_FREE] = {"error_free", (const char *const[]){NULL}, "it takes none"},
    [PL_EVAL_JSON_VALID] = {"json_valid", (const char *const[]){"require_object", NULL},
                            "fields: require_object"},
    [PL_EVAL_REGEX_MATCH] = {"regex_match", (const char *const[]){"pattern", "flags", NULL},
                             "fields: pattern, flags"},
    [PL_EVAL_REGEX_ABSENT] = {"regex_absent", (const char *const[]){"pattern", "flags", NULL},
                              "fields: pattern, flags"},
    [PL_EVAL_CONTAINS] = {"contains", (const char *const[]){"value", "case_insensitive", NULL},
                          "fields: value, case_insensitive"},
    [PL_EVAL_NOT_CONTAINS] = {"not_contains",
                              (const char *const[]){"value", "case_insensitive", NULL},
                              "fields: value, case_insensitive"},
    [PL_EVAL_MAX_LENGTH] = {"max_length", (const char *const[]){"max", NULL}, "fields: max"},
    [PL_EVAL_SCORE_THRESHOLD] = {"score_threshold", (const char *const[]){"min", "max", NULL},
                                 "fields: min, max"},
};
#define N_EVALUATORS (sizeof(evaluators) / sizeof(evaluators[0]))

/* Feedback quotes this much of a pattern, value or error text at most: enough to recognise
 * it, short enough to keep the feedback one readable line. */
#define EXCERPT_MAX 96

__attribute__((format(printf, 3, 4))) static int seterr(char *err, size_t errsz, const char *fmt,
                                                        ...)
{
    if (err && errsz > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}

__attribute__((format(printf, 3, 4))) static enum pl_eval_status
result(struct pl_eval_result *res, enum pl_eval_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->feedback, sizeof(res->feedback), fmt, ap);
    va_end(ap);
    res->status = status;
    res->passed = status == PL_EVAL_PASS;
    res->skipped = PL_EVAL_RAN;
    return status;
}

static enum pl_eval_status pass(struct pl_eval_result *res)
{
    res->feedback[0] = '\0';
    res->status = PL_EVAL_PASS;
    res->passed = true;
    res->skipped = PL_EVAL_RAN;
    return PL_EVAL_PASS;
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (1 to 4 bytes), or 0 when the bytes there
 * are not one. Overlong forms, surrogates and code points past U+10FFFF are refused (RFC
 * 3629), which json-c's own check lets through. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq_len(p + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

/* Characters (code points) in s; each byte of an ill-formed sequence counts as one, so the
 * count never undercounts whatever bytes a client sends. */
static size_t utf8_chars(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        size_t l = utf8_seq_len(p + i, n - i);
        i += l ? l : 1;
    }
    return chars;
}

/* Copies up to max bytes of s into out for a one-line message: cut on a character boundary,
 * "..." appended when cut, control characters and ill-formed bytes shown as '?'. */
static void excerpt(char *out, size_t outsz, const char *s, size_t n, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    if (outsz < 4) {
        if (outsz)
            out[0] = '\0';
        return;
    }
    if (max > outsz - 4)
        max = outsz - 4; /* room for "..." and the NUL */
    while (i < n) {
        size_t l = utf8_seq_len(p + i, n - i);
        size_t take = l ? l : 1;
        if (o + take > max)
            break;
        if (!l || p[i] < 0x20 || p[i] == 0x7F) {
            out[o++] = '?';
        } else {
            memcpy(out + o, p + i, l);
            o += l;
        }
        i += take;
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ---- Config validation -------------------------------------------------------------------- */

int pl_eval_type_parse(const char *name, enum pl_eval_type *out)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < N_EVALUATORS; i++) {
        if (strcmp(evaluators[i].name, name) == 0) {
            *out = (enum pl_eval_type)i;
            return 0;
        }
    }
    return -1;
}

const char *pl_eval_type_name(enum pl_eval_type t)
{
    return (size_t)t < N_EVALUATORS ? evaluators[t].name : "unknown";
}

static int check_fields(const struct evaluator *ev, json_object *config, char *err, size_t errsz)
{
    if (!config)
        return 0;
    json_object_object_foreach(config, key, val)
    {
        (void)val;
        bool known = false;
        for (const char *const *f = ev->fields; *f && !known; f++)
            known = strcmp(*f, key) == 0;
        if (!known)
            return seterr(err, errsz, "config.%s is not a field of %s (%s)", key, ev->name,
                          ev->fields_text);
    }
    return 0;
}

/* The member `name` of config, or NULL when absent. A JSON null is present: callers refuse
 * it as a wrong type rather than read it as "not given". */
static bool get_member(json_object *config, const char *name, json_object **val)
{
    *val = NULL;
    return config && json_object_object_get_ex(config, name, val);
}

static int get_bool(json_object *config, const char *name, bool *out, char *err, size_t errsz)
{
    json_object *v;
    if (!get_member(config, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return seterr(err, errsz, "config.%s must be a boolean", name);
    *out = json_object_get_boolean(v);
    return 0;
}

/* A required text of 1..PL_EVAL_TEXT_MAX bytes of valid UTF-8, copied into r->text. */
static int get_text(struct pl_eval_rule *r, json_object *config, const char *name, char *err,
                    size_t errsz)
{
    json_object *v;
    if (!get_member(config, name, &v))
        return seterr(err, errsz, "config.%s is required", name);
    if (!json_object_is_type(v, json_type_string))
        return seterr(err, errsz, "config.%s must be a string", name);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len == 0)
        return seterr(err, errsz, "config.%s must not be empty", name);
    if (len > PL_EVAL_TEXT_MAX)
        return seterr(err, errsz, "config.%s must be at most %d bytes", name, PL_EVAL_TEXT_MAX);
    const char *s = json_object_get_string(v);
    if (!utf8_valid(s, len))
        return seterr(err, errsz, "config.%s is not valid UTF-8", name);
    r->text = malloc(len + 1);
    if (!r->text)
        return seterr(err, errsz, "out of memory");
    memcpy(r->text, s, len);
    r->text[len] = '\0';
    r->text_len = len;
    return 0;
}

static int get_number(json_object *config, const char *name, bool *present, double *out, char *err,
                      size_t errsz)
{
    json_object *v;
    *present = get_member(config, name, &v);
    if (!*present)
        return 0;
    if (json_object_is_type(v, json_type_int))
        *out = (double)json_object_get_int64(v);
    else if (json_object_is_type(v, json_type_double))
        *out = json_object_get_double(v);
    else
        return seterr(err, errsz, "config.%s must be a number", name);
    if (!isfinite(*out))
        return seterr(err, errsz, "config.%s must be a finite number", name);
    return 0;
}

/* Every pattern is matched as UTF-8 (PCRE2_UTF): pcre2_compile checks the pattern's UTF-8
 * once, here, and refuses bad bytes with an offset. Subjects are never checked by us and
 * PCRE2_NO_UTF_CHECK is never passed (with an ill-formed subject it is undefined behaviour):
 * PCRE2_MATCH_INVALID_UTF makes pcre2_match accept any bytes, ill-formed sequences simply
 * never matching, so a client's bad output cannot turn into an evaluation error.
 * PCRE2_AUTO_CALLOUT puts a callout before every item: that is where the wall-clock budget
 * is enforced (see regex_search). The pattern is JIT-compiled where PCRE2 has a JIT (several
 * times faster, callouts and limits included); when it cannot be, pcre2_match interprets. */
static int compile_re(struct pl_eval_rule *r, uint32_t options, const char *what, char *err,
                      size_t errsz)
{
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)r->text, r->text_len,
                          options | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_AUTO_CALLOUT, &code,
                          &off, NULL);
    if (!r->re) {
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", code);
        return seterr(err, errsz, "%s: %s at offset %zu", what, (const char *)msg, (size_t)off);
    }
    uint32_t jit = 0;
    if (pcre2_config(PCRE2_CONFIG_JIT, &jit) == 0 && jit)
        (void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE); /* failure: interpreted */
    return 0;
}

static int compile_regex(struct pl_eval_rule *r, json_object *config, char *err, size_t errsz)
{
    /* \C matches one byte inside a UTF-8 character and could leave a match mid-character. */
    uint32_t options = PCRE2_NEVER_BACKSLASH_C;
    json_object *v;
    if (get_text(r, config, "pattern", err, errsz) != 0)
        return -1;
    if (get_member(config, "flags", &v)) {
        if (!json_object_is_type(v, json_type_string))
            return seterr(err, errsz, "config.flags must be a string");
        static const struct {
            char c;
            uint32_t option;
        } flags[] = {{'i', PCRE2_CASELESS},
                     {'m', PCRE2_MULTILINE},
                     {'s', PCRE2_DOTALL},
                     {'x', PCRE2_EXTENDED}};
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        for (size_t i = 0; i < len; i++) {
            size_t f = 0;
            while (f < sizeof(flags) / sizeof(flags[0]) && flags[f].c != s[i])
                f++;
            if (f == sizeof(flags) / sizeof(flags[0]))
                return seterr(err, errsz, "config.flags may only hold i, m, s and x");
            if (options & flags[f].option)
                return seterr(err, errsz, "config.flags repeats \"%c\"", s[i]);
            options |= flags[f].option;
        }
    }
    return compile_re(r, options, "config.pattern is not a valid regular expression", err, errsz);
}

static int compile_contains(struct pl_eval_rule *r, json_object *config, char *err, size_t errsz)
{
    bool ci = false;
    if (get_text(r, config, "value", err, errsz) != 0 ||
        get_bool(config, "case_insensitive", &ci, err, errsz) != 0)
        return -1;
    /* Case-insensitive search goes through PCRE2 as a literal: it folds case for all of
     * Unicode ("É" finds "é"), not only ASCII, under the same limits as a regex. */
    if (ci)
        return compile_re(r, PCRE2_LITERAL | PCRE2_CASELESS,
                          "config.value cannot be searched case-insensitively", err, errsz);
    return 0;
}

static int compile_max_length(struct pl_eval_rule *r, json_object *config, char *err, size_t errsz)
{
    json_object *v;
    if (!get_member(config, "max", &v))
        return seterr(err, errsz, "config.max is required");
    if (!json_object_is_type(v, json_type_int))
        return seterr(err, errsz, "config.max must be an integer");
    r->max_chars = (long long)json_object_get_int64(v);
    if (r->max_chars < 1)
        return seterr(err, errsz, "config.max must be at least 1");
    return 0;
}

static int compile_score(struct pl_eval_rule *r, json_object *config, char *err, size_t errsz)
{
    if (r->metric[0] == '\0')
        return seterr(err, errsz, "metric_name is required for score_threshold");
    if (get_number(config, "min", &r->has_min, &r->min, err, errsz) != 0 ||
        get_number(config, "max", &r->has_max, &r->max, err, errsz) != 0)
        return -1;
    if (!r->has_min && !r->has_max)
        return seterr(err, errsz, "config.min or config.max is required");
    if (r->has_min && r->has_max && r->min > r->max)
        return seterr(err, errsz, "config.min must not be greater than config.max");
    return 0;
}

int pl_eval_rule_compile(const char *evaluator_type, json_object *config, const char *metric_name,
                         struct pl_eval_rule **out, char *err, size_t errsz)
{
    enum pl_eval_type type;
    if (pl_eval_type_parse(evaluator_type, &type) != 0)
        return seterr(err, errsz,
                      "evaluator_type must be one of error_free, json_valid, regex_match, "
                      "regex_absent, contains, not_contains, max_length, score_threshold");
    if (config && !json_object_is_type(config, json_type_object))
        return seterr(err, errsz, "config must be a JSON object");
    if (check_fields(&evaluators[type], config, err, errsz) != 0)
        return -1;

    struct pl_eval_rule *r = calloc(1, sizeof(*r));
    if (!r)
        return seterr(err, errsz, "out of memory");
    r->type = type;
    r->metric = strdup(metric_name ? metric_name : "");
    if (!r->metric) {
        seterr(err, errsz, "out of memory");
        goto out_free;
    }
    int rc = 0;
    switch (type) {
    case PL_EVAL_ERROR_FREE:
        break;
    case PL_EVAL_JSON_VALID:
        rc = get_bool(config, "require_object", &r->require_object, err, errsz);
        break;
    case PL_EVAL_REGEX_MATCH:
    case PL_EVAL_REGEX_ABSENT:
        rc = compile_regex(r, config, err, errsz);
        break;
    case PL_EVAL_CONTAINS:
    case PL_EVAL_NOT_CONTAINS:
        rc = compile_contains(r, config, err, errsz);
        break;
    case PL_EVAL_MAX_LENGTH:
        rc = compile_max_length(r, config, err, errsz);
        break;
    case PL_EVAL_SCORE_THRESHOLD:
        rc = compile_score(r, config, err, errsz);
        break;
    }
    if (rc != 0)
        goto out_free;
    *out = r;
    return 0;
out_free:
    pl_eval_rule_free(r);
    return -1;
}

void pl_eval_rule_free(struct pl_eval_rule *r)
{
    if (!r)
        return;
    pcre2_code_free(r->re);
    free(r->text);
    free(r->metric);
    free(r);
}

enum pl_eval_type pl_eval_rule_type(const struct pl_eval_rule *r)
{
    return r->type;
}

const char *pl_eval_rule_metric(const struct pl_eval_rule *r)
{
    return r->metric;
}

/* ---- Regex search with bounded time ------------------------------------------------------ */

int64_t pl_eval_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct regex_budget {
    int64_t deadline_us;
    unsigned calls;
    bool expired;
};

/* PCRE2's match limit counts per start position (it is reset at each bumpalong), so a
 * pattern that stays just under it at every position of a long output can still run for
 * minutes; the depth and heap limits do not bound time at all. This callout, which
 * PCRE2_AUTO_CALLOUT places before every pattern item, is the hard bound: it abandons the
 * search once the wall-clock budget is spent. The clock is read on every 16th callout only:
 * between two callouts PCRE2 does one item's work, so the overshoot stays small. */
static int regex_callout(pcre2_callout_block *block, void *data)
{
    (void)block;
    struct regex_budget *b = data;
    if ((++b->calls & 15) == 0 && pl_eval_now_us() >= b->deadline_us) {
        b->expired = true;
        return PCRE2_ERROR_CALLOUT; /* any negative value abandons the match */
    }
    return 0;
}

/* JIT code runs on a stack of its own; PCRE2's default (32 KiB on the machine stack) fails
 * deep but legitimate matches, so each thread keeps one of up to 1 MiB (reserved once,
 * committed as used), in the spirit of the interpreter's heap limit. */
#define REGEX_JIT_STACK_MAX (1024 * 1024)
static pthread_key_t regex_jit_key;
static pthread_once_t regex_jit_once = PTHREAD_ONCE_INIT;

static void regex_jit_stack_free(void *p)
{
    pcre2_jit_stack_free(p);
}

static void regex_jit_key_create(void)
{
    pthread_key_create(&regex_jit_key, regex_jit_stack_free);
}

/* This thread's JIT stack, or NULL (PCRE2 then uses its default). */
static pcre2_jit_stack *regex_jit_stack(void)
{
    pthread_once(&regex_jit_once, regex_jit_key_create);
    pcre2_jit_stack *st = pthread_getspecific(regex_jit_key);
    if (!st && (st = pcre2_jit_stack_create(32 * 1024, REGEX_JIT_STACK_MAX, NULL)) != NULL &&
        pthread_setspecific(regex_jit_key, st) != 0) {
        pcre2_jit_stack_free(st);
        st = NULL;
    }
    return st;
}

/* SEARCH_CUT: the caller's deadline, not the search's own budget, ended it. */
enum search_result { SEARCH_FOUND, SEARCH_NOT_FOUND, SEARCH_LIMIT, SEARCH_CUT, SEARCH_FAILED };

/* Searches s for re until its own budget or deadline_us (0: none), whichever comes first.
 * Match data and match context are made per call: a compiled pattern is shared between
 * threads, but match state (and the callout's budget) must not be. */
static enum search_result regex_search(const pcre2_code *re, const char *s, size_t len,
                                       int64_t deadline_us, char *msg, size_t msgsz)
{
    enum search_result out = SEARCH_FAILED;
    int64_t own = pl_eval_now_us() + (int64_t)PL_EVAL_REGEX_BUDGET_MS * 1000;
    bool cut = deadline_us > 0 && deadline_us < own;
    struct regex_budget budget = {cut ? deadline_us : own, 0, false};
    if (cut && pl_eval_now_us() >= deadline_us)
        return SEARCH_CUT;
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!mc || !md) {
        snprintf(msg, msgsz, "out of memory");
        goto out;
    }
    pcre2_set_match_limit(mc, PL_EVAL_REGEX_MATCH_MAX);
    pcre2_set_depth_limit(mc, PL_EVAL_REGEX_DEPTH_MAX);
    pcre2_set_heap_limit(mc, PL_EVAL_REGEX_HEAP_KIB);
    pcre2_set_callout(mc, regex_callout, &budget);
    pcre2_jit_stack_assign(mc, NULL, regex_jit_stack());
    /* pcre2_match runs the JIT code when there is some, else interprets. */
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, mc);
    if (rc >= 0) /* 0: matched, the one-pair ovector was too small for the groups */
        out = SEARCH_FOUND;
    else if (rc == PCRE2_ERROR_NOMATCH)
        out = SEARCH_NOT_FOUND;
    else if (budget.expired && cut)
        out = SEARCH_CUT;
    else if (budget.expired || rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
             rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
        out = SEARCH_LIMIT;
    else if (pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, msgsz) < 0)
        snprintf(msg, msgsz, "error %d", rc);
out:
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return out;
}

/* ---- Evaluators --------------------------------------------------------------------------- */

static enum pl_eval_status run_error_free(const struct pl_eval_input *in,
                                          struct pl_eval_result *res)
{
    char ex[EXCERPT_MAX + 4];
    if (in->error && in->error[0]) {
        excerpt(ex, sizeof(ex), in->error, strlen(in->error), EXCERPT_MAX);
        return result(res, PL_EVAL_FAIL, "trace error: %s", ex);
    }
    if (in->n_span_errors == 0)
        return pass(res);
    const char *first = NULL;
    for (size_t i = 0; in->span_errors && i < in->n_span_errors && !first; i++)
        if (in->span_errors[i] && in->span_errors[i][0])
            first = in->span_errors[i];
    if (!first)
        return in->n_span_errors == 1
                   ? result(res, PL_EVAL_FAIL, "1 span has an error")
                   : result(res, PL_EVAL_FAIL, "%zu spans have errors", in->n_span_errors);
    excerpt(ex, sizeof(ex), first, strlen(first), EXCERPT_MAX);
    if (in->n_span_errors == 1)
        return result(res, PL_EVAL_FAIL, "span error: %s", ex);
    return result(res, PL_EVAL_FAIL, "span error: %s (and %zu more)", ex, in->n_span_errors - 1);
}

static bool json_delim(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The lexical rules of RFC 8259 that json-c's strict mode does not enforce (checked in
 * json-c 0.16: it accepts NaN, Infinity, "1.", "00", raw control characters in strings and
 * UTF-8 surrogates or overlong forms). Run only on text json-c accepted, so the structure
 * is known to be sound. @returns NULL when the tokens are fine, else why not. */
static const char *json_lex_check(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"';) {
                if (s[i] == '\\') {
                    i += 2; /* the escape itself is checked by json-c */
                } else if (s[i] < 0x20) {
                    return "control character in string";
                } else {
                    size_t l = utf8_seq_len(s + i, n - i);
                    if (!l)
                        return "invalid UTF-8 in string";
                    i += l;
                }
            }
            i++;
        } else if (c == '-' || is_digit(c)) {
            /* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? -- strict even at the
             * end of the output, where json-c takes "1." or "-" as finished numbers. */
            size_t j = i + (c == '-');
            if (j < n && s[j] == '0')
                j++;
            else if (j < n && is_digit(s[j]))
                while (j < n && is_digit(s[j]))
                    j++;
            else
                return "invalid number";
            if (j < n && s[j] == '.') {
                if (++j >= n || !is_digit(s[j]))
                    return "invalid number";
                while (j < n && is_digit(s[j]))
                    j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                j++;
                if (j < n && (s[j] == '+' || s[j] == '-'))
                    j++;
                if (j >= n || !is_digit(s[j]))
                    return "invalid number";
                while (j < n && is_digit(s[j]))
                    j++;
            }
            if (j < n && !json_delim(s[j]))
                return "invalid number";
            i = j;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t j = i;
            while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
                j++;
            size_t w = j - i;
            if (!(w == 4 && memcmp(s + i, "true", 4) == 0) &&
                !(w == 5 && memcmp(s + i, "false", 5) == 0) &&
                !(w == 4 && memcmp(s + i, "null", 4) == 0))
                return "invalid literal";
            i = j;
        } else {
            i++;
        }
    }
    return NULL;
}

static enum pl_eval_status run_json_valid(const struct pl_eval_rule *r, const char *out, size_t len,
                                          struct pl_eval_result *res)
{
    if (!out)
        return result(res, PL_EVAL_FAIL, "no output");
    if (len > INT_MAX)
        return result(res, PL_EVAL_ERROR, "output is too large to check as JSON");
    json_tokener *tok = json_tokener_new_ex(PL_EVAL_JSON_MAX_DEPTH);
    if (!tok)
        return result(res, PL_EVAL_ERROR, "out of memory");
    /* Trailing data is let through the tokener so that it can be named as such below. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, out, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue) {
        /* All input was taken and the value may be unfinished, or a top-level number or
         * literal waits for a delimiter: the terminating NUL decides. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_free(tok);
    size_t value_end = end;
    while (end < len &&
           (out[end] == ' ' || out[end] == '\t' || out[end] == '\n' || out[end] == '\r'))
        end++;
    enum pl_eval_status st;
    const char *why = NULL;
    if (jerr != json_tokener_success)
        st = result(res, PL_EVAL_FAIL, "output is not valid JSON: %s",
                    json_tokener_error_desc(jerr));
    else if (end != len)
        st = result(res, PL_EVAL_FAIL, "output is not valid JSON: data after the JSON value");
    else if ((why = json_lex_check(out, value_end)) != NULL)
        st = result(res, PL_EVAL_FAIL, "output is not valid JSON: %s", why);
    else if (r->require_object && !json_object_is_type(obj, json_type_object))
        st = result(res, PL_EVAL_FAIL, "output is valid JSON but not an object");
    else
        st = pass(res);
    json_object_put(obj);
    return st;
}

/* A run abandoned at the caller's deadline: not judged (see pl_eval_rule_run_budgeted). */
static enum pl_eval_status cut_short(struct pl_eval_result *res)
{
    result(res, PL_EVAL_ERROR, "not evaluated: evaluation budget exceeded");
    res->skipped = PL_EVAL_SKIP_TRACE; /* the caller names the budget */
    return PL_EVAL_ERROR;
}

static enum pl_eval_status run_regex(const struct pl_eval_rule *r, const char *out, size_t len,
                                     int64_t deadline_us, struct pl_eval_result *res)
{
    bool want = r->type == PL_EVAL_REGEX_MATCH;
    if (!out) /* nothing to match: a required pattern is missing, a forbidden one absent */
        return want ? result(res, PL_EVAL_FAIL, "no output") : pass(res);
    char msg[128], ex[EXCERPT_MAX + 4];
    switch (regex_search(r->re, out, len, deadline_us, msg, sizeof(msg))) {
    case SEARCH_FOUND:
        if (want)
            return pass(res);
        excerpt(ex, sizeof(ex), r->text, r->text_len, EXCERPT_MAX);
        return result(res, PL_EVAL_FAIL, "output matches forbidden pattern \"%s\"", ex);
    case SEARCH_NOT_FOUND:
        if (!want)
            return pass(res);
        excerpt(ex, sizeof(ex), r->text, r->text_len, EXCERPT_MAX);
        return result(res, PL_EVAL_FAIL, "output does not match pattern \"%s\"", ex);
    case SEARCH_LIMIT:
        return result(res, PL_EVAL_ERROR, "regex match limit exceeded");
    case SEARCH_CUT:
        return cut_short(res);
    case SEARCH_FAILED:
        break;
    }
    return result(res, PL_EVAL_ERROR, "regex evaluation failed: %s", msg);
}

static enum pl_eval_status run_contains(const struct pl_eval_rule *r, const char *out, size_t len,
                                        int64_t deadline_us, struct pl_eval_result *res)
{
    bool want = r->type == PL_EVAL_CONTAINS;
    if (!out)
        return want ? result(res, PL_EVAL_FAIL, "no output") : pass(res);
    char msg[128], ex[EXCERPT_MAX + 4];
    bool found;
    if (r->re) {
        switch (regex_search(r->re, out, len, deadline_us, msg, sizeof(msg))) {
        case SEARCH_FOUND:
            found = true;
            break;
        case SEARCH_NOT_FOUND:
            found = false;
            break;
        case SEARCH_LIMIT:
            return result(res, PL_EVAL_ERROR, "text search limit exceeded");
        case SEARCH_CUT:
            return cut_short(res);
        default:
            return result(res, PL_EVAL_ERROR, "text search failed: %s", msg);
        }
    } else {
        found = memmem(out, len, r->text, r->text_len) != NULL;
    }
    if (found == want)
        return pass(res);
    excerpt(ex, sizeof(ex), r->text, r->text_len, EXCERPT_MAX);
    return want ? result(res, PL_EVAL_FAIL, "output does not contain \"%s\"", ex)
                : result(res, PL_EVAL_FAIL, "output contains forbidden text \"%s\"", ex);
}

static enum pl_eval_status run_max_length(const struct pl_eval_rule *r, const char *out, size_t len,
                                          struct pl_eval_result *res)
{
    size_t chars = out ? utf8_chars(out, len) : 0;
    if ((unsigned long long)chars <= (unsigned long long)r->max_chars)
        return pass(res);
    return result(res, PL_EVAL_FAIL, "output is %zu characters long, max %lld", chars,
                  r->max_chars);
}

static enum pl_eval_status run_score(const struct pl_eval_rule *r, json_object *scores,
                                     struct pl_eval_result *res)
{
    json_object *v = NULL;
    if (!scores || !json_object_is_type(scores, json_type_object) ||
        !json_object_object_get_ex(scores, r->metric, &v))
        return result(res, PL_EVAL_FAIL, "no score");
    double score;
    if (json_object_is_type(v, json_type_int))
        score = (double)json_object_get_int64(v);
    else if (json_object_is_type(v, json_type_double))
        score = json_object_get_double(v);
    else
        return result(res, PL_EVAL_FAIL, "score is not a number");
    if (!isfinite(score))
        return result(res, PL_EVAL_FAIL, "score is not a number");
    if (r->has_min && score < r->min)
        return result(res, PL_EVAL_FAIL, "score %g is below the minimum %g", score, r->min);
    if (r->has_max && score > r->max)
        return result(res, PL_EVAL_FAIL, "score %g is above the maximum %g", score, r->max);
    return pass(res);
}

/* deadline_us (pl_eval_now_us clock, 0: none) bounds the PCRE2 searches only: the other
 * evaluators are linear in the output and are not interrupted. */
static enum pl_eval_status rule_run(const struct pl_eval_rule *r, const struct pl_eval_input *in,
                                    int64_t deadline_us, struct pl_eval_result *res)
{
    const char *out = in->output;
    size_t len = out ? (in->output_len ? in->output_len : strlen(out)) : 0;
    switch (r->type) {
    case PL_EVAL_ERROR_FREE:
        return run_error_free(in, res);
    case PL_EVAL_JSON_VALID:
        return run_json_valid(r, out, len, res);
    case PL_EVAL_REGEX_MATCH:
    case PL_EVAL_REGEX_ABSENT:
        return run_regex(r, out, len, deadline_us, res);
    case PL_EVAL_CONTAINS:
    case PL_EVAL_NOT_CONTAINS:
        return run_contains(r, out, len, deadline_us, res);
    case PL_EVAL_MAX_LENGTH:
        return run_max_length(r, out, len, res);
    case PL_EVAL_SCORE_THRESHOLD:
        return run_score(r, in->eval_scores, res);
    }
    return result(res, PL_EVAL_ERROR, "unknown evaluator");
}

enum pl_eval_status pl_eval_rule_run(const struct pl_eval_rule *r, const struct pl_eval_input *in,
                                     struct pl_eval_result *res)
{
    return rule_run(r, in, 0, res);
}

bool pl_eval_rule_costly(const struct pl_eval_rule *r)
{
    return r->re != NULL;
}

/* ---- Budgets ------------------------------------------------------------------------------ */

/* One tenant's state: its theoretical arrival time (GCRA). Each microsecond spent pushes tat
 * window/budget microseconds further; the tenant has budget left while tat is less than a
 * window ahead of now. An entry whose tat has passed is as good as a fresh one. */
struct ledger_entry {
    char tenant[40];
    int64_t tat_us;
};

struct pl_eval_ledger {
    int64_t budget_us, window_us;
    size_t cap, n; /* open addressing, cap a power of two, n used slots */
    struct ledger_entry *e;
};

struct pl_eval_ledger *pl_eval_ledger_new(int budget_ms, int window_ms)
{
    struct pl_eval_ledger *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->budget_us = (int64_t)(budget_ms > 0 ? budget_ms : 0) * 1000;
    l->window_us = (int64_t)(window_ms > 0 ? window_ms : 1) * 1000;
    return l;
}

void pl_eval_ledger_free(struct pl_eval_ledger *l)
{
    if (!l)
        return;
    free(l->e);
    free(l);
}

static size_t ledger_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The slot of tenant, or the empty slot where it would go. */
static struct ledger_entry *ledger_slot(struct ledger_entry *e, size_t cap, const char *tenant)
{
    size_t i = ledger_hash(tenant) & (cap - 1);
    while (e[i].tenant[0] && strcmp(e[i].tenant, tenant) != 0)
        i = (i + 1) & (cap - 1);
    return &e[i];
}

/* Rebuilds the table with cap slots, keeping only the tenants still in debt at now_us: the
 * table holds the tenants of the last window or so, not every tenant ever seen. */
static bool ledger_rebuild(struct pl_eval_ledger *l, size_t cap, int64_t now_us)
{
    struct ledger_entry *e = calloc(cap, sizeof(*e));
    if (!e)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < l->cap; i++)
        if (l->e[i].tenant[0] && l->e[i].tat_us > now_us) {
            *ledger_slot(e, cap, l->e[i].tenant) = l->e[i];
            n++;
        }
    free(l->e);
    l->e = e;
    l->cap = cap;
    l->n = n;
    return true;
}

/* Makes room for one more tenant: at most 3/4 full, so that probing stays short. Drops the
 * tenants no longer in debt first and grows only when at least half would still be used. */
static bool ledger_room(struct pl_eval_ledger *l, int64_t now_us)
{
    if ((l->n + 1) * 4 <= l->cap * 3)
        return true;
    if (!l->cap)
        return ledger_rebuild(l, 16, now_us);
    if (!ledger_rebuild(l, l->cap, now_us))
        return false;
    return (l->n + 1) * 2 <= l->cap || ledger_rebuild(l, l->cap * 2, now_us);
}

int64_t pl_eval_ledger_left(struct pl_eval_ledger *l, const char *tenant, int64_t now_us)
{
    if (!l || l->budget_us == 0)
        return INT64_MAX;
    if (!l->cap)
        return l->budget_us;
    const struct ledger_entry *x = ledger_slot(l->e, l->cap, tenant);
    int64_t debt = x->tenant[0] && x->tat_us > now_us ? x->tat_us - now_us : 0;
    if (debt >= l->window_us)
        return 0;
    /* debt is wall time; scaled back to evaluation time, rounded down */
    return l->budget_us - (debt * l->budget_us + l->window_us - 1) / l->window_us;
}

void pl_eval_ledger_charge(struct pl_eval_ledger *l, const char *tenant, int64_t spent_us,
                           int64_t now_us)
{
    if (!l || l->budget_us == 0 || spent_us <= 0)
        return;
    if (!ledger_room(l, now_us))
        return; /* out of memory: this charge is forgotten, nothing else */
    struct ledger_entry *x = ledger_slot(l->e, l->cap, tenant);
    if (!x->tenant[0]) {
        snprintf(x->tenant, sizeof(x->tenant), "%s", tenant);
        x->tat_us = now_us;
        l->n++;
    }
    int64_t base = x->tat_us > now_us ? x->tat_us : now_us;
    int64_t cost = spent_us > INT64_MAX / l->window_us ? INT64_MAX / 4
                                                       : spent_us * l->window_us / l->budget_us;
    x->tat_us = base + cost;
}

static enum pl_eval_status skipped(struct pl_eval_result *res, enum pl_eval_skip why)
{
    result(res, PL_EVAL_ERROR, "not evaluated: %s evaluation budget exceeded",
           why == PL_EVAL_SKIP_TENANT ? "the tenant's" : "the trace's");
    res->skipped = why;
    return PL_EVAL_ERROR;
}

enum pl_eval_status pl_eval_rule_run_budgeted(const struct pl_eval_rule *r,
                                              const struct pl_eval_input *in,
                                              const struct pl_eval_budget *b,
                                              struct pl_eval_result *res)
{
    int64_t now = pl_eval_now_us();
    if (b->trace_deadline_us > 0 && now >= b->trace_deadline_us)
        return skipped(res, PL_EVAL_SKIP_TRACE);
    int64_t deadline = b->trace_deadline_us;
    enum pl_eval_skip which = PL_EVAL_SKIP_TRACE;
    bool charged = b->ledger && pl_eval_rule_costly(r);
    if (charged) {
        int64_t left = pl_eval_ledger_left(b->ledger, b->tenant_id, now);
        if (left <= 0)
            return skipped(res, PL_EVAL_SKIP_TENANT);
        if (left != INT64_MAX && (deadline == 0 || now + left < deadline)) {
            deadline = now + left;
            which = PL_EVAL_SKIP_TENANT;
        }
    }
    rule_run(r, in, deadline, res);
    if (charged)
        pl_eval_ledger_charge(b->ledger, b->tenant_id, pl_eval_now_us() - now, now);
    if (res->skipped != PL_EVAL_RAN)
        return skipped(res, which);
    return res->status;
}

bool pl_eval_first_failure(const struct pl_eval_rule *const *rules, size_t n,
                           const struct pl_eval_input *in, size_t *failed,
                           struct pl_eval_result *res)
{
    for (size_t i = 0; i < n; i++) {
        if (pl_eval_rule_run(rules[i], in, res) != PL_EVAL_PASS) {
            *failed = i;
            return true;
        }
    }
    pass(res);
    return false;
}
