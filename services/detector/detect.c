#include "detect.h"

#include "cluster_store.h"
#include "evaluate.h"
#include "failpoint.h"
#include "log.h"
#include "metrics.h"
#include "template.h"
#include "trace.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One valid message of the batch. */
struct detect_entry {
    struct pl_worker_item *item;
    json_object *env;
    json_object *trace;
    const char *tenant_id;
    const char *project_id;
    const char *trace_id;
    const char *received_at;
};

/* The enabled rules of one project, compiled for this batch. */
struct detect_rule {
    char project_id[37];
    char metric_name[128];
    struct pl_eval_rule *rule;
};

static const char *detect_str(json_object *obj, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* YYYY-MM-DDTHH:MM:SS[.ffffff]Z, with calendar ranges checked: what the SQL cast accepts. */
static bool detect_timestamp_ok(const char *s)
{
    if (!s)
        return false;
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || tm.tm_year < 0 || tm.tm_year > 8000)
        return false;
    if (*end == '.') {
        int digits = 0;
        for (end++; *end >= '0' && *end <= '9'; end++)
            digits++;
        if (digits < 1 || digits > 6)
            return false;
    }
    return end[0] == 'Z' && end[1] == '\0';
}

/* Checks a pl.traces envelope; on failure fills the item's reason and returns false. */
static bool detect_parse(struct pl_worker_item *item, struct detect_entry *e)
{
    const rd_kafka_message_t *msg = item->msg;
    /* PostgreSQL's jsonb cannot hold \u0000: such a trace could never be stored. */
    if (msg->payload && pl_bytes_contain(msg->payload, msg->len, "\\u0000")) {
        snprintf(item->reason, sizeof(item->reason), "payload contains a NUL character (\\u0000)");
        return false;
    }
    static const char *const required[] = {"tenant_id", "project_id", NULL};
    e->env = pl_worker_parse_event(msg, required, item->reason, sizeof(item->reason));
    if (!e->env)
        return false;
    e->item = item;
    e->tenant_id = detect_str(e->env, "tenant_id");
    e->project_id = detect_str(e->env, "project_id");
    e->received_at = detect_str(e->env, "received_at");
    if (!json_object_object_get_ex(e->env, "trace", &e->trace) ||
        !json_object_is_type(e->trace, json_type_object))
        snprintf(item->reason, sizeof(item->reason), "trace must be an object");
    else if (!(e->trace_id = detect_str(e->trace, "id")) || !*e->trace_id ||
             strlen(e->trace_id) > 128)
        snprintf(item->reason, sizeof(item->reason), "trace.id must be a string of 1-128 bytes");
    else if (!detect_timestamp_ok(e->received_at))
        snprintf(item->reason, sizeof(item->reason),
                 "received_at must be an ISO-8601 UTC timestamp (2026-01-31T12:00:00.000000Z)");
    /* The api validated it, but the topic is open to any producer: a value that a SQL cast
     * would refuse must never reach the batch insert (it would fail every retry). */
    else if (pl_trace_validate(e->trace, "trace", item->reason, sizeof(item->reason)) != 0)
        ;
    else
        return true;
    json_object_put(e->env);
    e->env = NULL;
    return false;
}

/* A member as COPY text: strings as they are, other JSON values as JSON text. */
static void detect_copy_member(FILE *f, json_object *obj, const char *key, bool as_json)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || !v) {
        pl_pg_copy_text(f, NULL, false);
        return;
    }
    if (!as_json && json_object_is_type(v, json_type_string))
        pl_pg_copy_text(f, json_object_get_string(v), false);
    else
        pl_pg_copy_text(f, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), false);
}

/* One traces row, in PL_CLUSTER_STORE_TRACE_COLUMNS order. Timestamps come from the envelope
 * (received_at), never now(): a replay writes exactly what the first pass wrote. */
