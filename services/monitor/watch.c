/* The monitor's stage logic (see watch.h). */
#include "watch.h"

#include "baseline.h"
#include "deploy.h"
#include "eval_rule_store.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "regression.h"
#include "trace.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A shipped version whose live traces are being watched, and the version it replaced. */
struct watched {
    char id[37], tenant[37], project[37], prompt[257], alias[65], base_alias[65];
    long long version, base_version; /* base_version 0: none */
    int rollout_pct;                 /* < 100: a canary, the base version's traces count too */
};

/* One scored trace of a watched deployment: of its shipped version, or of the version it
 * replaced served concurrently during a canary (the baseline arm). */
struct observation {
    const struct watched *w;
    const char *trace_id, *received_at;
    bool passed, baseline;
};

/* The project's rules, loaded once per batch. */
struct project_rules {
    char project[37];
    struct pl_rule_set set;
};

/* Grows as a batch meets projects: a batch may hold traces of any number of them. */
struct rules_cache {
    struct project_rules *r;
    size_t n, cap;
};

/* The stored state of a deployment's test and the settings it was started with. */
struct monitor_test {
    struct pl_regression t;
    long min_samples, canary_min_samples;
    bool regressed, promote;
    long regressed_n;       /* at the decision: the statistic moves on with later traces */
    double regressed_log_e; /* (valid when regressed) */
};

static struct pl_rule_set *monitor_rules(PGconn *conn, struct rules_cache *cache,
                                         const char *tenant, const char *project,
                                         struct pl_pg_error *err)
{
    for (size_t i = 0; i < cache->n; i++)
        if (strcmp(cache->r[i].project, project) == 0)
            return &cache->r[i].set;
    if (cache->n == cache->cap) {
        size_t cap = cache->cap ? 2 * cache->cap : 8;
        struct project_rules *r = realloc(cache->r, cap * sizeof(*r));
        if (!r) {
            snprintf(err->message, sizeof(err->message), "out of memory");
            err->sqlstate[0] = '\0';
            return NULL;
        }
        cache->r = r;
        cache->cap = cap;
    }
    struct project_rules *r = &cache->r[cache->n];
    snprintf(r->project, sizeof(r->project), "%s", project);
    if (pl_eval_rule_store_load(conn, tenant, project, &r->set, err) != 0)
        return NULL;
    cache->n++;
    return &r->set;
}

/* "{a,b,...}" of one of the test's per-alternative arrays, exact in text (%.17g
 * round-trips). */
static void monitor_array_text(const double *v, char *buf, size_t bufsz)
{
    size_t len = 0;
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES && len < bufsz; j++)
        len += (size_t)snprintf(buf + len, bufsz - len, "%c%.17g", j ? ',' : '{', v[j]);
    if (len < bufsz)
        snprintf(buf + len, bufsz - len, "}");
}

static void monitor_array_parse(const char *text, double *v)
{
    const char *p = text;
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES && p && *p; j++) {
        p++; /* '{' or ',' */
        char *end;
        v[j] = strtod(p, &end);
        p = end;
    }
}

/*
 * Creates the deployment's test state once (a replayed `shipped` event finds it and changes
 * nothing): alpha, tolerance and sample sizes from the project as they are at ship; a canary's
 * baseline starts empty and grows with concurrent traffic, otherwise the baseline is the
 * replaced version's newest pre-ship traces, scored now.
 */
