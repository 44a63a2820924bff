/* The A/B harness's stage logic (see replay.h). */
#include "replay.h"

#include "ab_decide.h"
#include "deploy.h"
#include "eval_rule_store.h"
#include "log.h"
#include "metrics.h"
#include "registry.h"
#include "stats.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AB_MAX_LLM_ERROR_SHARE 0.10 /* more failed calls than this: retry the A/B later */

struct ab_settings {
    double min_delta, alpha, tolerance;
    int holdout, guardrail;
    bool autoship;
};

struct ab_deployment {
    char id[37], tenant[37], project[37], cluster_id[37], prompt_name[256];
    char *current, *candidate, *shown_ids;
};

/* One held-out trace, replayed under both prompts. */
struct ab_item {
    bool guardrail;
    json_object *input;             /* owns the message texts the calls point at */
    struct pl_llm_message *msgs[2]; /* [0] current arm, [1] candidate arm */
    size_t nmsgs;
    char *model;
};

/* Cost and speed of one arm's calls. */
struct ab_usage {
    long calls;
    long long *latencies, latency_sum, prompt_tokens, completion_tokens;
    double cost;
};

static void ab_deployment_free(struct ab_deployment *d)
{
    free(d->current);
    free(d->candidate);
    free(d->shown_ids);
}

static void ab_items_free(struct ab_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_object_put(items[i].input);
        free(items[i].msgs[0]);
        free(items[i].msgs[1]);
        free(items[i].model);
    }
    free(items);
}

static void ab_metric(const char *result)
{
    pl_metric_add(pl_metric_result_counter("pl_abharness_runs_total", result,
                                           "A/B runs finished, by outcome"),
                  1);
}

static int64_t ab_lock_key(const char *deployment_id)
{
    char hex[65];
    pl_sha256_hex(deployment_id, strlen(deployment_id), hex);
    hex[15] = '\0'; /* 60 bits: a positive bigint */
    return (int64_t)strtoll(hex, NULL, 16);
}

/* Session advisory lock on the deployment: held for the run, released with the connection. */
static int ab_lock(PGconn *conn, const char *deployment_id, bool lock, struct pl_pg_error *err)
{
    char key[24];
    snprintf(key, sizeof(key), "%lld", (long long)ab_lock_key(deployment_id));
    const char *p[1] = {key};
    PGresult *res = pl_pg_query(conn,
                                lock ? "SELECT pg_try_advisory_lock($1::bigint)"
                                     : "SELECT pg_advisory_unlock($1::bigint)",
                                1, p, err);
    if (!res)
        return -1;
    int got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return got;
}

static int ab_load(PGconn *conn, const char *tenant, const char *id, struct ab_deployment *d,
                   struct ab_settings *s, char status[16], struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant};
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT d.project_id, coalesce(d.cluster_id::text, ''), coalesce(pr.name, ''),"
                    " d.current_prompt, d.proposed_prompt, d.shown_trace_ids::text, d.status,"
                    " p.ab_min_delta, p.ab_alpha, p.ab_guardrail_tolerance, p.ab_holdout_size,"
                    " p.ab_guardrail_size, p.prompt_autoship_enabled"
                    " FROM prompt_deployments d JOIN projects p ON p.id = d.project_id"
                    " LEFT JOIN prompts pr ON pr.id = d.prompt_id"
                    " WHERE d.id = $1 AND d.tenant_id = $2",
                    2, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->tenant, sizeof(d->tenant), "%s", tenant);
    snprintf(d->project, sizeof(d->project), "%s", PQgetvalue(res, 0, 0));
    snprintf(d->cluster_id, sizeof(d->cluster_id), "%s", PQgetvalue(res, 0, 1));
    snprintf(d->prompt_name, sizeof(d->prompt_name), "%s", PQgetvalue(res, 0, 2));
    d->current = strdup(PQgetvalue(res, 0, 3));
    d->candidate = strdup(PQgetvalue(res, 0, 4));
    d->shown_ids = strdup(PQgetvalue(res, 0, 5));
    snprintf(status, 16, "%s", PQgetvalue(res, 0, 6));
    s->min_delta = strtod(PQgetvalue(res, 0, 7), NULL);
    s->alpha = strtod(PQgetvalue(res, 0, 8), NULL);
    s->tolerance = strtod(PQgetvalue(res, 0, 9), NULL);
    s->holdout = (int)pl_pg_getll(res, 0, 10);
    s->guardrail = (int)pl_pg_getll(res, 0, 11);
    s->autoship = strcmp(PQgetvalue(res, 0, 12), "t") == 0;
    PQclear(res);
    return d->current && d->candidate && d->shown_ids ? 1 : -1;
}