static void detect_copy_row(FILE *f, const struct detect_entry *e, json_object *eval)
{
    json_object *t = e->trace, *prompt = NULL;
    pl_pg_copy_text(f, e->tenant_id, false);
    pl_pg_copy_text(f, e->project_id, false);
    pl_pg_copy_text(f, e->trace_id, false);
    detect_copy_member(f, t, "external_id", false);
    detect_copy_member(f, t, "name", false);
    detect_copy_member(f, t, "model", false);
    detect_copy_member(f, t, "input", true);
    detect_copy_member(f, t, "output", false);
    detect_copy_member(f, t, "error", false);
    detect_copy_member(f, t, "spans", true);
    detect_copy_member(f, t, "events", true);
    detect_copy_member(f, t, "tags", true);
    detect_copy_member(f, t, "metadata", true);
    detect_copy_member(f, t, "latency_ms", false);
    detect_copy_member(f, t, "cost", false);
    pl_pg_copy_text(f, json_object_to_json_string_ext(eval, JSON_C_TO_STRING_PLAIN), false);
    detect_copy_member(f, t, "eval_scores", true);
    json_object_object_get_ex(t, "prompt", &prompt);
    if (prompt) {
        detect_copy_member(f, prompt, "name", false);
        detect_copy_member(f, prompt, "version", false);
    } else {
        pl_pg_copy_text(f, NULL, false);
        pl_pg_copy_text(f, NULL, false);
    }
    pl_pg_copy_text(f, e->received_at, false);
    pl_pg_copy_text(f, e->received_at, true);
}

/* The batch's failures, growing as the traces are evaluated. */
struct detect_failures {
    struct pl_cluster_failure *items;
    size_t n, cap;
};

/* Appends one failure; false when out of memory. */
static bool detect_add_failure(struct detect_failures *fs, const struct detect_entry *e,
                               const char *error_type, const char *message)
{
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 256;
        struct pl_cluster_failure *items = realloc(fs->items, cap * sizeof(*items));
        if (!items)
            return false;
        fs->items = items;
        fs->cap = cap;
    }
    struct pl_cluster_failure *f = &fs->items[fs->n++];
    f->tenant_id = e->tenant_id;
    f->project_id = e->project_id;
    f->trace_id = e->trace_id;
    f->seen_at = e->received_at;
    snprintf(f->error_type, sizeof(f->error_type), "%s", error_type);
    if (pl_template_from_text(message, f->template, sizeof(f->template)) != 0)
        snprintf(f->template, sizeof(f->template), "%s", PL_TEMPLATE_VAR);
    pl_template_signature(PL_GROUPING_VERSION, e->project_id, error_type, f->template,
                          f->signature);
    return true;
}

/* Loads and compiles the enabled rules of the batch's projects. */
static int detect_load_rules(PGconn *conn, const char *projects_array, struct detect_rule **out,
                             int *nout, struct pl_pg_error *err)
{
    const char *p[1] = {projects_array};
    PGresult *res = pl_pg_query(conn,
                                "SELECT project_id, metric_name, evaluator_type, config::text"
                                " FROM eval_rules WHERE project_id = ANY($1::uuid[]) AND enabled"
                                " ORDER BY created_at, id",
                                1, p, err);
    if (!res)
        return -1;
    int n = PQntuples(res), k = 0;
    struct detect_rule *rules = calloc((size_t)(n ? n : 1), sizeof(*rules));
    for (int i = 0; rules && i < n; i++) {
        json_object *cfg = json_tokener_parse(PQgetvalue(res, i, 3));
        char why[256];
        if (pl_eval_rule_compile(PQgetvalue(res, i, 2), cfg, PQgetvalue(res, i, 1), &rules[k].rule,
                                 why, sizeof(why)) != 0) {
            /* Rules are validated when created; one that no longer compiles is skipped. */
            pl_warn("eval rule %s of project %s skipped: %s", PQgetvalue(res, i, 1),
                    PQgetvalue(res, i, 0), why);
        } else {
            snprintf(rules[k].project_id, sizeof(rules[k].project_id), "%s", PQgetvalue(res, i, 0));
            snprintf(rules[k].metric_name, sizeof(rules[k].metric_name), "%s",
                     PQgetvalue(res, i, 1));
            k++;
        }
        json_object_put(cfg);
    }
    PQclear(res);
    *out = rules;
    *nout = k;
    return rules ? 0 : -1;
}

