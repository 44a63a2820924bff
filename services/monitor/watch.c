#include "watch.h"

#include "deploy.h"
#include "eval_rule_store.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "stats.h"
#include "trace.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A shipped version whose live traces are being watched. */
struct watched {
    char id[37], tenant[37], project[37], prompt[257], alias[65];
    long long version;
};

/* One scored trace of a watched version. */
struct observation {
    const struct watched *w;
    const char *trace_id;
    bool passed;
};

/* The project's rules, loaded once per batch. */
struct project_rules {
    char tenant[37], project[37];
    struct pl_rule_set set;
};

static const char monitor_state_sql[] =
    /* p0: the A/B candidate rate, kept inside (0, 1) so the log-likelihood ratios stay
     * finite; p1: the drop the project wants to catch. */
    "INSERT INTO monitor_state (deployment_id, tenant_id, p0, p1, h, min_samples)"
    " SELECT d.id, d.tenant_id, x.p0, greatest(0.01, x.p0 - greatest(0.01,"
    "   p.regression_p1_drop)), p.regression_cusum_h, p.regression_min_samples"
    " FROM prompt_deployments d JOIN projects p ON p.id = d.project_id,"
    " LATERAL (SELECT least(0.99, greatest(0.05, coalesce((d.ab_report->>"
    "   'correctness_candidate')::float8, 0.95))) AS p0) x"
    " WHERE d.id = $1 AND d.tenant_id = $2 ON CONFLICT DO NOTHING";

static int monitor_ensure_state(PGconn *conn, const char *tenant, const char *id,
                                struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant};
    return pl_pg_exec(conn, monitor_state_sql, 2, p, err);
}

static enum pl_transition_result monitor_move(struct pl_service *svc, PGconn *conn,
                                              const char *tenant, const char *id,
                                              enum pl_deploy_status to, enum pl_deploy_actor actor,
                                              struct pl_pg_error *err)
{
    static const char auto_rollback[] = "system:auto_rollback";
    struct pl_deploy_change ch = {
        .tenant_id = tenant,
        .deployment_id = id,
        .to = to,
        .actor = actor,
        .approved_by = actor == PL_ACTOR_AUTO_ROLLBACK ? auto_rollback : NULL,
        .events_topic = svc->cfg.kafka_topic_deployments,
        .hook = to == PL_DEPLOY_ROLLED_BACK ? pl_registry_rollback_hook : NULL,
        .hook_arg = (void *)auto_rollback,
    };
    char current[16] = "";
    enum pl_transition_result r = pl_deploy_transition(conn, &ch, NULL, current, err);
    if (r == PL_TRANSITION_OK)
        pl_info("deployment %s -> %s", id, pl_deploy_status_name(to));
    else if (r == PL_TRANSITION_CONFLICT)
        pl_info("deployment %s not moved to %s: %s", id, pl_deploy_status_name(to),
                err->message[0] ? err->message : current);
    return r;
}

/* A `shipped` event: create the CUSUM state, then shipped → monitoring. */
static int monitor_start(struct pl_service *svc, PGconn *conn, json_object *ev,
                         struct pl_pg_error *err)
{
    const char *tenant = json_object_get_string(json_object_object_get(ev, "tenant_id"));
    const char *id = json_object_get_string(json_object_object_get(ev, "deployment_id"));
    if (monitor_ensure_state(conn, tenant, id, err) != 0)
        return -1;
    return monitor_move(svc, conn, tenant, id, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, err) ==
                   PL_TRANSITION_ERROR
               ? -1
               : 0;
}

static int monitor_load_watched(PGconn *conn, struct watched **out, size_t *nout,
                                struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.id, d.tenant_id, d.project_id, pr.name, v.version,"
                                " coalesce(v.version_alias, '') FROM prompt_deployments d"
                                " JOIN prompts pr ON pr.id = d.prompt_id"
                                " JOIN prompt_versions v ON v.id = d.shipped_version_id"
                                " WHERE d.status IN ('shipped', 'monitoring', 'regressed')",
                                0, NULL, err);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct watched *w = calloc(n + 1, sizeof(*w));
    for (size_t i = 0; w && i < n; i++) {
        snprintf(w[i].id, sizeof(w[i].id), "%s", PQgetvalue(res, (int)i, 0));
        snprintf(w[i].tenant, sizeof(w[i].tenant), "%s", PQgetvalue(res, (int)i, 1));
        snprintf(w[i].project, sizeof(w[i].project), "%s", PQgetvalue(res, (int)i, 2));
        snprintf(w[i].prompt, sizeof(w[i].prompt), "%s", PQgetvalue(res, (int)i, 3));
        w[i].version = pl_pg_getll(res, (int)i, 4);
        snprintf(w[i].alias, sizeof(w[i].alias), "%s", PQgetvalue(res, (int)i, 5));
    }
    PQclear(res);
    *out = w;
    *nout = w ? n : 0;
    return w ? 0 : -1;
}