/* The conversation of a stored trace without its system messages: input {"messages":[...]}
 * as recorded, or a plain input as one user message. */
static void ab_item_messages(struct ab_item *it, const char *current, const char *candidate)
{
    json_object *msgs = NULL;
    size_t n = 0;
    if (json_object_is_type(it->input, json_type_object) &&
        json_object_object_get_ex(it->input, "messages", &msgs) &&
        json_object_is_type(msgs, json_type_array))
        n = json_object_array_length(msgs);
    for (int arm = 0; arm < 2; arm++) {
        struct pl_llm_message *m = calloc(n + 2, sizeof(*m));
        size_t k = 0;
        m[k++] = (struct pl_llm_message){"system", arm ? candidate : current};
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(msgs, i), *role, *content;
            if (!json_object_object_get_ex(e, "role", &role) ||
                !json_object_object_get_ex(e, "content", &content) ||
                !json_object_is_type(content, json_type_string) ||
                strcmp(json_object_get_string(role), "system") == 0)
                continue;
            m[k++] = (struct pl_llm_message){json_object_get_string(role),
                                             json_object_get_string(content)};
        }
        if (k == 1) /* no usable conversation: the input itself is the question */
            m[k++] = (struct pl_llm_message){
                "user", json_object_is_type(it->input, json_type_string)
                            ? json_object_get_string(it->input)
                            : json_object_to_json_string_ext(it->input, JSON_C_TO_STRING_PLAIN)};
        it->msgs[arm] = m;
        it->nmsgs = k;
    }
}

/* The held-out set (architecture §7), chosen by a hash of the trace ids so that a resumed run
 * replays the same items: cluster traces the differ did not show the LLM, then a guardrail sample
 * of passing traces of the same prompt. */
static int ab_held_out(PGconn *conn, const struct ab_deployment *d, const struct ab_settings *s,
                       struct ab_item **out, size_t *nout, struct pl_pg_error *err)
{
    char holdout[16], guardrail[16];
    snprintf(holdout, sizeof(holdout), "%d", s->holdout);
    snprintf(guardrail, sizeof(guardrail), "%d", s->guardrail);
    const char *p[7] = {d->tenant,    d->project, d->cluster_id[0] ? d->cluster_id : NULL,
                        d->shown_ids, holdout,    d->prompt_name,
                        guardrail};
    PGresult *res = pl_pg_query(
        conn,
        "(SELECT false, t.input::text, t.model FROM cluster_members m"
        "  JOIN traces t ON t.project_id = $2 AND t.id = m.trace_id"
        "  WHERE m.cluster_id = $3::uuid AND m.tenant_id = $1 AND t.id <> ALL($4::text[])"
        "  ORDER BY md5(t.id), t.id LIMIT $5::int)"
        " UNION ALL"
        " (SELECT true, t.input::text, t.model FROM traces t"
        "  WHERE t.tenant_id = $1 AND t.project_id = $2 AND t.prompt_name = $6"
        "    AND t.error IS NULL AND NOT EXISTS (SELECT 1 FROM cluster_members m"
        "      WHERE m.trace_id = t.id AND m.tenant_id = $1)"
        "  ORDER BY md5(t.id), t.id LIMIT $7::int)",
        7, p, err);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    struct ab_item *items = calloc(n + 1, sizeof(*items));
    for (size_t i = 0; items && i < n; i++) {
        items[i].guardrail = strcmp(PQgetvalue(res, (int)i, 0), "t") == 0;
        items[i].input = json_tokener_parse(PQgetvalue(res, (int)i, 1));
        if (!items[i].input)
            items[i].input = json_object_new_string("");
        items[i].model = PQgetisnull(res, (int)i, 2) || !*PQgetvalue(res, (int)i, 2)
                             ? NULL
                             : strdup(PQgetvalue(res, (int)i, 2));
        ab_item_messages(&items[i], d->current, d->candidate);
    }
    PQclear(res);
    *out = items;
    *nout = items ? n : 0;
    return items ? 0 : -1;
}

