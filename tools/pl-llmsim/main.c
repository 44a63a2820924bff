/* pl-llmsim: a deterministic OpenAI-compatible chat-completions SIMULATOR (not a model) for
 * tests, benchmarks and the demo. Replies come from a scenario file: ordered rules that match
 * the request with PCRE2 patterns, apply with a deterministic probability, and fill a reply
 * template; faults (429, 500, timeouts, garbage) are injected from a seeded PRNG.
 *
 * One thread per connection so that simulated latency (a sleep in the handler) never holds
 * back other requests; SIGTERM/SIGINT end every sleep early and stop the server cleanly. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define SIM_BODY_MAX       ((size_t)4 << 20) /* request bodies over this get 413 */
#define SIM_SCENARIO_MAX   ((size_t)16 << 20)
#define SIM_LATENCY_MAX    600000 /* ms, for every latency and timeout setting */
#define SIM_PHASE_MAX      128
#define SIM_MATCH_LIMIT    1000000 /* PCRE2 backtracking budget per match */
#define SIM_DEPTH_LIMIT    10000
#define SIM_CONNECTION_MAX 1024
#define SIM_DEFAULT_PORT   8090
#define SIM_DEFAULT_REPLY  "I am a simulator."
#define SIM_GARBAGE_BODY                                                                           \
    "{\"id\":\"chatcmpl-sim\",\"object\":\"chat.completion\",\"choices\":[{\"message\":"
#define SIM_RATE_TOLERANCE 1e-9
#define SIM_JSON_DEPTH     128 /* json_schema response formats nest deeper than json-c's 32 */

/* ------------------------------------------------------------------------------------------
 * Scenario
 * ------------------------------------------------------------------------------------------ */

enum sim_match_field { SIM_MATCH_SYSTEM, SIM_MATCH_USER, SIM_MATCH_MODEL, SIM_MATCH_N };
static const char *const sim_match_keys[SIM_MATCH_N] = {"system", "user", "model"};

enum sim_fault { SIM_FAULT_429, SIM_FAULT_500, SIM_FAULT_TIMEOUT, SIM_FAULT_GARBAGE, SIM_FAULT_N };
static const char *const sim_fault_keys[SIM_FAULT_N] = {"http_429", "http_500", "timeout",
                                                        "garbage"};

struct sim_rule {
    char *name;
    pcre2_code *match[SIM_MATCH_N]; /* NULL: the field matches anything */
    char *phase;                    /* NULL: every phase */
    double p;
    char *reply;
    int latency_ms; /* -1: the scenario's default */
};

struct sim_scenario {
    uint64_t seed;
    int latency_ms;
    double fault_rate[SIM_FAULT_N];
    int retry_after_s;
    int timeout_ms;
    struct sim_rule *rules;
    size_t nrules;
    char *default_reply;
};

static void sim_scenario_free(struct sim_scenario *scn)
{
    if (!scn)
        return;
    for (size_t i = 0; i < scn->nrules; i++) {
        struct sim_rule *r = &scn->rules[i];
        free(r->name);
        for (int f = 0; f < SIM_MATCH_N; f++)
            pcre2_code_free(r->match[f]);
        free(r->phase);
        free(r->reply);
    }
    free(scn->rules);
    free(scn->default_reply);
    free(scn);
}

/* Writes "path: message" into err; returns -1 so that callers can return it directly. */
static int sim_bad(char *err, size_t errsz, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int sim_bad(char *err, size_t errsz, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errsz, "%s: %s", path, msg);
    return -1;
}

/* The JSON path of member key under base ("" is the top level), cut to fit: it only ever
 * goes into messages. */
static void sim_path(char *out, size_t outsz, const char *base, const char *key)
{
    int n = snprintf(out, outsz, "%s%s%s", base, *base ? "." : "", key);
    if (n < 0 || (size_t)n >= outsz)
        out[outsz - 1] = '\0';
}

static const char *sim_json_type_name(json_object *v)
{
    return json_type_to_name(json_object_get_type(v));
}

/* Fails on a member of obj that is not in the NULL-terminated allowed list. */
static int sim_keys_check(json_object *obj, const char *base, const char *const *allowed, char *err,
                          size_t errsz)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            char path[256], list[256];
            size_t len = 0;
            list[0] = '\0';
            for (const char *const *a = allowed; *a && len < sizeof(list); a++)
                len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
                                        a == allowed ? "" : ", ", *a);
            sim_path(path, sizeof(path), base, key);
            return sim_bad(err, errsz, path, "unknown key (allowed: %s)", list);
        }
    }
    return 0;
}

/* Optional number member in [min, max]; *out keeps its default when the member is absent. */
static int sim_opt_number(json_object *obj, const char *base, const char *key, double min,
                          double max, double *out, char *err, size_t errsz)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    char path[256];
    sim_path(path, sizeof(path), base, key);
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return sim_bad(err, errsz, path, "must be a number, not %s", sim_json_type_name(v));
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < min || d > max)
        return sim_bad(err, errsz, path, "%g is out of range [%g, %g]", d, min, max);
    *out = d;
    return 0;
}

/* Optional integer member in [min, max]; *out keeps its default when the member is absent. */
static int sim_opt_int(json_object *obj, const char *base, const char *key, long long min,
                       long long max, long long *out, char *err, size_t errsz)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v))
        return 0;
    char path[256];
    sim_path(path, sizeof(path), base, key);
    if (!json_object_is_type(v, json_type_int))
        return sim_bad(err, errsz, path, "must be an integer, not %s", sim_json_type_name(v));
    errno = 0;
    long long n = (long long)json_object_get_int64(v);
    if (errno != 0 || n < min || n > max)
        return sim_bad(err, errsz, path, "%lld is out of range [%lld, %lld]", n, min, max);
    *out = n;
    return 0;
}

/* A string member: *out points into obj (NULL when absent and !required). */
static int sim_get_string(json_object *obj, const char *base, const char *key, bool required,
                          bool nonempty, const char **out, char *err, size_t errsz)
{
    json_object *v;
    char path[256];
    sim_path(path, sizeof(path), base, key);
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return required ? sim_bad(err, errsz, path, "is required") : 0;
    if (!json_object_is_type(v, json_type_string))
        return sim_bad(err, errsz, path, "must be a string, not %s", sim_json_type_name(v));
    if (nonempty && json_object_get_string_len(v) == 0)
        return sim_bad(err, errsz, path, "must not be empty");
    *out = json_object_get_string(v);
    return 0;
}