static int monitor_state_ensure(PGconn *conn, struct rules_cache *cache, const char *tenant,
                                const char *id, struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant};
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT d.project_id, d.rollout_pct < 100, p.regression_baseline_size,"
                    " EXISTS (SELECT 1 FROM monitor_state s WHERE s.deployment_id = d.id)"
                    " FROM prompt_deployments d JOIN projects p ON p.id = d.project_id"
                    " WHERE d.id = $1 AND d.tenant_id = $2",
                    2, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 3), "t") == 0) {
        PQclear(res);
        return 0;
    }
    char project[37];
    snprintf(project, sizeof(project), "%s", PQgetvalue(res, 0, 0));
    bool canary = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    long limit = strtol(PQgetvalue(res, 0, 2), NULL, 10);
    PQclear(res);
    long n = 0, k = 0;
    if (!canary) {
        struct pl_rule_set *rules = monitor_rules(conn, cache, tenant, project, err);
        if (!rules || pl_monitor_baseline_count(conn, tenant, id, rules, limit, &n, &k, err) != 0)
            return -1;
    }
    char n_txt[24], k_txt[24];
    snprintf(n_txt, sizeof(n_txt), "%ld", n);
    snprintf(k_txt, sizeof(k_txt), "%ld", k);
    struct pl_regression fresh; /* the arrays a test starts from */
    pl_regression_init(&fresh, 0.5, 0, false, 0, 0);
    char log_lr[512], log_c[512];
    monitor_array_text(fresh.log_lr, log_lr, sizeof(log_lr));
    monitor_array_text(fresh.log_c, log_c, sizeof(log_c));
    const char *pi[7] = {id, tenant, canary ? "t" : "f", n_txt, k_txt, log_lr, log_c};
    if (pl_pg_exec(conn,
                   "INSERT INTO monitor_state (deployment_id, tenant_id, alpha, tolerance,"
                   " min_samples, canary, canary_min_samples, base_n, base_k, log_lr, log_c)"
                   " SELECT d.id, d.tenant_id, p.regression_alpha, p.regression_tolerance,"
                   " p.regression_min_samples, $3::boolean, p.ship_canary_min_samples,"
                   " $4::bigint, $5::bigint, $6::float8[], $7::float8[]"
                   " FROM prompt_deployments d JOIN projects p ON p.id = d.project_id"
                   " WHERE d.id = $1 AND d.tenant_id = $2 ON CONFLICT DO NOTHING",
                   7, pi, err) != 0)
        return -1;
    if (!canary)
        pl_info("deployment %s: baseline %ld/%ld pre-ship traces of the replaced version", id, k,
                n);
    return 0;
}

/* Loads the state row (locked until the transaction ends). @returns 1, 0 when none, -1. */
static int monitor_state_load(PGconn *conn, const char *id, struct monitor_test *m,
                              struct pl_pg_error *err)
{
    const char *p[1] = {id};
    PGresult *st = pl_pg_query(conn,
                               "SELECT alpha, tolerance, min_samples, canary, canary_min_samples,"
                               " base_n, base_k, n, k, log_lr::text, regressed_at IS NOT NULL,"
                               " promote_at IS NOT NULL, log_c::text, coalesce(regressed_n, 0),"
                               " coalesce(regressed_log_e, 0) FROM monitor_state"
                               " WHERE deployment_id = $1 FOR UPDATE",
                               1, p, err);
    if (!st)
        return -1;
    if (PQntuples(st) == 0) {
        PQclear(st);
        return 0;
    }
    bool canary = strcmp(PQgetvalue(st, 0, 3), "t") == 0;
    long base_n = (long)pl_pg_getll(st, 0, 5), base_k = (long)pl_pg_getll(st, 0, 6);
    pl_regression_init(&m->t, strtod(PQgetvalue(st, 0, 0), NULL),
                       strtod(PQgetvalue(st, 0, 1), NULL), canary, base_n, base_k);
    m->t.base_n = base_n;
    m->t.base_k = base_k;
    m->t.n = (long)pl_pg_getll(st, 0, 7);
    m->t.k = (long)pl_pg_getll(st, 0, 8);
    monitor_array_parse(PQgetvalue(st, 0, 9), m->t.log_lr);
    monitor_array_parse(PQgetvalue(st, 0, 12), m->t.log_c);
    m->min_samples = (long)pl_pg_getll(st, 0, 2);
    m->canary_min_samples = (long)pl_pg_getll(st, 0, 4);
    m->regressed = strcmp(PQgetvalue(st, 0, 10), "t") == 0;
    m->promote = strcmp(PQgetvalue(st, 0, 11), "t") == 0;
    m->regressed_n = (long)pl_pg_getll(st, 0, 13);
    m->regressed_log_e = strtod(PQgetvalue(st, 0, 14), NULL);
    PQclear(st);
    return 1;
}

static double monitor_rate(long k, long n)
{
    return n > 0 ? (double)k / (double)n : 0.0;
}

/* json-c prints non-finite doubles as bare NaN/Infinity, which is not JSON. */
static json_object *monitor_double(double v)
{
    return isfinite(v) ? json_object_new_double(v) : NULL;
}

/* The monitor_report: the baseline with its bound, the shipped version's counts, the
 * statistic and its threshold, and the decision rule in words. */