/* Evaluates one trace: fills its eval object and appends its failures. */
static bool detect_evaluate(const struct detect_entry *e, const struct detect_rule *rules,
                            int nrules, json_object *eval, struct detect_failures *failures)
{
    int span_errors = 0;
    const char *error = pl_trace_error(e->trace, &span_errors);
    bool ok = !error || detect_add_failure(failures, e, "error", error);
    json_object *scores = NULL;
    json_object_object_get_ex(e->trace, "eval_scores", &scores);
    struct pl_eval_input in = {
        .output = pl_trace_output(e->trace),
        .error = detect_str(e->trace, "error"),
        .n_span_errors = (size_t)span_errors,
        .eval_scores = scores,
    };
    for (int i = 0; i < nrules; i++) {
        if (strcmp(rules[i].project_id, e->project_id) != 0)
            continue;
        struct pl_eval_result r;
        pl_eval_rule_run(rules[i].rule, &in, &r);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "passed", json_object_new_boolean(r.passed));
        json_object_object_add(o, "feedback", json_object_new_string(r.feedback));
        json_object_object_add(eval, rules[i].metric_name, o);
        if (!r.passed) {
            char type[160];
            snprintf(type, sizeof(type), "rule:%s", rules[i].metric_name);
            ok = ok && detect_add_failure(failures, e, type, r.feedback);
        }
    }
    return ok;
}

/* Marks the entries whose project is not the tenant's as dead letters. */
static int detect_check_projects(PGconn *conn, struct detect_entry *es, size_t n,
                                 const char *projects_array, struct pl_pg_error *err)
{
    const char *p[1] = {projects_array};
    PGresult *res = pl_pg_query(
        conn, "SELECT id, tenant_id FROM projects WHERE id = ANY($1::uuid[])", 1, p, err);
    if (!res)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!es[i].env)
            continue;
        bool ok = false;
        for (int r = 0; r < PQntuples(res) && !ok; r++)
            ok = strcmp(PQgetvalue(res, r, 0), es[i].project_id) == 0 &&
                 strcmp(PQgetvalue(res, r, 1), es[i].tenant_id) == 0;
        if (!ok) {
            es[i].item->result = PL_HANDLE_DLQ;
            snprintf(es[i].item->reason, sizeof(es[i].item->reason),
                     "project %s does not exist for tenant %s", es[i].project_id, es[i].tenant_id);
            json_object_put(es[i].env);
            es[i].env = NULL;
        }
    }
    PQclear(res);
    return 0;
}