/* Parses text (len bytes) as one strict JSON document; NULL with the position on error. */
static json_object *sim_json_parse(const char *text, size_t len, char *err, size_t errsz)
{
    json_tokener *tok = json_tokener_new_ex(SIM_JSON_DEPTH);
    if (!tok) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = len > INT32_MAX ? NULL : json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!root && jerr == json_tokener_success) {
        snprintf(err, errsz, "not JSON (or the document is null)");
    } else if (!root) {
        size_t end = json_tokener_get_parse_end(tok), line = 1, col = 1;
        for (size_t i = 0; i < end && i < len; i++, col++)
            if (text[i] == '\n') {
                line++;
                col = 0;
            }
        if (jerr == json_tokener_continue)
            snprintf(err, errsz, "invalid JSON: unexpected end of input");
        else
            snprintf(err, errsz, "invalid JSON at line %zu, column %zu: %s", line, col,
                     json_tokener_error_desc(jerr));
    }
    json_tokener_free(tok);
    return root;
}

/* Compiles rule r's pattern for one match field, when the scenario gives it. */
static int sim_rule_pattern(struct sim_rule *r, json_object *match, const char *base, int field,
                            char *err, size_t errsz)
{
    json_object *v;
    if (!json_object_object_get_ex(match, sim_match_keys[field], &v))
        return 0;
    char path[256];
    sim_path(path, sizeof(path), base, sim_match_keys[field]);
    if (!json_object_is_type(v, json_type_string))
        return sim_bad(err, errsz, path, "must be a PCRE2 pattern string, not %s (rule \"%s\")",
                       sim_json_type_name(v), r->name);
    int code;
    PCRE2_SIZE off;
    r->match[field] = pcre2_compile((PCRE2_SPTR)json_object_get_string(v),
                                    (PCRE2_SIZE)json_object_get_string_len(v),
                                    PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (!r->match[field]) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return sim_bad(err, errsz, path, "pattern does not compile at offset %zu: %s (rule \"%s\")",
                       (size_t)off, (const char *)msg, r->name);
    }
    return 0;
}

static int sim_rule_load(struct sim_scenario *scn, size_t idx, json_object *obj, char *err,
                         size_t errsz)
{
    static const char *const keys[] = {"name", "match", "phase", "p", "reply", "latency_ms", NULL};
    static const char *const match_keys[] = {"system", "user", "model", NULL};
    struct sim_rule *r = &scn->rules[idx];
    char base[64], path[256];
    snprintf(base, sizeof(base), "rules[%zu]", idx);
    r->p = 1.0;
    r->latency_ms = -1;
    if (!json_object_is_type(obj, json_type_object))
        return sim_bad(err, errsz, base, "must be an object, not %s", sim_json_type_name(obj));
    if (sim_keys_check(obj, base, keys, err, errsz) != 0)
        return -1;
    const char *name, *phase, *reply;
    if (sim_get_string(obj, base, "name", true, true, &name, err, errsz) != 0 ||
        sim_get_string(obj, base, "phase", false, true, &phase, err, errsz) != 0 ||
        sim_get_string(obj, base, "reply", true, false, &reply, err, errsz) != 0)
        return -1;
    for (size_t i = 0; i < idx; i++)
        if (strcmp(scn->rules[i].name, name) == 0) {
            sim_path(path, sizeof(path), base, "name");
            return sim_bad(err, errsz, path, "\"%s\" is already the name of rules[%zu]", name, i);
        }
    r->name = strdup(name);
    r->reply = strdup(reply);
    r->phase = phase ? strdup(phase) : NULL;
    if (!r->name || !r->reply || (phase && !r->phase))
        return sim_bad(err, errsz, base, "out of memory");
    if (phase && strlen(phase) > SIM_PHASE_MAX) {
        sim_path(path, sizeof(path), base, "phase");
        return sim_bad(err, errsz, path, "longer than %d bytes", SIM_PHASE_MAX);
    }
    long long latency = -1;
    if (sim_opt_number(obj, base, "p", 0.0, 1.0, &r->p, err, errsz) != 0 ||
        sim_opt_int(obj, base, "latency_ms", 0, SIM_LATENCY_MAX, &latency, err, errsz) != 0)
        return -1;
    r->latency_ms = (int)latency;
    json_object *match;
    if (!json_object_object_get_ex(obj, "match", &match))
        return 0;
    sim_path(path, sizeof(path), base, "match");
    if (!json_object_is_type(match, json_type_object))
        return sim_bad(err, errsz, path, "must be an object, not %s", sim_json_type_name(match));
    if (sim_keys_check(match, path, match_keys, err, errsz) != 0)
        return -1;
    for (int f = 0; f < SIM_MATCH_N; f++)
        if (sim_rule_pattern(r, match, path, f, err, errsz) != 0)
            return -1;
    return 0;
}

static int sim_faults_load(struct sim_scenario *scn, json_object *root, char *err, size_t errsz)
{
    static const char *const keys[] = {"http_429",      "http_500",   "timeout", "garbage",
                                       "retry_after_s", "timeout_ms", NULL};
    json_object *faults;
    if (!json_object_object_get_ex(root, "faults", &faults))
        return 0;
    if (!json_object_is_type(faults, json_type_object))
        return sim_bad(err, errsz, "faults", "must be an object, not %s",
                       sim_json_type_name(faults));
    if (sim_keys_check(faults, "faults", keys, err, errsz) != 0)
        return -1;
    double sum = 0;
    for (int f = 0; f < SIM_FAULT_N; f++) {
        if (sim_opt_number(faults, "faults", sim_fault_keys[f], 0.0, 1.0, &scn->fault_rate[f], err,
                           errsz) != 0)
            return -1;
        sum += scn->fault_rate[f];
    }
    if (sum > 1.0 + SIM_RATE_TOLERANCE)
        return sim_bad(err, errsz, "faults",
                       "the rates http_429 + http_500 + timeout + garbage sum to %g, more than 1",
                       sum);
    long long retry = scn->retry_after_s, timeout = scn->timeout_ms;
    if (sim_opt_int(faults, "faults", "retry_after_s", 0, 3600, &retry, err, errsz) != 0 ||
        sim_opt_int(faults, "faults", "timeout_ms", 0, SIM_LATENCY_MAX, &timeout, err, errsz) != 0)
        return -1;
    scn->retry_after_s = (int)retry;
    scn->timeout_ms = (int)timeout;
    return 0;
}