static json_object *monitor_report(const struct monitor_test *m, const struct watched *w)
{
    const struct pl_regression *t = &m->t;
    json_object *r = json_object_new_object();
    const char *decision = m->regressed                               ? "regressed"
                           : m->promote && w && w->rollout_pct >= 100 ? "promoted"
                           : m->promote                               ? "promotable"
                           : t->base_n == 0 && !t->canary             ? "no_baseline"
                                                                      : "watching";
    json_object_object_add(r, "decision", json_object_new_string(decision));
    json_object_object_add(
        r, "rule",
        json_object_new_string(
            "regressed when log_e_value >= threshold. e_value averages, over drops d and over "
            "restart points (half the weight at the ship, half over every 100th trace), the "
            "likelihood ratio of pass rate reference - d against reference over the shipped "
            "version's live traces since that point; reference = baseline lower_bound - "
            "tolerance. P(a version no worse than the one it replaced is ever rolled back) <= "
            "alpha"));
    json_object_object_add(r, "alpha", json_object_new_double(t->alpha));
    json_object_object_add(r, "tolerance", json_object_new_double(t->tolerance));
    json_object_object_add(r, "min_samples", json_object_new_int64(m->min_samples));

    json_object *b = json_object_new_object();
    json_object_object_add(b, "source", json_object_new_string(t->canary ? "canary" : "pre_ship"));
    json_object_object_add(b, "version",
                           w && w->base_version ? json_object_new_int64(w->base_version) : NULL);
    json_object_object_add(b, "traces", json_object_new_int64(t->base_n));
    json_object_object_add(b, "passed", json_object_new_int64(t->base_k));
    json_object_object_add(b, "pass_rate",
                           t->base_n ? json_object_new_double(monitor_rate(t->base_k, t->base_n))
                                     : NULL);
    json_object_object_add(b, "lower_bound",
                           json_object_new_double(pl_regression_baseline_lower(t)));
    json_object_object_add(
        b, "bound", json_object_new_string(t->canary ? "confidence_sequence" : "clopper_pearson"));
    json_object_object_add(b, "alpha", json_object_new_double(pl_regression_alpha_baseline(t)));
    json_object_object_add(r, "baseline", b);

    json_object *s = json_object_new_object();
    json_object_object_add(s, "version", w ? json_object_new_int64(w->version) : NULL);
    json_object_object_add(s, "traces", json_object_new_int64(t->n));
    json_object_object_add(s, "passed", json_object_new_int64(t->k));
    json_object_object_add(s, "pass_rate",
                           t->n ? json_object_new_double(monitor_rate(t->k, t->n)) : NULL);
    json_object_object_add(r, "shipped", s);

    json_object_object_add(r, "reference", monitor_double(pl_regression_reference(t)));
    json_object *stat = json_object_new_object();
    json_object_object_add(stat, "log_e_value", monitor_double(pl_regression_log_e(t)));
    json_object_object_add(stat, "threshold", monitor_double(pl_regression_threshold(t)));
    json_object_object_add(stat, "alpha", json_object_new_double(pl_regression_alpha_test(t)));
    json_object_object_add(r, "statistic", stat);
    if (m->regressed) { /* the statistic above moves on with later traces; this is the call */
        json_object *at = json_object_new_object();
        json_object_object_add(at, "traces", json_object_new_int64(m->regressed_n));
        json_object_object_add(at, "log_e_value", monitor_double(m->regressed_log_e));
        json_object_object_add(r, "regressed_at", at);
    }
    if (t->canary) {
        json_object *c = json_object_new_object();
        json_object_object_add(c, "min_samples", json_object_new_int64(m->canary_min_samples));
        json_object_object_add(c, "rollout_pct", w ? json_object_new_int(w->rollout_pct) : NULL);
        json_object_object_add(
            c, "promotion_rule",
            json_object_new_string("at least min_samples traces of the shipped version and as "
                                   "many of the baseline, no regression, and its pass rate not "
                                   "below the baseline's by more than the tolerance"));
        json_object_object_add(r, "canary", c);
    }
    return r;
}