static int ab_cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static json_object *ab_usage_latency(struct ab_usage *u)
{
    long long p95 = 0;
    if (u->calls > 0) {
        qsort(u->latencies, (size_t)u->calls, sizeof(long long), ab_cmp_ll);
        p95 = u->latencies[(size_t)ceil(0.95 * (double)u->calls) - 1];
    }
    json_object *o = json_object_new_object();
    json_object_object_add(
        o, "mean",
        json_object_new_double(u->calls ? (double)u->latency_sum / (double)u->calls : 0));
    json_object_object_add(o, "p95", json_object_new_int64(p95));
    return o;
}

static json_object *ab_usage_tokens(const struct ab_usage *u)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "prompt", json_object_new_int64(u->prompt_tokens));
    json_object_object_add(o, "completion", json_object_new_int64(u->completion_tokens));
    return o;
}

static double ab_rate(long k, long n)
{
    return n > 0 ? (double)k / (double)n : 0;
}

static json_object *ab_interval(long k, long n)
{
    double lo, hi;
    pl_stats_wilson(k, n, &lo, &hi);
    json_object *o = json_object_new_array();
    json_object_array_add(o, json_object_new_double(lo));
    json_object_array_add(o, json_object_new_double(hi));
    return o;
}

static json_object *ab_pair(json_object *baseline, json_object *candidate)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "baseline", baseline);
    json_object_object_add(o, "candidate", candidate);
    return o;
}

static json_object *ab_discordant(long b, long c)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "baseline_only", json_object_new_int64(b));
    json_object_object_add(o, "candidate_only", json_object_new_int64(c));
    return o;
}

/* The guardrail gate as decided: the pass rates (and the old point "drop", which readers of
 * earlier reports know), the discordant pairs and the non-inferiority test. Without guardrail
 * items the gate is not applied: its statistics are null rather than zeros that look like a
 * failed test. */
static json_object *ab_guardrail_report(const struct pl_ab_counts *k,
                                        const struct pl_ab_thresholds *th,
                                        const struct pl_ab_decision *dec)
{
    const struct pl_stats_noninferiority *ni = &dec->guardrail;
    json_object *g = json_object_new_object();
    json_object_object_add(g, "sample_size", json_object_new_int64(k->gn));
    json_object_object_add(g, "baseline", json_object_new_double(ab_rate(k->gbase_k, k->gn)));
    json_object_object_add(g, "candidate", json_object_new_double(ab_rate(k->gcand_k, k->gn)));
    json_object_object_add(
        g, "drop",
        json_object_new_double(k->gn ? ab_rate(k->gbase_k, k->gn) - ab_rate(k->gcand_k, k->gn)
                                     : 0));
    json_object_object_add(g, "discordant", ab_discordant(k->gb, k->gc));
    json_object_object_add(g, "applied", json_object_new_boolean(k->gn > 0));
    json_object_object_add(g, "test",
                           json_object_new_string("non-inferiority, Tango score, one-sided"));
    json_object_object_add(g, "margin", json_object_new_double(th->guardrail_tolerance));
    json_object_object_add(g, "alpha", json_object_new_double(th->alpha));
    json_object_object_add(g, "lower_bound",
                           dec->guardrail_tested ? json_object_new_double(ni->lower) : NULL);
    json_object_object_add(g, "z", dec->guardrail_tested ? json_object_new_double(ni->z) : NULL);
    json_object_object_add(g, "passed", k->gn > 0 ? json_object_new_boolean(ni->passed) : NULL);
    return g;
}