static int sim_scenario_parse(struct sim_scenario *scn, json_object *root, char *err, size_t errsz)
{
    static const char *const keys[] = {"seed",  "latency_ms",    "faults",
                                       "rules", "default_reply", NULL};
    if (!json_object_is_type(root, json_type_object))
        return sim_bad(err, errsz, "(document)", "must be a JSON object, not %s",
                       sim_json_type_name(root));
    if (sim_keys_check(root, "", keys, err, errsz) != 0)
        return -1;
    long long seed = 0, latency = 0;
    if (sim_opt_int(root, "", "seed", 0, INT64_MAX, &seed, err, errsz) != 0 ||
        sim_opt_int(root, "", "latency_ms", 0, SIM_LATENCY_MAX, &latency, err, errsz) != 0)
        return -1;
    scn->seed = (uint64_t)seed;
    scn->latency_ms = (int)latency;
    if (sim_faults_load(scn, root, err, errsz) != 0)
        return -1;
    const char *def;
    if (sim_get_string(root, "", "default_reply", false, false, &def, err, errsz) != 0)
        return -1;
    scn->default_reply = strdup(def ? def : SIM_DEFAULT_REPLY);
    if (!scn->default_reply)
        return sim_bad(err, errsz, "default_reply", "out of memory");
    json_object *rules;
    if (!json_object_object_get_ex(root, "rules", &rules))
        return sim_bad(err, errsz, "rules", "is required (an array, may be empty)");
    if (!json_object_is_type(rules, json_type_array))
        return sim_bad(err, errsz, "rules", "must be an array, not %s", sim_json_type_name(rules));
    size_t n = json_object_array_length(rules);
    if (n > 0) {
        scn->rules = calloc(n, sizeof(*scn->rules));
        if (!scn->rules)
            return sim_bad(err, errsz, "rules", "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        scn->nrules = i + 1; /* so that sim_scenario_free sees what was filled in */
        if (sim_rule_load(scn, i, json_object_array_get_idx(rules, i), err, errsz) != 0)
            return -1;
    }
    return 0;
}

/* Reads the whole file into a new NUL-terminated buffer (caller frees). */
static char *sim_file_read(const char *path, size_t *len, char *err, size_t errsz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                snprintf(err, errsz, "out of memory");
                goto out_fail;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n > SIM_SCENARIO_MAX) {
            snprintf(err, errsz, "larger than %zu bytes", SIM_SCENARIO_MAX);
            goto out_fail;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errsz, "cannot read: %s", strerror(errno));
        goto out_fail;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
out_fail:
    free(buf);
    fclose(f);
    return NULL;
}

/**
 * @brief Loads and strictly validates a scenario file.
 * @returns a new scenario (free with sim_scenario_free), or NULL with err naming the JSON
 *          path and the problem.
 */
static struct sim_scenario *sim_scenario_load(const char *file, char *err, size_t errsz)
{
    size_t len;
    char *text = sim_file_read(file, &len, err, errsz);
    if (!text)
        return NULL;
    json_object *root = sim_json_parse(text, len, err, errsz);
    free(text);
    if (!root)
        return NULL;
    struct sim_scenario *scn = calloc(1, sizeof(*scn));
    if (!scn) {
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    scn->retry_after_s = 1;
    scn->timeout_ms = 30000;
    if (sim_scenario_parse(scn, root, err, errsz) != 0) {
        sim_scenario_free(scn);
        scn = NULL;
    }
out:
    json_object_put(root);
    return scn;
}

/* ------------------------------------------------------------------------------------------
 * Deterministic decisions
 * ------------------------------------------------------------------------------------------ */

static uint64_t sim_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t sim_splitmix64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return sim_mix64(*state);
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double sim_unit(uint64_t x)
{
    return (double)(x >> 11) * 0x1.0p-53;
}

static uint64_t sim_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t sim_fnv1a_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return sim_fnv1a(h, b, sizeof(b));
}

/* Whether rule idx applies to this content, decided from its hash alone (no shared state),
 * so the same request always gets the same answer. The system length keeps ("ab", "c") and
 * ("a", "bc") apart. */
static bool sim_rule_draw(uint64_t seed, size_t idx, double p, const char *system, size_t syslen,
                          const char *user, size_t userlen)
{
    if (p >= 1.0)
        return true;
    if (p <= 0.0)
        return false;
    uint64_t h = 0xcbf29ce484222325ULL;
    h = sim_fnv1a_u64(h, seed);
    h = sim_fnv1a_u64(h, (uint64_t)idx);
    h = sim_fnv1a_u64(h, (uint64_t)syslen);
    h = sim_fnv1a(h, system, syslen);
    h = sim_fnv1a(h, user, userlen);
    return sim_unit(sim_mix64(h)) < p;
}

/* ------------------------------------------------------------------------------------------
 * Simulator state
 * ------------------------------------------------------------------------------------------ */

struct sim {
    const struct sim_scenario *scn;
    int latency_ms;            /* the default latency (scenario, or --latency-ms) */
    pcre2_match_context *mctx; /* read-only once built: shared by all threads */

    pthread_mutex_t mu; /* guards everything below up to the stop fields */
    uint64_t prng;
    char phase[SIM_PHASE_MAX + 1];
    uint64_t next_id;
    uint64_t requests, replies, invalid, default_hits;
    uint64_t faults[SIM_FAULT_N];
    uint64_t *rule_hits;

    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv; /* on CLOCK_MONOTONIC */
    bool stopping;
};

static int sim_init(struct sim *s, const struct sim_scenario *scn, int latency_ms)
{
    memset(s, 0, sizeof(*s));
    s->scn = scn;
    s->latency_ms = latency_ms >= 0 ? latency_ms : scn->latency_ms;
    s->prng = scn->seed;
    snprintf(s->phase, sizeof(s->phase), "default");
    s->rule_hits = calloc(scn->nrules ? scn->nrules : 1, sizeof(*s->rule_hits));
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->rule_hits || !s->mctx)
        goto out_fail;
    pcre2_set_match_limit(s->mctx, SIM_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, SIM_DEPTH_LIMIT);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->stop_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    return 0;
out_fail:
    free(s->rule_hits);
    pcre2_match_context_free(s->mctx);
    return -1;
}

static void sim_destroy(struct sim *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->stop_mu);
    pthread_cond_destroy(&s->stop_cv);
    pcre2_match_context_free(s->mctx);
    free(s->rule_hits);
}

/* Ends every simulated sleep now and makes later ones return at once. */
static void sim_stop_begin(struct sim *s)
{
    pthread_mutex_lock(&s->stop_mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->stop_cv);
    pthread_mutex_unlock(&s->stop_mu);
}

/* Sleeps ms milliseconds, or less when the simulator is stopping. */
static void sim_sleep(struct sim *s, int ms)
{
    if (ms <= 0)
        return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->stop_mu);
    while (!s->stopping)
        if (pthread_cond_timedwait(&s->stop_cv, &s->stop_mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->stop_mu);
}