/* Stores the test state, the rolling metric and the report of one deployment. */
static int monitor_state_save(PGconn *conn, const char *id, const struct monitor_test *m,
                              const struct watched *w, struct pl_pg_error *err)
{
    char log_lr[512], log_c[512], base_n[24], base_k[24], n[24], k[24];
    monitor_array_text(m->t.log_lr, log_lr, sizeof(log_lr));
    monitor_array_text(m->t.log_c, log_c, sizeof(log_c));
    snprintf(base_n, sizeof(base_n), "%ld", m->t.base_n);
    snprintf(base_k, sizeof(base_k), "%ld", m->t.base_k);
    snprintf(n, sizeof(n), "%ld", m->t.n);
    snprintf(k, sizeof(k), "%ld", m->t.k);
    json_object *report = monitor_report(m, w);
    char regressed_n[24], regressed_log_e[32];
    snprintf(regressed_n, sizeof(regressed_n), "%ld", m->regressed_n);
    snprintf(regressed_log_e, sizeof(regressed_log_e), "%.17g", m->regressed_log_e);
    const char *ps[11] = {id,
                          base_n,
                          base_k,
                          n,
                          k,
                          log_lr,
                          log_c,
                          m->regressed ? "t" : "f",
                          m->promote ? "t" : "f",
                          m->regressed ? regressed_n : NULL,
                          m->regressed ? regressed_log_e : NULL};
    int rc = pl_pg_exec(conn,
                        "UPDATE monitor_state SET base_n = $2::bigint, base_k = $3::bigint,"
                        " n = $4::bigint, k = $5::bigint, log_lr = $6::float8[],"
                        " log_c = $7::float8[], updated_at = now(),"
                        " regressed_at = CASE WHEN $8::boolean THEN coalesce(regressed_at, now())"
                        "   END,"
                        " promote_at = CASE WHEN $9::boolean THEN coalesce(promote_at, now()) END,"
                        " regressed_n = $10::bigint, regressed_log_e = $11::float8"
                        " WHERE deployment_id = $1",
                        11, ps, err);
    if (rc == 0)
        rc = pl_pg_exec(
            conn,
            "UPDATE prompt_deployments d SET monitor_report = $2::jsonb,"
            " regression_metric = (SELECT avg(o.passed::int)::float8 FROM (SELECT"
            "   passed FROM monitor_observations WHERE deployment_id = d.id"
            "   AND arm = 'shipped' ORDER BY seq DESC LIMIT (SELECT"
            "   regression_window FROM projects WHERE id = d.project_id)) o)"
            " WHERE d.id = $1",
            2, (const char *[]){id, json_object_to_json_string_ext(report, JSON_C_TO_STRING_PLAIN)},
            err);
    json_object_put(report);
    return rc;
}

static const struct watched *monitor_find(const struct watched *w, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(w[i].id, id) == 0)
            return &w[i];
    return NULL;
}

static enum pl_transition_result monitor_move(struct pl_service *svc, PGconn *conn,
                                              const char *tenant, const char *id,
                                              enum pl_deploy_status to, enum pl_deploy_actor actor,
                                              struct pl_pg_error *err)
{
    static const char auto_rollback[] = "system:auto_rollback";
    static const char canary_promote[] = "system:canary_promote";
    bool promote = actor == PL_ACTOR_CANARY_PROMOTE;
    struct pl_deploy_change ch = {
        .tenant_id = tenant,
        .deployment_id = id,
        .to = to,
        .actor = actor,
        .approved_by = actor == PL_ACTOR_AUTO_ROLLBACK ? auto_rollback : NULL,
        .rollout_pct = promote ? "100" : NULL,
        .events_topic = svc->cfg.kafka_topic_deployments,
        .hook = to == PL_DEPLOY_ROLLED_BACK ? pl_registry_rollback_hook
                : promote                   ? pl_registry_promote_hook
                                            : NULL,
        .hook_arg = (void *)(promote ? canary_promote : auto_rollback),
    };
    char current[16] = "";
    enum pl_transition_result r = pl_deploy_transition(conn, &ch, NULL, current, err);
    if (r == PL_TRANSITION_OK)
        pl_info("deployment %s -> %s%s", id, pl_deploy_status_name(to),
                promote ? " (canary promoted to 100 %)" : "");
    else if (r == PL_TRANSITION_CONFLICT)
        pl_info("deployment %s not moved to %s%s: %s", id, pl_deploy_status_name(to),
                promote ? " (promotion)" : "", err->message[0] ? err->message : current);
    return r;
}