/* What each threshold is compared with, and the error rates the rule guarantees
 * (common/ab_decide.h): delta >= min_delta together with McNemar p < alpha is a one-sided test
 * at alpha / 2; a candidate worse on the guardrail by the tolerance or more passes that gate
 * at most alpha of the time. */
static json_object *ab_thresholds_report(const struct pl_ab_thresholds *th)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "min_delta", json_object_new_double(th->min_delta));
    json_object_object_add(o, "min_delta_compared_with", json_object_new_string("point delta"));
    json_object_object_add(o, "alpha", json_object_new_double(th->alpha));
    json_object_object_add(o, "false_pass_rate_at_most", json_object_new_double(th->alpha / 2));
    json_object_object_add(o, "guardrail_tolerance",
                           json_object_new_double(th->guardrail_tolerance));
    json_object_object_add(o, "guardrail_false_pass_rate_at_most",
                           json_object_new_double(th->alpha));
    return o;
}

/* Scores both arms, computes the paired statistics and decides (architecture §7). @returns the
 * ab_report and sets *passed, or NULL with why when too many LLM calls failed (the A/B is
 * then retried later). calls[2i] is item i under the current prompt, calls[2i+1] under the
 * candidate. */
static json_object *ab_score(const struct ab_item *items, size_t n, const struct pl_llm_call *calls,
                             const struct pl_rule_set *rules, const struct ab_settings *s,
                             long long replay_ms, bool *passed, char *why, size_t whysz)
{
    struct pl_ab_counts k = {0};
    long errors = 0;
    struct ab_usage use[2] = {{0}};
    long *rule_k[2] = {calloc(rules->n + 1, sizeof(long)), calloc(rules->n + 1, sizeof(long))};
    bool *outcome = calloc(rules->n + 1, sizeof(bool));
    use[0].latencies = calloc(n + 1, sizeof(long long));
    use[1].latencies = calloc(n + 1, sizeof(long long));
    json_object *report = NULL;
    if (!rule_k[0] || !rule_k[1] || !outcome || !use[0].latencies || !use[1].latencies) {
        snprintf(why, whysz, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct pl_llm_call *pair = &calls[2 * i];
        if (!pair[0].ok || !pair[1].ok) {
            errors++;
            continue;
        }
        bool pass[2];
        for (int a = 0; a < 2; a++) {
            struct pl_eval_input in = {.output = pair[a].content};
            pass[a] = pl_rule_set_run(rules, &in, outcome, NULL, 0);
            for (size_t r = 0; !items[i].guardrail && r < rules->n; r++)
                rule_k[a][r] += outcome[r];
            struct ab_usage *u = &use[a];
            u->latencies[u->calls++] = pair[a].latency_ms;
            u->latency_sum += pair[a].latency_ms;
            u->prompt_tokens += pair[a].prompt_tokens;
            u->completion_tokens += pair[a].completion_tokens;
            u->cost += pair[a].cost_usd;
        }
        /* Paired outcomes: the guardrail's non-inferiority test needs its discordant pairs
         * as much as McNemar needs the held-out ones. */
        if (items[i].guardrail) {
            k.gn++;
            k.gbase_k += pass[0];
            k.gcand_k += pass[1];
            k.gb += pass[0] && !pass[1];
            k.gc += !pass[0] && pass[1];
        } else {
            k.n++;
            k.base_k += pass[0];
            k.cand_k += pass[1];
            k.b += pass[0] && !pass[1];
            k.c += !pass[0] && pass[1];
        }
    }
    if ((double)errors > AB_MAX_LLM_ERROR_SHARE * (double)n) {
        snprintf(why, whysz, "%ld of %zu items could not be replayed (LLM errors)", errors, n);
        goto out;
    }

    const struct pl_ab_thresholds th = {s->min_delta, s->alpha, s->tolerance};
    struct pl_ab_decision dec;
    pl_ab_decide(&k, &th, rules->n > 0, &dec);
    *passed = dec.passed;
    long cn = k.n;

    report = json_object_new_object();
    json_object_object_add(report, "correctness_baseline",
                           json_object_new_double(ab_rate(k.base_k, cn)));
    json_object_object_add(report, "correctness_candidate",
                           json_object_new_double(ab_rate(k.cand_k, cn)));
    json_object_object_add(report, "correctness_delta", json_object_new_double(dec.delta));
    json_object_object_add(report, "sample_size", json_object_new_int64(cn));
    json_object_object_add(report, "confidence_intervals",
                           ab_pair(ab_interval(k.base_k, cn), ab_interval(k.cand_k, cn)));
    json_object_object_add(report, "discordant", ab_discordant(k.b, k.c));
    json_object_object_add(report, "mcnemar_p", json_object_new_double(dec.mcnemar_p));
    json_object_object_add(report, "guardrail", ab_guardrail_report(&k, &th, &dec));
    json_object *per_rule = json_object_new_object();
    for (size_t r = 0; r < rules->n; r++)
        json_object_object_add(per_rule, rules->metrics[r],
                               ab_pair(json_object_new_double(ab_rate(rule_k[0][r], cn)),
                                       json_object_new_double(ab_rate(rule_k[1][r], cn))));
    json_object_object_add(report, "rules", per_rule);
    json_object_object_add(report, "latency_ms",
                           ab_pair(ab_usage_latency(&use[0]), ab_usage_latency(&use[1])));
    json_object_object_add(report, "tokens",
                           ab_pair(ab_usage_tokens(&use[0]), ab_usage_tokens(&use[1])));
    json_object_object_add(
        report, "cost_usd",
        ab_pair(json_object_new_double(use[0].cost), json_object_new_double(use[1].cost)));
    json_object_object_add(report, "llm_errors", json_object_new_int64(errors));
    json_object_object_add(report, "replay_ms", json_object_new_int64(replay_ms));
    json_object_object_add(report, "thresholds", ab_thresholds_report(&th));
    json_object_object_add(report, "decision",
                           json_object_new_string(*passed ? "ab_passed" : "ab_failed"));
    json_object_object_add(report, "reason", json_object_new_string(dec.reason));
out:
    free(rule_k[0]);
    free(rule_k[1]);
    free(outcome);
    free(use[0].latencies);
    free(use[1].latencies);
    return report;
}

/* Moves the deployment with the guarded transition; CONFLICT is logged and is no error. */
static enum pl_transition_result ab_move(PGconn *conn, struct pl_service *svc, const char *tenant,
                                         const char *id, enum pl_deploy_status to,
                                         enum pl_deploy_actor actor, const char *report,
                                         struct pl_pg_error *err)
{
    static const char autoship[] = "system:autoship";
    struct pl_deploy_change ch = {
        .tenant_id = tenant,
        .deployment_id = id,
        .to = to,
        .actor = actor,
        .approved_by = actor == PL_ACTOR_AUTOSHIP ? autoship : NULL,
        .ab_report_json = report,
        .events_topic = svc->cfg.kafka_topic_deployments,
        .hook = to == PL_DEPLOY_SHIPPED ? pl_registry_ship_hook : NULL,
        .hook_arg = (void *)autoship,
    };
    char current[16] = "";
    enum pl_transition_result r = pl_deploy_transition(conn, &ch, NULL, current, err);
    if (r == PL_TRANSITION_CONFLICT)
        pl_info("deployment %s: not moved to %s: it is %s", id, pl_deploy_status_name(to), current);
    return r;
}

/* Ships an ab_passed deployment when its project allows autoship. */
static enum pl_handle_result ab_autoship(PGconn *conn, struct pl_service *svc, const char *tenant,
                                         const char *id, char *reason, size_t reasonsz)
{
    struct pl_pg_error err;
    const char *p[2] = {id, tenant};
    PGresult *res = pl_pg_query(conn,
                                "SELECT p.prompt_autoship_enabled FROM prompt_deployments d"
                                " JOIN projects p ON p.id = d.project_id"
                                " WHERE d.id = $1 AND d.tenant_id = $2 AND d.status = 'ab_passed'",
                                2, p, &err);
    if (!res)
        goto db_error;
    bool ship = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!ship)
        return PL_HANDLED;
    enum pl_transition_result r =
        ab_move(conn, svc, tenant, id, PL_DEPLOY_SHIPPED, PL_ACTOR_AUTOSHIP, NULL, &err);
    if (r == PL_TRANSITION_ERROR)
        goto db_error;
    if (r == PL_TRANSITION_OK) {
        pl_info("deployment %s shipped by system:autoship", id);
        ab_metric("autoshipped");
    }
    return PL_HANDLED;
db_error:
    snprintf(reason, reasonsz, "database: %s", err.message);
    return PL_HANDLE_RETRY;
}