/* ------------------------------------------------------------------------------------------
 * Growable byte buffer: on allocation failure it frees itself and ignores later appends, so
 * callers check oom once at the end.
 * ------------------------------------------------------------------------------------------ */

struct sim_buf {
    char *data;
    size_t len, cap;
    bool oom;
};

static void sim_buf_fail(struct sim_buf *b)
{
    free(b->data);
    *b = (struct sim_buf){.oom = true};
}

static void sim_buf_add(struct sim_buf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (!nd) {
            sim_buf_fail(b);
            return;
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sim_buf_reset(struct sim_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static const char *sim_buf_str(const struct sim_buf *b)
{
    return b->data ? b->data : "";
}

static void sim_buf_free(struct sim_buf *b)
{
    free(b->data);
    *b = (struct sim_buf){0};
}

/* Appends s as the inside of a JSON string literal (escaped, without the quotes). */
static void sim_buf_add_json(struct sim_buf *b, const char *s, size_t n)
{
    json_object *str = json_object_new_string_len(s, (int)n);
    if (!str) {
        sim_buf_fail(b);
        return;
    }
    const char *t = json_object_to_json_string_ext(str, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t tl = strlen(t);
    if (tl >= 2)
        sim_buf_add(b, t + 1, tl - 2);
    json_object_put(str);
}

/* UTF-8 characters in s (continuation bytes are not counted). */
static size_t sim_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* ------------------------------------------------------------------------------------------
 * HTTP responses
 * ------------------------------------------------------------------------------------------ */

struct sim_res {
    unsigned status;
    char *body; /* owned */
    const char *content_type;
    int retry_after_s;   /* -1: no Retry-After header */
    const char *allow;   /* Allow header for 405, or NULL */
    const char *outcome; /* for the debug log: rule name, "default", "fault:...", "invalid" */
};

static void sim_res_json(struct sim_res *res, unsigned status, json_object *obj)
{
    const char *t = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
    free(res->body);
    res->body = t ? strdup(t) : NULL;
    res->status = res->body ? status : 500;
    res->content_type = "application/json";
    json_object_put(obj);
}

/* Sets OpenAI's error shape {"error":{"message","type","param","code"}}; param and code may
 * be NULL (JSON null). */
static void sim_error(struct sim_res *res, unsigned status, const char *type, const char *param,
                      const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void sim_error(struct sim_res *res, unsigned status, const char *type, const char *param,
                      const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object *e = json_object_new_object();
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(e, "type", json_object_new_string(type));
    json_object_object_add(e, "param", param ? json_object_new_string(param) : NULL);
    json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", e);
    sim_res_json(res, status, o);
}

#define sim_invalid(res, param, ...)                                                               \
    sim_error((res), 400, "invalid_request_error", (param), NULL, __VA_ARGS__)

/* ------------------------------------------------------------------------------------------
 * POST /v1/chat/completions
 * ------------------------------------------------------------------------------------------ */

/* What the rules look at, taken from a validated request. */
struct sim_chat {
    json_object *root;
    const char *model;
    struct sim_buf system; /* system and developer contents joined with "\n" */
    struct sim_buf user;   /* the last user message */
    struct sim_buf part;   /* scratch: the current message's content */
    size_t nsystem;
    size_t prompt_chars;
};

static void sim_chat_free(struct sim_chat *c)
{
    json_object_put(c->root);
    sim_buf_free(&c->system);
    sim_buf_free(&c->user);
    sim_buf_free(&c->part);
}

/* Reads message i's content (a string, or an array of text parts) into c->part. */
static int sim_chat_content(struct sim_chat *c, size_t i, json_object *msg, const char *role,
                            struct sim_res *res)
{
    char param[96];
    json_object *content;
    sim_buf_reset(&c->part);
    snprintf(param, sizeof(param), "messages[%zu].content", i);
    if (!json_object_object_get_ex(msg, "content", &content) ||
        json_object_is_type(content, json_type_null)) {
        if (strcmp(role, "assistant") == 0) /* an assistant turn with only tool calls */
            return 0;
        sim_invalid(res, param, "messages[%zu] must have content", i);
        return -1;
    }
    if (json_object_is_type(content, json_type_string)) {
        sim_buf_add(&c->part, json_object_get_string(content),
                    (size_t)json_object_get_string_len(content));
        return 0;
    }
    if (!json_object_is_type(content, json_type_array)) {
        sim_invalid(res, param, "content must be a string or an array of text parts, not %s",
                    sim_json_type_name(content));
        return -1;
    }
    size_t n = json_object_array_length(content);
    for (size_t j = 0; j < n; j++) {
        json_object *part = json_object_array_get_idx(content, j), *type, *text;
        snprintf(param, sizeof(param), "messages[%zu].content[%zu]", i, j);
        if (!json_object_is_type(part, json_type_object)) {
            sim_invalid(res, param, "a content part must be an object");
            return -1;
        }
        if (!json_object_object_get_ex(part, "type", &type) ||
            !json_object_is_type(type, json_type_string) ||
            strcmp(json_object_get_string(type), "text") != 0) {
            snprintf(param, sizeof(param), "messages[%zu].content[%zu].type", i, j);
            sim_invalid(res, param,
                        "only content parts of type \"text\" are supported by the "
                        "simulator");
            return -1;
        }
        if (!json_object_object_get_ex(part, "text", &text) ||
            !json_object_is_type(text, json_type_string)) {
            snprintf(param, sizeof(param), "messages[%zu].content[%zu].text", i, j);
            sim_invalid(res, param, "a text part needs a string \"text\"");
            return -1;
        }
        sim_buf_add(&c->part, json_object_get_string(text),
                    (size_t)json_object_get_string_len(text));
    }
    return 0;
}

static int sim_chat_messages(struct sim_chat *c, json_object *messages, struct sim_res *res)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
    size_t n = json_object_array_length(messages);
    if (n == 0) {
        sim_invalid(res, "messages", "messages must not be empty");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *msg = json_object_array_get_idx(messages, i), *rolev;
        char param[96];
        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (!json_object_is_type(msg, json_type_object)) {
            sim_invalid(res, param, "each message must be an object");
            return -1;
        }
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!json_object_object_get_ex(msg, "role", &rolev) ||
            !json_object_is_type(rolev, json_type_string)) {
            sim_invalid(res, param, "messages[%zu] must have a string role", i);
            return -1;
        }
        const char *role = json_object_get_string(rolev);
        bool known = false;
        for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]) && !known; r++)
            known = strcmp(role, roles[r]) == 0;
        if (!known) {
            sim_invalid(res, param,
                        "invalid role '%.64s': supported values are 'system', 'user', "
                        "'assistant', 'tool' and 'developer'",
                        role);
            return -1;
        }
        if (sim_chat_content(c, i, msg, role, res) != 0)
            return -1;
        c->prompt_chars += sim_chars(sim_buf_str(&c->part), c->part.len);
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            if (c->nsystem++ > 0)
                sim_buf_add(&c->system, "\n", 1);
            sim_buf_add(&c->system, sim_buf_str(&c->part), c->part.len);
        } else if (strcmp(role, "user") == 0) {
            sim_buf_reset(&c->user);
            sim_buf_add(&c->user, sim_buf_str(&c->part), c->part.len);
        }
    }
    return 0;
}