/* The watched deployments, or only `id` when not NULL (then whatever its status). */
static int monitor_load_watched(PGconn *conn, const char *id, struct watched **out, size_t *nout,
                                struct pl_pg_error *err)
{
    const char *p[1] = {id};
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT d.id, d.tenant_id, d.project_id, pr.name, v.version,"
                    " coalesce(v.version_alias, ''), coalesce(b.version, 0),"
                    " coalesce(b.version_alias, ''), d.rollout_pct FROM prompt_deployments d"
                    " JOIN prompts pr ON pr.id = d.prompt_id"
                    " JOIN prompt_versions v ON v.id = d.shipped_version_id"
                    " LEFT JOIN prompt_versions b ON b.id = d.base_version_id"
                    " WHERE ($1::uuid IS NULL AND d.status IN ('shipped', 'monitoring',"
                    "   'regressed')) OR d.id = $1::uuid",
                    1, p, err);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct watched *w = calloc(n + 1, sizeof(*w));
    for (size_t i = 0; w && i < n; i++) {
        int r = (int)i;
        snprintf(w[i].id, sizeof(w[i].id), "%s", PQgetvalue(res, r, 0));
        snprintf(w[i].tenant, sizeof(w[i].tenant), "%s", PQgetvalue(res, r, 1));
        snprintf(w[i].project, sizeof(w[i].project), "%s", PQgetvalue(res, r, 2));
        snprintf(w[i].prompt, sizeof(w[i].prompt), "%s", PQgetvalue(res, r, 3));
        w[i].version = pl_pg_getll(res, r, 4);
        snprintf(w[i].alias, sizeof(w[i].alias), "%s", PQgetvalue(res, r, 5));
        w[i].base_version = pl_pg_getll(res, r, 6);
        snprintf(w[i].base_alias, sizeof(w[i].base_alias), "%s", PQgetvalue(res, r, 7));
        w[i].rollout_pct = (int)pl_pg_getll(res, r, 8);
    }
    PQclear(res);
    *out = w;
    *nout = w ? n : 0;
    return w ? 0 : -1;
}

/* Writes the report from the stored state, so the baseline is readable as soon as the
 * deployment ships, before its first live trace. */
static int monitor_report_refresh(PGconn *conn, const char *id, struct pl_pg_error *err)
{
    struct watched *w = NULL;
    size_t nw = 0;
    struct monitor_test m;
    int rc = pl_pg_exec(conn, "BEGIN", 0, NULL, err);
    int found = rc == 0 ? monitor_state_load(conn, id, &m, err) : -1;
    if (found == 1)
        rc = monitor_load_watched(conn, id, &w, &nw, err) ||
             monitor_state_save(conn, id, &m, nw ? w : NULL, err);
    else
        rc = found;
    free(w);
    if (rc == 0)
        return pl_pg_exec(conn, "COMMIT", 0, NULL, err);
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return -1;
}

/* A `shipped` event: create the test state, then shipped → monitoring. */
static int monitor_start(struct pl_service *svc, PGconn *conn, struct rules_cache *cache,
                         json_object *ev, struct pl_pg_error *err)
{
    const char *tenant = json_object_get_string(json_object_object_get(ev, "tenant_id"));
    const char *id = json_object_get_string(json_object_object_get(ev, "deployment_id"));
    if (monitor_state_ensure(conn, cache, tenant, id, err) != 0 ||
        monitor_report_refresh(conn, id, err) != 0)
        return -1;
    return monitor_move(svc, conn, tenant, id, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, err) ==
                   PL_TRANSITION_ERROR
               ? -1
               : 0;
}

static bool monitor_version_is(long long num, const char *alias, long long version,
                               const char *version_alias)
{
    return alias ? (version_alias[0] && strcmp(version_alias, alias) == 0) : num == version;
}