/* Runs the A/B of an ab_running deployment whose lock this connection holds. */
static enum pl_handle_result ab_run(PGconn *conn, struct pl_service *svc, struct pl_llm_client *llm,
                                    const char *tenant, const char *id, char *reason,
                                    size_t reasonsz)
{
    struct pl_pg_error err;
    struct ab_deployment d = {0};
    struct ab_settings s;
    struct pl_rule_set rules = {0};
    struct ab_item *items = NULL;
    struct pl_llm_call *calls = NULL;
    size_t n = 0;
    char status[16] = "";
    enum pl_handle_result result = PL_HANDLE_RETRY;
    int found = ab_load(conn, tenant, id, &d, &s, status, &err);
    if (found < 0)
        goto db_error;
    if (found == 0 || strcmp(status, "ab_running") != 0) {
        result = PL_HANDLED; /* decided meanwhile, or rejected by an owner */
        goto out;
    }
    if (pl_eval_rule_store_load(conn, tenant, d.project, &rules, &err) != 0 ||
        ab_held_out(conn, &d, &s, &items, &n, &err) != 0)
        goto db_error;
    calls = calloc(2 * n + 1, sizeof(*calls));
    if (!calls) {
        snprintf(reason, reasonsz, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        for (int a = 0; a < 2; a++)
            calls[2 * i + (size_t)a] = (struct pl_llm_call){.model = items[i].model,
                                                            .messages = items[i].msgs[a],
                                                            .nmessages = items[i].nmsgs,
                                                            .temperature = -1};
    pl_info("deployment %s: A/B replay of %zu items (%zu calls)", id, n, 2 * n);
    int64_t t0 = pl_now_ms();
    pl_llm_run(llm, calls, 2 * n);
    long long replay_ms = pl_now_ms() - t0;
    if (!pl_running) {
        snprintf(reason, reasonsz, "stopping: the A/B resumes on the next start");
        goto out;
    }
    bool passed = false;
    char why[256];
    json_object *report =
        ab_score(items, n, calls, &rules, &s, replay_ms, &passed, why, sizeof(why));
    if (!report) {
        snprintf(reason, reasonsz, "%s", why);
        ab_metric("llm_errors");
        goto out;
    }
    enum pl_transition_result r = ab_move(
        conn, svc, tenant, id, passed ? PL_DEPLOY_AB_PASSED : PL_DEPLOY_AB_FAILED,
        PL_ACTOR_ABHARNESS, json_object_to_json_string_ext(report, JSON_C_TO_STRING_PLAIN), &err);
    json_object *why_o = json_object_object_get(report, "reason");
    if (r == PL_TRANSITION_OK)
        pl_info("deployment %s: %s in %lld ms: %s", id, passed ? "ab_passed" : "ab_failed",
                replay_ms, json_object_get_string(why_o));
    json_object_put(report);
    if (r == PL_TRANSITION_ERROR)
        goto db_error;
    if (r == PL_TRANSITION_OK)
        ab_metric(passed ? "ab_passed" : "ab_failed");
    result = PL_HANDLED;
    if (r == PL_TRANSITION_OK && passed && s.autoship)
        result = ab_autoship(conn, svc, tenant, id, reason, reasonsz);
    goto out;
db_error:
    snprintf(reason, reasonsz, "database: %s", err.message);
out:
    for (size_t i = 0; calls && i < 2 * n; i++)
        pl_llm_call_clear(&calls[i]);
    free(calls);
    ab_items_free(items, n);
    pl_rule_set_free(&rules);
    ab_deployment_free(&d);
    return result;
}

/* Takes the deployment's lock, optionally moves proposed -> ab_running, and runs the A/B if
 * the row is (then) ab_running. Someone else holding the lock means it is being run. */
static enum pl_handle_result ab_take(struct pl_service *svc, struct pl_llm_client *llm,
                                     const char *tenant, const char *id, bool start, char *reason,
                                     size_t reasonsz)
{
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    if (!conn) {
        snprintf(reason, reasonsz, "database: %s", err.message);
        return PL_HANDLE_RETRY;
    }
    enum pl_handle_result result = PL_HANDLED;
    int locked = ab_lock(conn, id, true, &err);
    if (locked < 0) {
        snprintf(reason, reasonsz, "database: %s", err.message);
        result = PL_HANDLE_RETRY;
    } else if (locked == 1) {
        enum pl_transition_result r = PL_TRANSITION_OK;
        if (start)
            r = ab_move(conn, svc, tenant, id, PL_DEPLOY_AB_RUNNING, PL_ACTOR_ABHARNESS, NULL,
                        &err);
        if (r == PL_TRANSITION_ERROR) {
            snprintf(reason, reasonsz, "database: %s", err.message);
            result = PL_HANDLE_RETRY;
        } else if (r != PL_TRANSITION_NOT_FOUND) {
            /* a CONFLICT leaves a row that may be an orphaned ab_running: ab_run checks */
            result = ab_run(conn, svc, llm, tenant, id, reason, reasonsz);
        }
        ab_lock(conn, id, false, &err);
    }
    pl_pg_release(svc->pg, conn);
    return result;
}

enum pl_handle_result pl_ab_handle_event(struct pl_service *svc, struct pl_llm_client *llm,
                                         json_object *ev, char *reason, size_t reasonsz)
{
    json_object *to;
    if (!json_object_object_get_ex(ev, "to", &to) || !json_object_is_type(to, json_type_string)) {
        snprintf(reason, reasonsz, "deployment event has no string \"to\"");
        return PL_HANDLE_DLQ;
    }
    const char *tenant = json_object_get_string(json_object_object_get(ev, "tenant_id"));
    const char *id = json_object_get_string(json_object_object_get(ev, "deployment_id"));
    if (strcmp(json_object_get_string(to), "proposed") == 0)
        return ab_take(svc, llm, tenant, id, true, reason, reasonsz);
    if (strcmp(json_object_get_string(to), "ab_passed") == 0) {
        /* the harness that passed it ships at once; this catches a crash in between */
        struct pl_pg_error err;
        PGconn *conn = pl_pg_acquire(svc->pg, &err);
        if (!conn) {
            snprintf(reason, reasonsz, "database: %s", err.message);
            return PL_HANDLE_RETRY;
        }
        enum pl_handle_result r = ab_autoship(conn, svc, tenant, id, reason, reasonsz);
        pl_pg_release(svc->pg, conn);
        return r;
    }
    return PL_HANDLED;
}

int pl_ab_resume_orphans(struct pl_service *svc, struct pl_llm_client *llm, bool startup)
{
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    if (!conn)
        return 0;
    char age[24];
    snprintf(age, sizeof(age), "%d", startup ? 0 : svc->cfg.abharness_resume_after_ms);
    const char *p[1] = {age};
    PGresult *res = pl_pg_query(conn,
                                "SELECT tenant_id, id FROM prompt_deployments"
                                " WHERE status = 'ab_running'"
                                "   AND updated_at <= now() - $1::int * interval '1 millisecond'"
                                " ORDER BY updated_at LIMIT 100",
                                1, p, &err);
    pl_pg_release(svc->pg, conn);
    if (!res)
        return 0;
    int done = 0;
    for (int i = 0; i < PQntuples(res) && pl_running; i++) {
        char reason[256] = "";
        pl_info("deployment %s: resuming an orphaned A/B", PQgetvalue(res, i, 1));
        if (ab_take(svc, llm, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), false, reason,
                    sizeof(reason)) == PL_HANDLED)
            done++;
        else
            pl_warn("deployment %s: resume failed: %s", PQgetvalue(res, i, 1), reason);
    }
    PQclear(res);
    return done;
}