/* Checks the optional parameters that the simulator accepts but does not act on. */
static int sim_chat_options(json_object *root, struct sim_res *res)
{
    json_object *v;
    if (json_object_object_get_ex(root, "stream", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            sim_invalid(res, "stream", "stream must be a boolean");
            return -1;
        }
        if (json_object_get_boolean(v)) {
            sim_invalid(res, "stream", "stream is not supported by the simulator");
            return -1;
        }
    }
    if (json_object_object_get_ex(root, "temperature", &v) &&
        !json_object_is_type(v, json_type_null)) {
        double t = json_object_get_double(v);
        if ((!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) ||
            !(t >= 0.0 && t <= 2.0)) {
            sim_invalid(res, "temperature", "temperature must be a number between 0 and 2");
            return -1;
        }
    }
    if (json_object_object_get_ex(root, "max_tokens", &v) &&
        !json_object_is_type(v, json_type_null) &&
        (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1)) {
        sim_invalid(res, "max_tokens", "max_tokens must be a positive integer");
        return -1;
    }
    if (json_object_object_get_ex(root, "response_format", &v) &&
        !json_object_is_type(v, json_type_null)) {
        json_object *type;
        const char *t = "";
        if (json_object_is_type(v, json_type_object) &&
            json_object_object_get_ex(v, "type", &type) &&
            json_object_is_type(type, json_type_string))
            t = json_object_get_string(type);
        if (strcmp(t, "text") != 0 && strcmp(t, "json_object") != 0 &&
            strcmp(t, "json_schema") != 0) {
            sim_invalid(res, "response_format.type",
                        "response_format must be an object whose type is 'text', "
                        "'json_object' or 'json_schema'");
            return -1;
        }
    }
    return 0;
}

/* Parses and validates a chat request into c; on failure sets a 400 in res. */
static int sim_chat_parse(struct sim_chat *c, const char *body, size_t len, struct sim_res *res)
{
    char err[256];
    json_object *v;
    c->root = sim_json_parse(body, len, err, sizeof(err));
    if (!c->root) {
        sim_invalid(res, NULL, "the request body is not valid JSON: %s", err);
        return -1;
    }
    if (!json_object_is_type(c->root, json_type_object)) {
        sim_invalid(res, NULL, "the request body must be a JSON object");
        return -1;
    }
    if (!json_object_object_get_ex(c->root, "model", &v)) {
        sim_invalid(res, "model", "you must provide a model parameter");
        return -1;
    }
    if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
        sim_invalid(res, "model", "model must be a non-empty string");
        return -1;
    }
    c->model = json_object_get_string(v);
    if (!json_object_object_get_ex(c->root, "messages", &v)) {
        sim_invalid(res, "messages", "you must provide a messages parameter");
        return -1;
    }
    if (!json_object_is_type(v, json_type_array)) {
        sim_invalid(res, "messages", "messages must be an array");
        return -1;
    }
    if (sim_chat_options(c->root, res) != 0 || sim_chat_messages(c, v, res) != 0)
        return -1;
    if (c->system.oom || c->user.oom || c->part.oom) {
        sim_error(res, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    return 0;
}

/* Draws this request's fault in arrival order; SIM_FAULT_N when none. */
static int sim_fault_draw(struct sim *s)
{
    const double *rate = s->scn->fault_rate;
    if (rate[0] + rate[1] + rate[2] + rate[3] <= 0.0)
        return SIM_FAULT_N;
    pthread_mutex_lock(&s->mu);
    double u = sim_unit(sim_splitmix64(&s->prng)), edge = 0;
    int f = 0;
    for (; f < SIM_FAULT_N; f++) {
        edge += rate[f];
        if (u < edge)
            break;
    }
    if (f < SIM_FAULT_N)
        s->faults[f]++;
    pthread_mutex_unlock(&s->mu);
    return f;
}

static bool sim_pattern_matches(const pcre2_code *re, const char *subject, size_t len,
                                pcre2_match_context *mctx, const char *rule)
{
    if (!re)
        return true;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, 0, 0, md, mctx);
    pcre2_match_data_free(md);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        pl_warn("rule %s: match failed (%s): treated as no match", rule, (const char *)msg);
    }
    return rc >= 0;
}

/* The first rule that applies to c in phase, or NULL for the default reply. */
static const struct sim_rule *sim_rule_select(struct sim *s, const struct sim_chat *c,
                                              const char *phase, size_t *idx)
{
    const struct sim_scenario *scn = s->scn;
    for (size_t i = 0; i < scn->nrules; i++) {
        const struct sim_rule *r = &scn->rules[i];
        if (r->phase && strcmp(r->phase, phase) != 0)
            continue;
        if (!sim_rule_draw(scn->seed, i, r->p, sim_buf_str(&c->system), c->system.len,
                           sim_buf_str(&c->user), c->user.len))
            continue;
        if (!sim_pattern_matches(r->match[SIM_MATCH_SYSTEM], sim_buf_str(&c->system), c->system.len,
                                 s->mctx, r->name) ||
            !sim_pattern_matches(r->match[SIM_MATCH_USER], sim_buf_str(&c->user), c->user.len,
                                 s->mctx, r->name) ||
            !sim_pattern_matches(r->match[SIM_MATCH_MODEL], c->model, strlen(c->model), s->mctx,
                                 r->name))
            continue;
        *idx = i;
        return r;
    }
    return NULL;
}

/* Fills the reply template: {{user}}, {{user_json}}, {{system_json}}; anything else in
 * double braces stays as written. */