/* The watched deployment a trace envelope belongs to, or NULL. */
static const struct watched *monitor_match(json_object *env, const struct watched *w, size_t n)
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
    for (size_t i = 0; i < n; i++)
        if (strcmp(w[i].tenant, tenant) == 0 && strcmp(w[i].project, project) == 0 &&
            strcmp(w[i].prompt, json_object_get_string(name)) == 0 &&
            (alias ? (w[i].alias[0] && strcmp(w[i].alias, alias) == 0) : w[i].version == num))
            return &w[i];
    return NULL;
}

static struct pl_rule_set *monitor_rules(PGconn *conn, struct project_rules *cache, size_t *ncache,
                                         size_t cap, const struct watched *w,
                                         struct pl_pg_error *err)
{
    for (size_t i = 0; i < *ncache; i++)
        if (strcmp(cache[i].project, w->project) == 0)
            return &cache[i].set;
    if (*ncache == cap)
        return NULL;
    struct project_rules *r = &cache[(*ncache)++];
    snprintf(r->project, sizeof(r->project), "%s", w->project);
    if (pl_eval_rule_store_load(conn, w->tenant, w->project, &r->set, err) != 0) {
        (*ncache)--;
        return NULL;
    }
    return &r->set;
}

/* Inserts the observations (new ones only) and advances each touched deployment's CUSUM
 * and rolling pass rate, in one transaction. */