/* The watched deployment a trace envelope belongs to, or NULL; *baseline tells the arm. */
static const struct watched *monitor_match(json_object *env, const struct watched *w, size_t n,
                                           bool *baseline)
{
    json_object *trace, *prompt, *name, *version;
    const char *tenant = json_object_get_string(json_object_object_get(env, "tenant_id"));
    const char *project = json_object_get_string(json_object_object_get(env, "project_id"));
    if (!tenant || !project || !json_object_object_get_ex(env, "trace", &trace) ||
        !json_object_object_get_ex(trace, "prompt", &prompt) ||
        !json_object_object_get_ex(prompt, "name", &name) ||
        !json_object_object_get_ex(prompt, "version", &version) ||
        !json_object_is_type(name, json_type_string))
        return NULL;
    long long num = 0;
    const char *alias = NULL;
    if (json_object_is_type(version, json_type_int))
        num = json_object_get_int64(version);
    else if (json_object_is_type(version, json_type_string) &&
             pl_parse_ll(json_object_get_string(version), &num) != 0)
        alias = json_object_get_string(version);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(w[i].tenant, tenant) != 0 || strcmp(w[i].project, project) != 0 ||
            strcmp(w[i].prompt, json_object_get_string(name)) != 0)
            continue;
        if (monitor_version_is(num, alias, w[i].version, w[i].alias)) {
            *baseline = false;
            return &w[i];
        }
        if (w[i].rollout_pct < 100 && w[i].base_version &&
            monitor_version_is(num, alias, w[i].base_version, w[i].base_alias)) {
            *baseline = true;
            return &w[i];
        }
    }
    return NULL;
}

/* Postgres array literals of the observations' columns, in order. */
static int monitor_arrays(const struct observation *obs, size_t n, char *arr[6])
{
    size_t len[6] = {0};
    FILE *f[6];
    int rc = 0;
    for (int c = 0; c < 6; c++) {
        arr[c] = NULL;
        f[c] = open_memstream(&arr[c], &len[c]);
        if (!f[c])
            rc = -1;
        else
            fputc('{', f[c]);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        pl_pg_array_item(f[0], obs[i].w->id, i == 0);
        pl_pg_array_item(f[1], obs[i].trace_id, i == 0);
        pl_pg_array_item(f[2], obs[i].passed ? "t" : "f", i == 0);
        pl_pg_array_item(f[3], obs[i].w->tenant, i == 0);
        pl_pg_array_item(f[4], obs[i].baseline ? "baseline" : "shipped", i == 0);
        pl_pg_array_item(f[5], obs[i].received_at, i == 0);
    }
    for (int c = 0; c < 6; c++)
        if (f[c]) {
            fputc('}', f[c]);
            fclose(f[c]);
        }
    return rc;
}

/*
 * Advances one deployment's test over its new observations (rows from..to of res, in seq
 * order) and stores state, metric and report. The shipped version's traces are tested only
 * from min_samples on; a canary is marked promotable once the rule holds.
 */
static int monitor_advance(PGconn *conn, struct rules_cache *cache, PGresult *res, int from, int to,
                           const struct watched *w, struct pl_pg_error *err)
{
    const char *id = PQgetvalue(res, from, 0), *tenant = PQgetvalue(res, from, 1);
    struct monitor_test m;
    int found = monitor_state_ensure(conn, cache, tenant, id, err);
    if (found == 0)
        found = monitor_state_load(conn, id, &m, err);
    if (found <= 0)
        return found;
    bool was_regressed = m.regressed;
    for (int j = from; j < to; j++) {
        bool ok = strcmp(PQgetvalue(res, j, 2), "t") == 0;
        if (strcmp(PQgetvalue(res, j, 3), "baseline") == 0) {
            pl_regression_add_baseline(&m.t, ok);
            continue;
        }
        pl_regression_add(&m.t, ok);
        if (!m.regressed && m.t.n >= m.min_samples && pl_regression_regressed(&m.t)) {
            m.regressed = true;
            m.regressed_n = m.t.n;
            m.regressed_log_e = pl_regression_log_e(&m.t);
        }
        if (m.t.canary && !m.promote && !m.regressed &&
            pl_regression_promotable(&m.t, m.canary_min_samples))
            m.promote = true;
    }
    if (m.regressed && !was_regressed)
        pl_warn("deployment %s: regression after %ld live traces (%ld passed) against a "
                "baseline of %ld/%ld: log e-value %.2f >= %.2f",
                id, m.t.n, m.t.k, m.t.base_k, m.t.base_n, pl_regression_log_e(&m.t),
                pl_regression_threshold(&m.t));
    return monitor_state_save(conn, id, &m, w, err);
}

/* Inserts the observations (new ones, received after the ship, only) and advances each
 * touched deployment's test, in one transaction. */