static void sim_render(const char *tpl, const struct sim_chat *c, struct sim_buf *out)
{
    const char *p = tpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!close) {
            sim_buf_add(out, p, strlen(p));
            return;
        }
        sim_buf_add(out, p, (size_t)(open - p));
        const char *name = open + 2;
        size_t nlen = (size_t)(close - name);
        if (nlen == 4 && strncmp(name, "user", 4) == 0)
            sim_buf_add(out, sim_buf_str(&c->user), c->user.len);
        else if (nlen == 9 && strncmp(name, "user_json", 9) == 0)
            sim_buf_add_json(out, sim_buf_str(&c->user), c->user.len);
        else if (nlen == 11 && strncmp(name, "system_json", 11) == 0)
            sim_buf_add_json(out, sim_buf_str(&c->system), c->system.len);
        else
            sim_buf_add(out, open, (size_t)(close + 2 - open));
        p = close + 2;
    }
}

static void sim_chat_fault(struct sim *s, int fault, struct sim_res *res)
{
    const struct sim_scenario *scn = s->scn;
    switch (fault) {
    case SIM_FAULT_429:
        res->outcome = "fault:http_429";
        res->retry_after_s = scn->retry_after_s;
        sim_error(res, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                  "Rate limit reached (simulated). Please try again in %d s.", scn->retry_after_s);
        break;
    case SIM_FAULT_500:
        res->outcome = "fault:http_500";
        sim_error(res, 500, "server_error", NULL, NULL,
                  "The server had an error while processing your request (simulated).");
        break;
    case SIM_FAULT_TIMEOUT:
        res->outcome = "fault:timeout";
        sim_sleep(s, scn->timeout_ms);
        sim_error(res, 504, "server_error", NULL, "timeout",
                  "The request timed out after %d ms (simulated).", scn->timeout_ms);
        break;
    default:
        res->outcome = "fault:garbage";
        sim_sleep(s, s->latency_ms);
        free(res->body);
        res->body = strdup(SIM_GARBAGE_BODY);
        res->status = res->body ? 200 : 500;
        res->content_type = "application/json";
        break;
    }
}

static void sim_chat_reply(struct sim *s, const struct sim_chat *c, const char *text,
                           size_t textlen, struct sim_res *res)
{
    pthread_mutex_lock(&s->mu);
    uint64_t id = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    char idbuf[48];
    snprintf(idbuf, sizeof(idbuf), "chatcmpl-sim-%llu", (unsigned long long)id);
    int64_t prompt = (int64_t)((c->prompt_chars + 3) / 4);
    int64_t completion = (int64_t)((sim_chars(text, textlen) + 3) / 4);

    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "role", json_object_new_string("assistant"));
    json_object_object_add(msg, "content", json_object_new_string_len(text, (int)textlen));
    json_object *choice = json_object_new_object();
    json_object_object_add(choice, "index", json_object_new_int(0));
    json_object_object_add(choice, "message", msg);
    json_object_object_add(choice, "finish_reason", json_object_new_string("stop"));
    json_object *choices = json_object_new_array();
    json_object_array_add(choices, choice);
    json_object *usage = json_object_new_object();
    json_object_object_add(usage, "prompt_tokens", json_object_new_int64(prompt));
    json_object_object_add(usage, "completion_tokens", json_object_new_int64(completion));
    json_object_object_add(usage, "total_tokens", json_object_new_int64(prompt + completion));
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(idbuf));
    json_object_object_add(o, "object", json_object_new_string("chat.completion"));
    json_object_object_add(o, "created", json_object_new_int64((int64_t)time(NULL)));
    json_object_object_add(o, "model", json_object_new_string(c->model));
    json_object_object_add(o, "choices", choices);
    json_object_object_add(o, "usage", usage);
    sim_res_json(res, 200, o);
}

static void sim_handle_chat(struct sim *s, const char *body, size_t len, struct sim_res *res)
{
    struct sim_chat c = {0};
    struct sim_buf reply = {0};
    char phase[SIM_PHASE_MAX + 1];
    pthread_mutex_lock(&s->mu);
    s->requests++;
    snprintf(phase, sizeof(phase), "%s", s->phase);
    pthread_mutex_unlock(&s->mu);

    if (sim_chat_parse(&c, body, len, res) != 0) {
        res->outcome = "invalid";
        pthread_mutex_lock(&s->mu);
        s->invalid++;
        pthread_mutex_unlock(&s->mu);
        goto out;
    }
    int fault = sim_fault_draw(s);
    if (fault < SIM_FAULT_N) {
        sim_chat_fault(s, fault, res);
        goto out;
    }
    size_t idx = 0;
    const struct sim_rule *r = sim_rule_select(s, &c, phase, &idx);
    sim_render(r ? r->reply : s->scn->default_reply, &c, &reply);
    if (reply.oom) {
        sim_error(res, 500, "server_error", NULL, NULL, "out of memory");
        goto out;
    }
    res->outcome = r ? r->name : "default";
    sim_sleep(s, r && r->latency_ms >= 0 ? r->latency_ms : s->latency_ms);
    sim_chat_reply(s, &c, sim_buf_str(&reply), reply.len, res);
    pthread_mutex_lock(&s->mu);
    s->replies++;
    if (r)
        s->rule_hits[idx]++;
    else
        s->default_hits++;
    pthread_mutex_unlock(&s->mu);
out:
    sim_buf_free(&reply);
    sim_chat_free(&c);
}

/* ------------------------------------------------------------------------------------------
 * Control endpoints
 * ------------------------------------------------------------------------------------------ */

static void sim_handle_healthz(struct sim *s, const char *body, size_t len, struct sim_res *res)
{
    (void)s;
    (void)body;
    (void)len;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status", json_object_new_string("ok"));
    sim_res_json(res, 200, o);
}

static void sim_handle_stats(struct sim *s, const char *body, size_t len, struct sim_res *res)
{
    (void)body;
    (void)len;
    json_object *faults = json_object_new_object();
    json_object *rules = json_object_new_object();
    json_object *o = json_object_new_object();
    pthread_mutex_lock(&s->mu);
    json_object_object_add(o, "requests", json_object_new_uint64(s->requests));
    json_object_object_add(o, "replies", json_object_new_uint64(s->replies));
    json_object_object_add(o, "invalid", json_object_new_uint64(s->invalid));
    for (int f = 0; f < SIM_FAULT_N; f++)
        json_object_object_add(faults, sim_fault_keys[f], json_object_new_uint64(s->faults[f]));
    json_object_object_add(o, "faults", faults);
    for (size_t i = 0; i < s->scn->nrules; i++)
        json_object_object_add(rules, s->scn->rules[i].name,
                               json_object_new_uint64(s->rule_hits[i]));
    json_object_object_add(o, "rules", rules);
    json_object_object_add(o, "default_hits", json_object_new_uint64(s->default_hits));
    json_object_object_add(o, "phase", json_object_new_string(s->phase));
    pthread_mutex_unlock(&s->mu);
    sim_res_json(res, 200, o);
}