static int monitor_record(PGconn *conn, const struct observation *obs, size_t n,
                          struct pl_pg_error *err)
{
    size_t len[4] = {0};
    char *arr[4] = {NULL};
    FILE *f[4];
    for (int k = 0; k < 4; k++) {
        f[k] = open_memstream(&arr[k], &len[k]);
        fputc('{', f[k]);
    }
    for (size_t i = 0; i < n; i++) {
        pl_pg_array_item(f[0], obs[i].w->id, i == 0);
        pl_pg_array_item(f[1], obs[i].trace_id, i == 0);
        pl_pg_array_item(f[2], obs[i].passed ? "t" : "f", i == 0);
        pl_pg_array_item(f[3], obs[i].w->tenant, i == 0);
    }
    for (int k = 0; k < 4; k++) {
        fputc('}', f[k]);
        fclose(f[k]);
    }
    int rc = -1;
    PGresult *res = NULL;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        goto out;
    const char *p[4] = {arr[0], arr[1], arr[2], arr[3]};
    res = pl_pg_query(conn,
                      "INSERT INTO monitor_observations (deployment_id, trace_id, passed,"
                      " tenant_id) SELECT * FROM unnest($1::uuid[], $2::text[], $3::bool[],"
                      " $4::uuid[]) ORDER BY 1, 2 ON CONFLICT DO NOTHING"
                      " RETURNING deployment_id, tenant_id, passed, seq",
                      4, p, err);
    if (!res)
        goto rollback;
    /* per deployment, in seq order */
    int rows = PQntuples(res);
    bool *done = calloc((size_t)rows + 1, sizeof(bool));
    for (int i = 0; done && i < rows; i++) {
        if (done[i])
            continue;
        const char *id = PQgetvalue(res, i, 0), *tenant = PQgetvalue(res, i, 1);
        const char *ps[1] = {id};
        PGresult *st = NULL;
        if (monitor_ensure_state(conn, tenant, id, err) != 0 ||
            !(st = pl_pg_query(conn,
                               "SELECT p0, p1, h, min_samples, s, n, passed,"
                               " alarmed_at IS NOT NULL FROM monitor_state"
                               " WHERE deployment_id = $1 FOR UPDATE",
                               1, ps, err))) {
            free(done);
            goto rollback;
        }
        struct pl_stats_cusum c;
        pl_stats_cusum_init(&c, strtod(PQgetvalue(st, 0, 0), NULL),
                            strtod(PQgetvalue(st, 0, 1), NULL), strtod(PQgetvalue(st, 0, 2), NULL));
        long long min_samples = pl_pg_getll(st, 0, 3), passed = pl_pg_getll(st, 0, 6);
        c.s = strtod(PQgetvalue(st, 0, 4), NULL);
        c.n = (long)pl_pg_getll(st, 0, 5);
        bool alarmed = strcmp(PQgetvalue(st, 0, 7), "t") == 0, alarm = false;
        PQclear(st);
        /* rows come back in insertion order, which follows seq */
        for (int j = i; j < rows; j++) {
            if (done[j] || strcmp(PQgetvalue(res, j, 0), id) != 0)
                continue;
            done[j] = true;
            bool ok = strcmp(PQgetvalue(res, j, 2), "t") == 0;
            pl_stats_cusum_add(&c, ok);
            passed += ok;
            if (!alarmed && c.s >= c.h && c.n >= min_samples)
                alarm = true;
        }
        char s_txt[32], n_txt[24], passed_txt[24];
        snprintf(s_txt, sizeof(s_txt), "%.17g", c.s);
        snprintf(n_txt, sizeof(n_txt), "%ld", c.n);
        snprintf(passed_txt, sizeof(passed_txt), "%lld", passed);
        const char *pu[5] = {id, s_txt, n_txt, passed_txt, alarm ? "t" : "f"};
        if (pl_pg_exec(conn,
                       "UPDATE monitor_state SET s = $2::float8, n = $3::bigint,"
                       " passed = $4::bigint, updated_at = now(), alarmed_at = CASE WHEN"
                       " $5::boolean AND alarmed_at IS NULL THEN now() ELSE alarmed_at END"
                       " WHERE deployment_id = $1",
                       5, pu, err) != 0 ||
            pl_pg_exec(conn,
                       "UPDATE prompt_deployments d SET regression_metric = (SELECT"
                       "   avg(o.passed::int)::float8 FROM (SELECT passed FROM"
                       "   monitor_observations WHERE deployment_id = d.id ORDER BY seq DESC"
                       "   LIMIT (SELECT regression_window FROM projects WHERE id = d.project_id))"
                       "   o)"
                       " WHERE d.id = $1",
                       1, ps, err) != 0) {
            free(done);
            goto rollback;
        }
        if (alarm)
            pl_warn("deployment %s: CUSUM alarm after %ld live traces (S = %.2f >= h = %.2f, "
                    "pass rate %lld/%ld)",
                    id, c.n, c.s, c.h, passed, c.n);
    }
    free(done);
    if (pl_pg_exec(conn, "COMMIT", 0, NULL, err) == 0) {
        rc = 0;
        pl_metric_add(pl_metric_counter("pl_monitor_observations_total", NULL,
                                        "Live traces of shipped versions scored"),
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
    for (int k = 0; k < 4; k++)
        free(arr[k]);
    return rc;
}

int pl_monitor_act_on_alarms(struct pl_service *svc, PGconn *conn, struct pl_pg_error *err)
{
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT d.id, d.tenant_id, d.status, p.auto_rollback_enabled"
                    " FROM monitor_state s JOIN prompt_deployments d"
                    "   ON d.id = s.deployment_id JOIN projects p ON p.id = d.project_id"
                    " WHERE s.alarmed_at IS NOT NULL"
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
    size_t nwatched = 0, nobs = 0, nrules = 0;
    struct project_rules rules[32];
    bool loaded = false;
    if (!parsed || !obs)
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
            if (to && strcmp(to, "shipped") == 0 && monitor_start(svc, conn, parsed[i], &err) != 0)
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
            if (monitor_load_watched(conn, &watched, &nwatched, &err) != 0)
                goto db_error;
            loaded = true;
        }
        const struct watched *w = monitor_match(parsed[i], watched, nwatched);
        if (!w)
            continue;
        json_object *trace = json_object_object_get(parsed[i], "trace");
        json_object *id = json_object_object_get(trace, "id");
        if (!id || !json_object_is_type(id, json_type_string))
            continue;
        struct pl_rule_set *set = monitor_rules(conn, rules, &nrules, 32, w, &err);
        if (!set) {
            if (nrules < 32)
                goto db_error;
            continue; /* more projects in one batch than the cache holds: next delivery */
        }
        int span_errors = 0;
        const char *error = pl_trace_error(trace, &span_errors);
        json_object *scores = NULL;
        json_object_object_get_ex(trace, "eval_scores", &scores);
        struct pl_eval_input in = {.output = pl_trace_output(trace),
                                   .error = error,
                                   .n_span_errors = (size_t)span_errors,
                                   .eval_scores = scores};
        obs[nobs++] = (struct observation){w, json_object_get_string(id),
                                           !error && pl_rule_set_run(set, &in, NULL, NULL, 0)};
    }
    if (nobs > 0 && monitor_record(conn, obs, nobs, &err) != 0)
        goto db_error;
    if (pl_monitor_act_on_alarms(svc, conn, &err) != 0)
        goto db_error;
    result = PL_HANDLED;
    goto out;
db_error:
    snprintf(items[0].reason, sizeof(items[0].reason), "database: %.200s", err.message);
out:
    for (size_t i = 0; i < nrules; i++)
        pl_rule_set_free(&rules[i].set);
    for (size_t i = 0; parsed && i < n; i++)
        json_object_put(parsed[i]);
    free(parsed);
    free(obs);
    free(watched);
    pl_pg_release(svc->pg, conn);
    return result;
}