static int monitor_record(PGconn *conn, struct rules_cache *cache, const struct observation *obs,
                          size_t n, const struct watched *watched, size_t nwatched,
                          struct pl_pg_error *err)
{
    char *arr[6];
    int rc = -1, rows = 0;
    PGresult *res = NULL;
    if (monitor_arrays(obs, n, arr) != 0) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto out;
    }
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        goto out;
    /* Sorted so that concurrent replicas lock rows in one order; RETURNING keeps it, so the
     * rows of one deployment come back together and in seq order. */
    res = pl_pg_query(conn,
                      "INSERT INTO monitor_observations (deployment_id, trace_id, passed,"
                      " tenant_id, arm) SELECT u.d, u.t, u.p, u.tn, u.a FROM unnest($1::uuid[],"
                      " $2::text[], $3::bool[], $4::uuid[], $5::text[], $6::timestamptz[])"
                      " AS u(d, t, p, tn, a, r) JOIN prompt_deployments d ON d.id = u.d"
                      " WHERE u.r >= d.shipped_at ORDER BY 1, 2 ON CONFLICT DO NOTHING"
                      " RETURNING deployment_id, tenant_id, passed, arm",
                      6, (const char *const *)arr, err);
    if (!res)
        goto rollback;
    rows = PQntuples(res);
    for (int i = 0; i < rows;) {
        int j = i + 1;
        while (j < rows && strcmp(PQgetvalue(res, j, 0), PQgetvalue(res, i, 0)) == 0)
            j++;
        if (monitor_advance(conn, cache, res, i, j,
                            monitor_find(watched, nwatched, PQgetvalue(res, i, 0)), err) < 0)
            goto rollback;
        i = j;
    }
    if (pl_pg_exec(conn, "COMMIT", 0, NULL, err) == 0) {
        rc = 0;
        pl_metric_add(pl_metric_counter("pl_monitor_observations_total", NULL,
                                        "Live traces of watched versions scored"),
                      rows);
    }
    goto out;
rollback : {
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
}
out:
    if (res)
        PQclear(res);
    for (int c = 0; c < 6; c++)
        free(arr[c]);
    return rc;
}

/* Rolls back (or leaves regressed for an owner) every deployment whose test found a
 * regression. */
static int monitor_act_on_regressions(struct pl_service *svc, PGconn *conn, struct pl_pg_error *err)
{
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT d.id, d.tenant_id, d.status, p.auto_rollback_enabled"
                    " FROM monitor_state s JOIN prompt_deployments d"
                    "   ON d.id = s.deployment_id JOIN projects p ON p.id = d.project_id"
                    " WHERE s.regressed_at IS NOT NULL"
                    "   AND d.status IN ('monitoring', 'regressed')"
                    "   AND NOT s.rollback_refused",
                    0, NULL, err);
    if (!res)
        return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        const char *id = PQgetvalue(res, i, 0), *tenant = PQgetvalue(res, i, 1);
        bool regressed = strcmp(PQgetvalue(res, i, 2), "regressed") == 0;
        if (!regressed) {
            enum pl_transition_result r =
                monitor_move(svc, conn, tenant, id, PL_DEPLOY_REGRESSED, PL_ACTOR_MONITOR, err);
            if (r == PL_TRANSITION_ERROR)
                rc = -1;
            regressed = r == PL_TRANSITION_OK;
        }
        if (rc == 0 && regressed && strcmp(PQgetvalue(res, i, 3), "t") == 0) {
            enum pl_transition_result r = monitor_move(svc, conn, tenant, id, PL_DEPLOY_ROLLED_BACK,
                                                       PL_ACTOR_AUTO_ROLLBACK, err);
            if (r == PL_TRANSITION_ERROR) {
                rc = -1;
            } else if (r == PL_TRANSITION_CONFLICT && err->message[0]) {
                /* something newer is live: leave it regressed for an owner, and stop trying */
                const char *p[1] = {id};
                pl_warn("deployment %s: auto-rollback refused: %s", id, err->message);
                rc = pl_pg_exec(conn,
                                "UPDATE monitor_state SET rollback_refused = true"
                                " WHERE deployment_id = $1",
                                1, p, err);
            }
        }
    }
    PQclear(res);
    return rc;
}

/* Promotes every canary whose test allowed it and that is still a watched canary. */
static int monitor_act_on_promotions(struct pl_service *svc, PGconn *conn, struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.id, d.tenant_id FROM monitor_state s"
                                " JOIN prompt_deployments d ON d.id = s.deployment_id"
                                " WHERE s.promote_at IS NOT NULL AND s.regressed_at IS NULL"
                                "   AND d.status = 'monitoring' AND d.rollout_pct < 100",
                                0, NULL, err);
    if (!res)
        return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++)
        if (monitor_move(svc, conn, PQgetvalue(res, i, 1), PQgetvalue(res, i, 0),
                         PL_DEPLOY_MONITORING, PL_ACTOR_CANARY_PROMOTE, err) == PL_TRANSITION_ERROR)
            rc = -1;
    PQclear(res);
    return rc;
}