static void sim_phase_answer(struct sim_res *res, const char *phase)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "phase", json_object_new_string(phase));
    sim_res_json(res, 200, o);
}

static void sim_handle_phase_get(struct sim *s, const char *body, size_t len, struct sim_res *res)
{
    (void)body;
    (void)len;
    char phase[SIM_PHASE_MAX + 1];
    pthread_mutex_lock(&s->mu);
    snprintf(phase, sizeof(phase), "%s", s->phase);
    pthread_mutex_unlock(&s->mu);
    sim_phase_answer(res, phase);
}

static void sim_handle_phase_set(struct sim *s, const char *body, size_t len, struct sim_res *res)
{
    static const char *const keys[] = {"phase", NULL};
    char err[256], old[SIM_PHASE_MAX + 1];
    const char *phase;
    json_object *root = sim_json_parse(body, len, err, sizeof(err));
    if (!root) {
        sim_invalid(res, NULL, "the request body is not valid JSON: %s", err);
        return;
    }
    if (!json_object_is_type(root, json_type_object)) {
        sim_invalid(res, NULL, "the request body must be an object {\"phase\": \"name\"}");
        goto out;
    }
    if (sim_keys_check(root, "", keys, err, sizeof(err)) != 0 ||
        sim_get_string(root, "", "phase", true, true, &phase, err, sizeof(err)) != 0) {
        sim_invalid(res, "phase", "%s", err);
        goto out;
    }
    if (strlen(phase) > SIM_PHASE_MAX) {
        sim_invalid(res, "phase", "phase: longer than %d bytes", SIM_PHASE_MAX);
        goto out;
    }
    pthread_mutex_lock(&s->mu);
    snprintf(old, sizeof(old), "%s", s->phase);
    snprintf(s->phase, sizeof(s->phase), "%s", phase);
    pthread_mutex_unlock(&s->mu);
    if (strcmp(old, phase) != 0)
        pl_info("phase changed from \"%s\" to \"%s\"", old, phase);
    sim_phase_answer(res, phase);
out:
    json_object_put(root);
}

/* ------------------------------------------------------------------------------------------
 * HTTP server
 * ------------------------------------------------------------------------------------------ */

typedef void (*sim_handler)(struct sim *s, const char *body, size_t len, struct sim_res *res);

static const struct sim_route {
    const char *method;
    const char *path;
    sim_handler handler;
    const char *allow; /* every method the path accepts, for 405 */
} sim_routes[] = {
    {"POST", "/v1/chat/completions", sim_handle_chat, "POST"},
    {"POST", "/chat/completions", sim_handle_chat, "POST"},
    {"GET", "/healthz", sim_handle_healthz, "GET, HEAD"},
    {"GET", "/sim/stats", sim_handle_stats, "GET, HEAD"},
    {"GET", "/sim/phase", sim_handle_phase_get, "GET, HEAD, POST"},
    {"POST", "/sim/phase", sim_handle_phase_set, "GET, HEAD, POST"},
};

/* Per-request upload state, kept in MHD's per-request pointer. */
struct sim_upload {
    char *buf;
    size_t len;
    bool too_large;
    int64_t start_ms;
};

static void sim_dispatch(struct sim *s, const char *method, const char *url,
                         const struct sim_upload *up, struct sim_res *res)
{
    /* HEAD is GET without the body (MHD drops the body for HEAD). */
    const char *as = strcmp(method, "HEAD") == 0 ? "GET" : method;
    const struct sim_route *seen = NULL;
    for (size_t i = 0; i < sizeof(sim_routes) / sizeof(sim_routes[0]); i++) {
        const struct sim_route *r = &sim_routes[i];
        if (strcmp(r->path, url) != 0)
            continue;
        seen = r;
        if (strcmp(r->method, as) != 0)
            continue;
        r->handler(s, up->buf ? up->buf : "", up->len, res);
        return;
    }
    res->outcome = "invalid";
    if (seen) {
        res->allow = seen->allow;
        sim_error(res, 405, "invalid_request_error", NULL, "method_not_allowed",
                  "method %s is not allowed on %s (allowed: %s)", method, url, seen->allow);
    } else {
        sim_error(res, 404, "invalid_request_error", NULL, "unknown_url", "unknown URL: %s %s",
                  method, url);
    }
}