/* Postgres array literal of the distinct project ids of the valid entries. */
static char *detect_projects_array(const struct detect_entry *es, size_t n)
{
    char *s = malloc(n * 38 + 3);
    if (!s)
        return NULL;
    size_t len = 0;
    s[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (!es[i].env)
            continue;
        /* Against the distinct ids so far (a batch has few projects), not every entry. */
        s[len] = '\0';
        if (!strstr(s, es[i].project_id))
            len += (size_t)snprintf(s + len, 38 + 1, "%s%s", len > 1 ? "," : "", es[i].project_id);
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* A prepared batch: its traces as COPY rows and its failures, ready to store. */
struct detect_state {
    struct detect_entry *es; /* the parsed envelopes: rows and failures borrow their strings */
    size_t n;
    struct detect_failures failures;
    char *rows;
    size_t rows_len;
    size_t stored; /* traces in rows */
    int64_t t0, t_prepared;
};

void detect_release(void *p)
{
    struct detect_state *st = p;
    if (!st)
        return;
    for (size_t i = 0; st->es && i < st->n; i++)
        json_object_put(st->es[i].env);
    free(st->es);
    free(st->rows);
    free(st->failures.items);
    free(st);
}

/* Parses, checks and evaluates a batch (reads only): everything but the writes. */
void *detect_prepare(struct pl_service *svc, struct pl_worker_item *items, size_t n, void *arg)
{
    (void)arg;
    struct detect_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->t0 = pl_now_ms();
    st->n = n;
    bool ok = false;
    char *projects = NULL;
    struct detect_rule *rules = NULL;
    int nrules = 0;
    FILE *copy = open_memstream(&st->rows, &st->rows_len);
    PGconn *conn = NULL;
    struct pl_pg_error err;
    if (!(st->es = calloc(n, sizeof(*st->es))) || !copy)
        goto out;
    struct detect_entry *es = st->es;
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        if (detect_parse(&items[i], &es[i]))
            valid++;
        else
            items[i].result = PL_HANDLE_DLQ;
    }
    if (valid == 0) {
        ok = true;
        goto out;
    }
    conn = pl_pg_acquire(svc->pg, &err);
    if (!conn || !(projects = detect_projects_array(es, n)) ||
        detect_check_projects(conn, es, n, projects, &err) != 0 ||
        detect_load_rules(conn, projects, &rules, &nrules, &err) != 0) {
        pl_warn("detector: database: %s", err.message);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!es[i].env)
            continue;
        json_object *eval = json_object_new_object();
        bool evaluated = detect_evaluate(&es[i], rules, nrules, eval, &st->failures);
        detect_copy_row(copy, &es[i], eval);
        json_object_put(eval);
        if (!evaluated) {
            pl_warn("detector: out of memory evaluating a batch");
            goto out;
        }
        st->stored++;
    }
    ok = true;
out:
    if (conn)
        pl_pg_release(svc->pg, conn);
    for (int i = 0; i < nrules; i++)
        pl_eval_rule_free(rules[i].rule);
    free(rules);
    free(projects);
    if (copy)
        fclose(copy);
    st->t_prepared = pl_now_ms();
    if (!ok) {
        detect_release(st);
        return NULL;
    }
    return st;
}

/* Stores a prepared batch in one transaction. */
enum pl_handle_result detect_store(struct pl_service *svc, void *p, void *arg)
{
    (void)arg;
    static struct pl_metric *m_traces, *m_failures, *m_events;
    if (!m_traces) {
        m_traces = pl_metric_counter("pl_detector_traces_total", NULL,
                                     "Traces stored and evaluated (replays included)");
        m_failures = pl_metric_counter("pl_detector_failures_total", NULL,
                                       "Failures (errors and failed rules) clustered");
        m_events = pl_metric_counter("pl_detector_cluster_events_total", NULL,
                                     "Clusters that reached their project's threshold");
    }
    struct detect_state *st = p;
    if (st->stored == 0)
        return PL_HANDLED;
    int64_t t_store = pl_now_ms();
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    int events = -1;
    if (!conn || pl_pg_exec(conn, "BEGIN", 0, NULL, &err) != 0 ||
        (events = pl_cluster_store_batch(conn, st->rows, st->rows_len, st->failures.items,
                                         st->failures.n, PL_GROUPING_VERSION,
                                         svc->cfg.kafka_topic_clusters, &err)) < 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0) {
        pl_warn("detector: storing a batch of %zu failed [%s]: %s", st->stored, err.sqlstate,
                err.message);
        if (conn)
            pl_pg_release(svc->pg, conn); /* rolls back; the batch is redelivered */
        return PL_HANDLE_RETRY;
    }
    pl_pg_release(svc->pg, conn);
    pl_failpoint_crash("detector_after_commit"); /* crash-safety tests: before offsets */
    pl_debug("detector: batch of %zu: prepared in %lld ms, stored in %lld ms (%lld ms after it"
             " was prepared); %zu failures, %d events",
             st->stored, (long long)(st->t_prepared - st->t0), (long long)(pl_now_ms() - t_store),
             (long long)(t_store - st->t_prepared), st->failures.n, events);
    pl_metric_add(m_traces, (int64_t)st->stored);
    pl_metric_add(m_failures, (int64_t)st->failures.n);
    pl_metric_add(m_events, events);
    if (events > 0)
        pl_info("detector: %d cluster(s) reached their threshold", events);
    return PL_HANDLED;
}