int pl_monitor_act_on_alarms(struct pl_service *svc, PGconn *conn, struct pl_pg_error *err)
{
    if (monitor_act_on_regressions(svc, conn, err) != 0)
        return -1;
    return monitor_act_on_promotions(svc, conn, err);
}

enum pl_handle_result pl_monitor_batch(struct pl_service *svc, struct pl_worker_item *items,
                                       size_t n, void *arg)
{
    (void)arg;
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    if (!conn) {
        snprintf(items[0].reason, sizeof(items[0].reason), "database: %.200s", err.message);
        return PL_HANDLE_RETRY;
    }
    enum pl_handle_result result = PL_HANDLE_RETRY;
    json_object **parsed = calloc(n, sizeof(*parsed));
    struct observation *obs = calloc(n + 1, sizeof(*obs));
    struct watched *watched = NULL;
    size_t nwatched = 0, nobs = 0;
    struct rules_cache *rules = calloc(1, sizeof(*rules));
    bool loaded = false;
    if (!parsed || !obs || !rules)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *msg = items[i].msg;
        bool is_deployment =
            strcmp(rd_kafka_topic_name(msg->rkt), svc->cfg.kafka_topic_deployments) == 0;
        if (is_deployment) {
            static const char *const required[] = {"tenant_id", "project_id", "deployment_id",
                                                   NULL};
            parsed[i] =
                pl_worker_parse_event(msg, required, items[i].reason, sizeof(items[i].reason));
            if (!parsed[i]) {
                items[i].result = PL_HANDLE_DLQ;
                continue;
            }
            const char *to = json_object_get_string(json_object_object_get(parsed[i], "to"));
            if (to && strcmp(to, "shipped") == 0 &&
                monitor_start(svc, conn, rules, parsed[i], &err) != 0)
                goto db_error;
            continue;
        }
        /* A trace: the detector dead-letters malformed ones; here they are only skipped. */
        static const char *const trace_fields[] = {"tenant_id", "project_id", NULL};
        char why[256];
        parsed[i] = pl_worker_parse_event(msg, trace_fields, why, sizeof(why));
        if (!parsed[i])
            continue;
        if (!loaded) {
            if (monitor_load_watched(conn, NULL, &watched, &nwatched, &err) != 0)
                goto db_error;
            loaded = true;
        }
        bool baseline = false;
        const struct watched *w = monitor_match(parsed[i], watched, nwatched, &baseline);
        if (!w)
            continue;
        json_object *trace = json_object_object_get(parsed[i], "trace");
        json_object *id = json_object_object_get(trace, "id");
        json_object *received = json_object_object_get(parsed[i], "received_at");
        if (!id || !json_object_is_type(id, json_type_string) ||
            !json_object_is_type(received, json_type_string) ||
            !pl_trace_timestamp_ok(json_object_get_string(received)))
            continue;
        struct pl_rule_set *set = monitor_rules(conn, rules, w->tenant, w->project, &err);
        if (!set)
            goto db_error;
        obs[nobs++] =
            (struct observation){w, json_object_get_string(id), json_object_get_string(received),
                                 pl_monitor_trace_passes(set, trace), baseline};
    }
    if (nobs > 0 && monitor_record(conn, rules, obs, nobs, watched, nwatched, &err) != 0)
        goto db_error;
    if (pl_monitor_act_on_alarms(svc, conn, &err) != 0)
        goto db_error;
    result = PL_HANDLED;
    goto out;
db_error:
    snprintf(items[0].reason, sizeof(items[0].reason), "database: %.200s", err.message);
out:
    for (size_t i = 0; rules && i < rules->n; i++)
        pl_rule_set_free(&rules->r[i].set);
    if (rules)
        free(rules->r);
    for (size_t i = 0; parsed && i < n; i++)
        json_object_put(parsed[i]);
    free(rules);
    free(parsed);
    free(obs);
    free(watched);
    pl_pg_release(svc->pg, conn);
    return result;
}