static enum MHD_Result sim_send(struct MHD_Connection *conn, struct sim_res *res)
{
    if (!res->body)
        sim_error(res, 500, "server_error", NULL, NULL, "no response");
    if (!res->body)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(res->body), res->body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(res->body);
        res->body = NULL;
        return MHD_NO;
    }
    res->body = NULL; /* MHD owns it now */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res->content_type ? res->content_type : "application/json");
    if (res->retry_after_s >= 0) {
        char v[16];
        snprintf(v, sizeof(v), "%d", res->retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (res->allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    enum MHD_Result ret = MHD_queue_response(conn, res->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void sim_too_large(struct sim_res *res)
{
    res->outcome = "invalid";
    sim_error(res, 413, "invalid_request_error", NULL, "request_too_large",
              "the request body is larger than %zu bytes", SIM_BODY_MAX);
}

static enum MHD_Result sim_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct sim *s = cls;
    struct sim_upload *up = *con_cls;
    struct sim_res res = {.retry_after_s = -1};
    if (!up) {
        up = calloc(1, sizeof(*up));
        if (!up)
            return MHD_NO;
        up->start_ms = pl_now_ms();
        *con_cls = up;
        /* Refuse a declared oversize body before reading any of it; MHD then closes the
         * connection instead of reading the body. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > SIM_BODY_MAX) {
            up->too_large = true;
            sim_too_large(&res);
            return sim_send(conn, &res);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!up->too_large && up->len + *upload_data_size <= SIM_BODY_MAX) {
            char *nb = realloc(up->buf, up->len + *upload_data_size + 1);
            if (!nb)
                return MHD_NO;
            memcpy(nb + up->len, upload_data, *upload_data_size);
            up->buf = nb;
            up->len += *upload_data_size;
            up->buf[up->len] = '\0';
        } else {
            up->too_large = true;
        }
        *upload_data_size = 0; /* consumed (or discarded) */
        return MHD_YES;
    }
    if (up->too_large)
        sim_too_large(&res);
    else
        sim_dispatch(s, method, url, up, &res);
    pl_debug("%s %s -> %u (%s) in %lld ms", method, url, res.status,
             res.outcome ? res.outcome : "-", (long long)(pl_now_ms() - up->start_ms));
    return sim_send(conn, &res);
}

static void sim_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct sim_upload *up = *con_cls;
    if (up) {
        free(up->buf);
        free(up);
        *con_cls = NULL;
    }
}

/* The format attribute tells clang that fmt is libmicrohttpd's own printf format. */
__attribute__((format(printf, 2, 0))) static void sim_mhd_log(void *cls, const char *fmt,
                                                              va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    pl_warn("http: %s", msg);
}

/* ------------------------------------------------------------------------------------------
 * Command line and main
 * ------------------------------------------------------------------------------------------ */

struct sim_opts {
    const char *scenario;
    const char *bind;
    int port;
    int latency_ms; /* -1: the scenario's */
    enum pl_log_level log_level;
};

static void sim_usage(FILE *f)
{
    fprintf(f,
            "usage: pl-llmsim --scenario FILE [--port N] [--bind ADDR] [--latency-ms N]\n"
            "                 [--log-level debug|info|warn|error]\n"
            "\n"
            "A deterministic OpenAI-compatible chat-completions SIMULATOR (not a model).\n"
            "\n"
            "  --scenario FILE    scenario JSON: rules, default reply, faults (required)\n"
            "  --port N           TCP port, 0-65535 (default %d; 0 = any free port)\n"
            "  --bind ADDR        IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
            "  --latency-ms N     default latency, overrides the scenario's latency_ms\n"
            "                     (rules with their own latency_ms keep it)\n"
            "  --log-level LEVEL  default: $PL_LOG_LEVEL or info; debug logs every request\n"
            "  --help             this text\n"
            "\n"
            "Endpoints: POST /v1/chat/completions (and /chat/completions), GET /healthz,\n"
            "GET /sim/stats, GET|POST /sim/phase. See tools/pl-llmsim/README.md.\n",
            SIM_DEFAULT_PORT);
}

/* Parses argv into o; returns 0 to run, 1 after --help, 2 on a usage error (reported). */
static int sim_opts_parse(int argc, char **argv, struct sim_opts *o)
{
    const char *env_level = getenv("PL_LOG_LEVEL");
    if (env_level && *env_level && pl_log_level_parse(env_level, &o->log_level) != 0) {
        fprintf(stderr, "pl-llmsim: PL_LOG_LEVEL: \"%s\" is not debug|info|warn|error\n",
                env_level);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sim_usage(stdout);
            return 1;
        }
        bool known = strcmp(a, "--scenario") == 0 || strcmp(a, "--port") == 0 ||
                     strcmp(a, "--bind") == 0 || strcmp(a, "--latency-ms") == 0 ||
                     strcmp(a, "--log-level") == 0;
        if (!known) {
            fprintf(stderr, "pl-llmsim: unknown option \"%s\" (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pl-llmsim: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long long n;
        if (strcmp(a, "--scenario") == 0) {
            o->scenario = v;
        } else if (strcmp(a, "--bind") == 0) {
            o->bind = v;
        } else if (strcmp(a, "--log-level") == 0) {
            if (pl_log_level_parse(v, &o->log_level) != 0) {
                fprintf(stderr, "pl-llmsim: --log-level: \"%s\" is not debug|info|warn|error\n", v);
                return 2;
            }
        } else if (strcmp(a, "--port") == 0) {
            if (pl_parse_ll(v, &n) != 0 || n < 0 || n > 65535) {
                fprintf(stderr, "pl-llmsim: --port: \"%s\" is not a port number (0-65535)\n", v);
                return 2;
            }
            o->port = (int)n;
        } else {
            if (pl_parse_ll(v, &n) != 0 || n < 0 || n > SIM_LATENCY_MAX) {
                fprintf(stderr, "pl-llmsim: --latency-ms: \"%s\" is not an integer in 0-%d\n", v,
                        SIM_LATENCY_MAX);
                return 2;
            }
            o->latency_ms = (int)n;
        }
    }
    if (!o->scenario) {
        fprintf(stderr, "pl-llmsim: --scenario FILE is required (see --help)\n");
        return 2;
    }
    return 0;
}

/* Starts the server on o->bind:o->port; NULL with err filled. *port gets the bound port. */
static struct MHD_Daemon *sim_daemon_start(struct sim *s, const struct sim_opts *o, int *port,
                                           char *err, size_t errsz)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)o->port)};
    struct sockaddr *addr = (struct sockaddr *)&a4;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET6, o->bind, &a6.sin6_addr) == 1) {
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else if (inet_pton(AF_INET, o->bind, &a4.sin_addr) != 1) {
        snprintf(err, errsz, "--bind: \"%s\" is not an IPv4 or IPv6 address", o->bind);
        return NULL;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, sim_access, s, MHD_OPTION_EXTERNAL_LOGGER,
        sim_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, sim_completed,
        NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)SIM_CONNECTION_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_END);
    if (!d) {
        snprintf(err, errsz, "cannot listen on %s port %d", o->bind, o->port);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info && info->port ? info->port : o->port;
    return d;
}

int main(int argc, char **argv)
{
    struct sim_opts o = {
        .bind = "127.0.0.1", .port = SIM_DEFAULT_PORT, .latency_ms = -1, .log_level = PL_LOG_INFO};
    int rc = sim_opts_parse(argc, argv, &o);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    pl_log_init("llmsim", o.log_level);

    char err[1024];
    struct sim_scenario *scn = sim_scenario_load(o.scenario, err, sizeof(err));
    if (!scn) {
        fprintf(stderr, "pl-llmsim: scenario %s: %s\n", o.scenario, err);
        return 2;
    }
    rc = 1;
    struct sim s;
    if (sim_init(&s, scn, o.latency_ms) != 0) {
        pl_error("out of memory");
        goto out_scenario;
    }
    /* Signals are taken by sigwait below; every thread started after this inherits the
     * blocked mask, so none of them is interrupted. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int port = o.port;
    struct MHD_Daemon *d = sim_daemon_start(&s, &o, &port, err, sizeof(err));
    if (!d) {
        fprintf(stderr, "pl-llmsim: %s\n", err);
        rc = strncmp(err, "--bind", 6) == 0 ? 2 : 1;
        goto out_sim;
    }
    pl_info("simulator listening on %s port %d: scenario=%s rules=%zu seed=%llu latency_ms=%d",
            o.bind, port, o.scenario, scn->nrules, (unsigned long long)scn->seed, s.latency_ms);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    pl_info("signal %d: shutting down", sig);
    sim_stop_begin(&s);
    MHD_stop_daemon(d);
    pl_info("stopped");
    rc = 0;
out_sim:
    sim_destroy(&s);
out_scenario:
    sim_scenario_free(scn);
    return rc;
}
