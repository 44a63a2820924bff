/* The detector's stage logic: evaluate a batch, cluster its failures, store it all. */
#include "detect.h"

#include "backfill.h"
#include "cluster_store.h"
#include "evaluate.h"
#include "failpoint.h"
#include "log.h"
#include "metrics.h"
#include "template.h"
#include "trace.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One message of the batch; valid once its envelope and trace passed every check. The
 * strings of rows and failures point into it and into the message's payload. */
struct detect_entry {
    struct pl_worker_item *item;
    size_t index; /* in the batch */
    bool valid;
    bool stored_before; /* a replay: its stored row and evaluation stand, it is not evaluated */
    bool reevaluate;    /* a backfill: stored, but rules changed since: evaluate those */
    long long rules_version;  /* the project's rule set version, read before its rules */
    long long stored_version; /* the stored trace's (stored_before only) */
    char tenant_id[37];
    char project_id[37];
    char received_at[40];
    struct pl_trace_view t;
};

/* The enabled rules of one project, compiled for this batch. */
struct detect_rule {
    char project_id[37];
    char metric_name[128];
    long long version; /* the rule set version its last change made */
    struct pl_eval_rule *rule;
};

/* A uuid member of the envelope, lower-cased into out; false if it is not one. */
static bool detect_uuid(const struct pl_json_value *v, char out[37])
{
    if (v->kind != PL_JSON_STRING || v->str.len != 36)
        return false;
    pl_json_str_decode(&v->str, out);
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return pl_uuid_valid(out);
}

/* The envelope's received_at, decoded into out (40 bytes), if it is a timestamp we take. */
static bool detect_received_at(const struct pl_json_value *v, char out[40])
{
    if (v->kind != PL_JSON_STRING || v->str.len >= 40)
        return false;
    pl_json_str_decode(&v->str, out);
    return pl_trace_timestamp_ok(out);
}

/* Checks a pl.traces envelope and its trace (one pass, no tree); on failure fills the item's
 * reason and returns false. */
static bool detect_parse(struct pl_worker_item *item, struct detect_entry *e)
{
    const rd_kafka_message_t *msg = item->msg;
    char *why = item->reason;
    size_t whysz = sizeof(item->reason);
    e->item = item;
    if (!msg->payload || msg->len == 0) {
        snprintf(why, whysz, "empty message");
        return false;
    }
    struct pl_json_scan s;
    pl_json_scan_init(&s, msg->payload, msg->len);
    if (!pl_json_scan_ws(&s) || *s.p != '{') {
        snprintf(why, whysz, "payload is not a JSON object");
        return false;
    }
    pl_json_scan_enter(&s, '{');
    struct pl_json_value version = {0}, tenant = {0}, project = {0}, received = {0};
    bool has_trace = false;
    int trace_status = 0;
    char trace_why[sizeof(item->reason)];
    struct pl_json_str key;
    int r;
    for (size_t i = 0; (r = pl_json_scan_member(&s, i, &key)) == 1; i++) {
        if (pl_json_str_eq(&key, "trace")) {
            if (has_trace || !pl_json_scan_ws(&s) || *s.p != '{') {
                snprintf(why, whysz, "trace must be an object");
                return false;
            }
            has_trace = true;
            /* The api checked it, but the topic is open to any producer: a value that a SQL
             * cast would refuse must never reach the batch insert (it would fail every retry).
             * Its verdict waits for the envelope's own checks. */
            const char *trace_start = s.p;
            /* The trace's nesting counts from its own top, as for POST /v1/ingest: whatever
             * the api took, this takes. */
            int depth = s.depth;
            s.depth = 0;
            trace_status = pl_trace_scan(&s, "trace", &e->t, trace_why, sizeof(trace_why));
            if (trace_status && s.err[0])
                break;          /* its JSON is broken: nothing after it can be read */
            if (trace_status) { /* refused midway: skip it to read the rest of the envelope */
                struct pl_json_value skipped;
                s.p = trace_start;
                s.depth = 0;
                if (!pl_json_scan_value(&s, &skipped))
                    break;
            }
            s.depth = depth;
            continue;
        }
        struct pl_json_value *v = pl_json_str_eq(&key, "schema_version") ? &version
                                  : pl_json_str_eq(&key, "tenant_id")    ? &tenant
                                  : pl_json_str_eq(&key, "project_id")   ? &project
                                  : pl_json_str_eq(&key, "received_at")  ? &received
                                                                         : NULL;
        struct pl_json_value other;
        if (!pl_json_scan_value(&s, v ? v : &other))
            break;
    }
    if (r != 0 || s.err[0] || !pl_json_scan_done(&s)) {
        snprintf(why, whysz, "payload is not valid JSON: %s", s.err[0] ? s.err : "trailing data");
        return false;
    }
    if (version.kind != PL_JSON_NUMBER || version.text_len != 1 || version.text[0] != '1')
        snprintf(why, whysz, "schema_version must be 1");
    else if (!detect_uuid(&tenant, e->tenant_id))
        snprintf(why, whysz, "tenant_id must be a uuid string");
    else if (!detect_uuid(&project, e->project_id))
        snprintf(why, whysz, "project_id must be a uuid string");
    else if (!has_trace)
        snprintf(why, whysz, "trace must be an object");
    else if (!detect_received_at(&received, e->received_at))
        snprintf(why, whysz,
                 "received_at must be an ISO-8601 UTC timestamp (2026-01-31T12:00:00.000000Z)");
    else if (trace_status)
        snprintf(why, whysz, "%s", trace_why);
    else if (e->t.id_generated)
        snprintf(why, whysz, "trace.id must be a string of 1-128 bytes");
    else
        return e->valid = true;
    return false;
}

/* A trace member as COPY text: strings decoded, other values (and every value of a jsonb
 * column) as their JSON text. */
static void detect_copy_value(FILE *f, const struct pl_json_value *v, bool as_json,
                              struct pl_text_buf *buf)
{
    if (v->kind == PL_JSON_ABSENT || v->kind == PL_JSON_NULL)
        pl_pg_copy_textn(f, NULL, 0, false);
    else if (as_json || v->kind != PL_JSON_STRING)
        pl_pg_copy_textn(f, v->text, v->text_len, false);
    else if (!v->str.escaped)
        pl_pg_copy_textn(f, v->str.raw, v->str.raw_len, false);
    else
        pl_pg_copy_text(f, pl_json_value_text(v, buf), false);
}

/* One traces row, in PL_CLUSTER_STORE_TRACE_COLUMNS order. Timestamps come from the envelope
 * (received_at), never now(): a replay writes exactly what the first pass wrote. */
static void detect_copy_row(FILE *f, const struct detect_entry *e, const char *eval,
                            struct pl_text_buf *buf)
{
    const struct pl_json_value *v = e->t.f;
    pl_pg_copy_text(f, e->tenant_id, false);
    pl_pg_copy_text(f, e->project_id, false);
    pl_pg_copy_text(f, e->t.id, false);
    detect_copy_value(f, &v[PL_TF_EXTERNAL_ID], false, buf);
    detect_copy_value(f, &v[PL_TF_NAME], false, buf);
    detect_copy_value(f, &v[PL_TF_MODEL], false, buf);
    detect_copy_value(f, &v[PL_TF_INPUT], true, buf);
    detect_copy_value(f, &v[PL_TF_OUTPUT], false, buf);
    detect_copy_value(f, &v[PL_TF_ERROR], false, buf);
    detect_copy_value(f, &v[PL_TF_SPANS], true, buf);
    detect_copy_value(f, &v[PL_TF_EVENTS], true, buf);
    detect_copy_value(f, &v[PL_TF_TAGS], true, buf);
    detect_copy_value(f, &v[PL_TF_METADATA], true, buf);
    detect_copy_value(f, &v[PL_TF_LATENCY_MS], false, buf);
    detect_copy_value(f, &v[PL_TF_COST], false, buf);
    pl_pg_copy_text(f, eval, false);
    detect_copy_value(f, &v[PL_TF_EVAL_SCORES], true, buf);
    detect_copy_value(f, &e->t.prompt_name, false, buf);
    detect_copy_value(f, &e->t.prompt_version, false, buf);
    pl_pg_copy_text(f, e->received_at, false);
    pl_pg_copy_text(f, e->received_at, false);
    char version[24];
    snprintf(version, sizeof(version), "%lld", e->rules_version);
    pl_pg_copy_text(f, version, true);
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
    f->tag = e->index;
    f->tenant_id = e->tenant_id;
    f->project_id = e->project_id;
    f->trace_id = e->t.id;
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
                                "SELECT project_id, metric_name, evaluator_type, config::text,"
                                " rules_version FROM eval_rules"
                                " WHERE project_id = ANY($1::uuid[]) AND enabled"
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
            rules[k].version = pl_pg_getll(res, i, 4);
            k++;
        }
        json_object_put(cfg);
    }
    PQclear(res);
    *out = rules;
    *nout = k;
    return rules ? 0 : -1;
}

/* Scratch space for evaluating one trace at a time. */
struct detect_scratch {
    struct pl_text_buf output, error, span_error, misc;
    FILE *eval; /* the eval column's JSON text */
    char *eval_text;
    size_t eval_len;
    int64_t trace_budget_us; /* 0: none */
    struct pl_eval_ledger *ledger;
    /* what the budgets did to the batch, counted once it is stored */
    size_t over_trace, over_tenant, rules_skipped;
};

/* Writes s as a JSON string. */
static void detect_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const char *c = s; *c;) {
        size_t run = strcspn(c, "\"\\\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f"
                                "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f");
        fwrite(c, 1, run, f);
        c += run;
        if (*c) {
            if (*c == '"' || *c == '\\')
                fprintf(f, "\\%c", *c);
            else
                fprintf(f, "\\u%04x", (unsigned char)*c);
            c++;
        }
    }
    fputc('"', f);
}

/* Evaluates one trace: writes its eval JSON text to sc->eval and appends its failures. A
 * backfill's re-evaluation (e->reevaluate) runs only the rules changed since the stored one
 * and leaves the trace's own error, clustered when it was stored, alone. */
static bool detect_evaluate(const struct detect_entry *e, const struct detect_rule *rules,
                            int nrules, struct detect_scratch *sc, struct detect_failures *failures)
{
    const struct pl_json_value *v = e->t.f;
    const char *error = pl_json_value_text(&v[PL_TF_ERROR], &sc->error);
    const char *output = pl_json_value_text(&v[PL_TF_OUTPUT], &sc->output);
    const char *scores_text = pl_json_value_text(&v[PL_TF_EVAL_SCORES], &sc->misc);
    struct pl_json_value span_error = {.kind = PL_JSON_STRING, .str = e->t.first_span_error};
    const char *first_span_error =
        e->t.span_errors > 0 ? pl_json_value_text(&span_error, &sc->span_error) : NULL;
    /* NULL for a value that is there: no memory to decode it; the batch is retried. */
    if ((!error && v[PL_TF_ERROR].kind == PL_JSON_STRING) ||
        (!output && v[PL_TF_OUTPUT].kind > PL_JSON_NULL) ||
        (!scores_text && v[PL_TF_EVAL_SCORES].kind == PL_JSON_OBJECT) ||
        (!first_span_error && e->t.span_errors > 0))
        return false;
    const char *first = error && *error ? error : first_span_error;
    bool ok = !first || e->reevaluate || detect_add_failure(failures, e, "error", first);
    json_object *scores = scores_text ? json_tokener_parse(scores_text) : NULL;
    struct pl_eval_input in = {
        .output = output,
        .error = error,
        .n_span_errors = e->t.span_errors,
        .eval_scores = scores,
    };
    rewind(sc->eval);
    fputc('{', sc->eval);
    bool first_rule = true;
    int64_t t0 = pl_eval_now_us();
    const struct pl_eval_budget budget = {
        .trace_deadline_us = sc->trace_budget_us ? t0 + sc->trace_budget_us : 0,
        .ledger = sc->ledger,
        .tenant_id = e->tenant_id,
    };
    enum pl_eval_skip flagged = PL_EVAL_RAN;
    for (int i = 0; i < nrules; i++) {
        if (strcmp(rules[i].project_id, e->project_id) != 0 ||
            (e->reevaluate && rules[i].version <= e->stored_version))
            continue;
        struct pl_eval_result r;
        pl_eval_rule_run_budgeted(rules[i].rule, &in, &budget, &r);
        if (!first_rule)
            fputc(',', sc->eval);
        first_rule = false;
        detect_json_string(sc->eval, rules[i].metric_name);
        /* A rule a budget skipped was not judged: passed is null (neither a pass nor a
         * failure, so no cluster and no remediation), "skipped" names the budget. */
        if (r.skipped != PL_EVAL_RAN) {
            fprintf(sc->eval, ":{\"passed\":null,\"skipped\":\"%s\",\"feedback\":",
                    r.skipped == PL_EVAL_SKIP_TENANT ? "tenant_budget" : "trace_budget");
            if (flagged == PL_EVAL_RAN)
                flagged = r.skipped;
            sc->rules_skipped++;
        } else {
            fprintf(sc->eval, ":{\"passed\":%s,\"feedback\":", r.passed ? "true" : "false");
        }
        detect_json_string(sc->eval, r.feedback);
        fputc('}', sc->eval);
        if (!r.passed && r.skipped == PL_EVAL_RAN) {
            char type[160];
            snprintf(type, sizeof(type), "rule:%s", rules[i].metric_name);
            ok = ok && detect_add_failure(failures, e, type, r.feedback);
        }
    }
    fputc('}', sc->eval);
    fputc('\0', sc->eval);
    fflush(sc->eval);
    json_object_put(scores);
    if (flagged == PL_EVAL_SKIP_TRACE)
        sc->over_trace++;
    else if (flagged == PL_EVAL_SKIP_TENANT)
        sc->over_tenant++;
    return ok;
}

/* Marks the entries whose project is not the tenant's as dead letters. */
static int detect_check_projects(PGconn *conn, struct detect_entry *es, size_t n,
                                 const char *projects_array, struct pl_pg_error *err)
{
    const char *p[1] = {projects_array};
    PGresult *res = pl_pg_query(
        conn, "SELECT id, tenant_id, eval_rules_version FROM projects WHERE id = ANY($1::uuid[])",
        1, p, err);
    if (!res)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!es[i].valid)
            continue;
        bool ok = false;
        for (int r = 0; r < PQntuples(res) && !ok; r++)
            if ((ok = strcmp(PQgetvalue(res, r, 0), es[i].project_id) == 0 &&
                      strcmp(PQgetvalue(res, r, 1), es[i].tenant_id) == 0))
                es[i].rules_version = pl_pg_getll(res, r, 2);
        if (!ok) {
            es[i].item->result = PL_HANDLE_DLQ;
            snprintf(es[i].item->reason, sizeof(es[i].item->reason),
                     "project %s does not exist for tenant %s", es[i].project_id, es[i].tenant_id);
            es[i].valid = false;
        }
    }
    PQclear(res);
    return 0;
}

/* Marks the valid entries whose trace is already stored: a replay after a crash or a
 * rebalance. Their first stored evaluation wins (the store keeps the first row), so they are
 * not evaluated again: evaluation under time budgets need not come out the same twice, and
 * their failures (clusters, control events) must agree with the stored row. */
static int detect_mark_stored(PGconn *conn, struct detect_entry *es, size_t n,
                              struct pl_pg_error *err)
{
    const char **projects = calloc(n ? n : 1, sizeof(char *));
    const char **ids = calloc(n ? n : 1, sizeof(char *));
    size_t *index = calloc(n ? n : 1, sizeof(size_t));
    char *pa = NULL, *ia = NULL;
    int rc = -1;
    size_t k = 0;
    if (!projects || !ids || !index)
        goto oom;
    for (size_t i = 0; i < n; i++)
        if (es[i].valid) {
            projects[k] = es[i].project_id;
            ids[k] = es[i].t.id;
            index[k++] = i;
        }
    if (!(pa = pl_pg_text_array(projects, k)) || !(ia = pl_pg_text_array(ids, k)))
        goto oom;
    const char *p[2] = {pa, ia};
    PGresult *res = pl_pg_query(conn,
                                "SELECT u.i, t.eval_rules_version"
                                " FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY"
                                " AS u(project_id, id, i) JOIN traces t"
                                " ON t.project_id = u.project_id AND t.id = u.id COLLATE \"C\"",
                                2, p, err);
    if (res) {
        for (int r = 0; r < PQntuples(res); r++) {
            long long i = pl_pg_getll(res, r, 0);
            if (i >= 1 && (size_t)i <= k) {
                es[index[i - 1]].stored_before = true;
                es[index[i - 1]].stored_version = pl_pg_getll(res, r, 1);
            }
        }
        PQclear(res);
        rc = 0;
    }
    goto out;
oom:
    snprintf(err->message, sizeof(err->message), "out of memory");
    err->sqlstate[0] = '\0';
out:
    free(pa);
    free(ia);
    free(projects);
    free(ids);
    free(index);
    return rc;
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
        if (!es[i].valid)
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
    size_t *row_off; /* entry i's COPY row is rows[row_off[i], row_off[i + 1]) (maybe empty) */
    size_t stored;   /* traces in rows */
    size_t over_trace, over_tenant, rules_skipped; /* see detect_scratch */
    char *updates; /* a backfill's re-evaluated traces: [{p, id, v, eval}] (NULL: none) */
    size_t updates_len, reevaluated;
    int64_t t0, t_prepared;
};

/* Appends a re-evaluated trace {p, id, v, eval} to the batch's updates (opened on the first);
 * false when out of memory. */
static bool detect_add_update(FILE **updates, struct detect_state *st, const struct detect_entry *e,
                              const char *eval)
{
    if (!*updates) {
        if (!(*updates = open_memstream(&st->updates, &st->updates_len)))
            return false;
        fputc('[', *updates);
    } else {
        fputc(',', *updates);
    }
    fprintf(*updates, "{\"p\":\"%s\",\"v\":%lld,\"id\":", e->project_id, e->rules_version);
    detect_json_string(*updates, e->t.id);
    fprintf(*updates, ",\"eval\":%s}", eval);
    st->reevaluated++;
    return !ferror(*updates);
}

void detect_release(void *p)
{
    struct detect_state *st = p;
    if (!st)
        return;
    free(st->es);
    free(st->rows);
    free(st->row_off);
    free(st->failures.items);
    free(st->updates);
    free(st);
}

/* Parses, checks and evaluates a batch (reads only): everything but the writes. */
void *detect_prepare(struct pl_service *svc, struct pl_worker_item *items, size_t n, void *arg)
{
    const struct detect_context *ctx = arg;
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
    FILE *updates = NULL; /* a backfill's re-evaluations, stored apart from the rows */
    struct pl_pg_error err;
    struct detect_scratch sc = {
        .trace_budget_us = (int64_t)svc->cfg.eval_trace_budget_ms * 1000,
        .ledger = ctx->ledger,
    };
    if (!(st->es = calloc(n, sizeof(*st->es))) ||
        !(st->row_off = calloc(n + 1, sizeof(*st->row_off))) || !copy)
        goto out;
    struct detect_entry *es = st->es;
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        es[i].index = i;
        /* a backfill leaves what lies past its range to the live group */
        if (ctx->backfill &&
            pl_backfill_past_end(ctx->backfill, items[i].msg->partition, items[i].msg->offset))
            items[i].result = PL_HANDLED;
        else if (detect_parse(&items[i], &es[i]))
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
        detect_mark_stored(conn, es, n, &err) != 0 ||
        detect_load_rules(conn, projects, &rules, &nrules, &err) != 0) {
        pl_warn("detector: database: %s", err.message);
        goto out;
    }
    if (!(sc.eval = open_memstream(&sc.eval_text, &sc.eval_len)))
        goto out;
    /* Test hook: rows of traces whose id ends in "refuse-me" get a value PostgreSQL refuses. */
    bool refuse = pl_failpoint_armed("detector_refused_row");
    for (size_t i = 0; i < n; i++) {
        fflush(copy);
        st->row_off[i] = st->rows_len;
        if (!es[i].valid)
            continue;
        /* A stored trace's row still goes to the store (which keeps the stored one), so a
         * replay takes the same path as before; it is just not evaluated again. */
        es[i].reevaluate =
            ctx->backfill && es[i].stored_before && es[i].stored_version < es[i].rules_version;
        if ((!es[i].stored_before || es[i].reevaluate) &&
            !detect_evaluate(&es[i], rules, nrules, &sc, &st->failures)) {
            pl_warn("detector: out of memory evaluating a batch");
            goto out;
        }
        if (es[i].reevaluate && !detect_add_update(&updates, st, &es[i], sc.eval_text)) {
            pl_warn("detector: out of memory evaluating a batch");
            goto out;
        }
        size_t idlen = strlen(es[i].t.id);
        if (refuse && idlen >= 9 && strcmp(es[i].t.id + idlen - 9, "refuse-me") == 0)
            es[i].t.f[PL_TF_LATENCY_MS] = (struct pl_json_value){
                .kind = PL_JSON_NUMBER, .text = "not-a-number", .text_len = 12};
        detect_copy_row(copy, &es[i], es[i].stored_before ? "{}" : sc.eval_text, &sc.misc);
        st->stored++;
    }
    fflush(copy);
    st->row_off[n] = st->rows_len;
    if (updates) {
        fputc(']', updates);
        fclose(updates);
        updates = NULL;
    }
    st->over_trace = sc.over_trace;
    st->over_tenant = sc.over_tenant;
    st->rules_skipped = sc.rules_skipped;
    ok = true;
out:
    if (updates)
        fclose(updates);
    if (sc.eval)
        fclose(sc.eval);
    free(sc.eval_text);
    free(sc.output.p);
    free(sc.error.p);
    free(sc.span_error.p);
    free(sc.misc.p);
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

/* A backfill's re-evaluated traces get the new rules' results and the version they were
 * evaluated under; a trace another backfill raised meanwhile is left alone. */
static int detect_store_updates(PGconn *conn, const char *updates, struct pl_pg_error *err)
{
    if (!updates)
        return 0;
    const char *p[1] = {updates};
    return pl_pg_exec(conn,
                      "UPDATE traces t SET eval = coalesce(t.eval, '{}') || u.eval,"
                      " eval_rules_version = u.v"
                      " FROM jsonb_to_recordset($1::jsonb) AS u(p uuid, id text, v bigint,"
                      "   eval jsonb)"
                      " WHERE t.project_id = u.p AND t.id = u.id AND t.eval_rules_version < u.v",
                      1, p, err);
}

/* The failures to publish for the controller: a backfill's re-evaluations of stored traces
 * remediate nothing (their traffic is history), so theirs are left out. */
static size_t detect_live_failures(const struct detect_state *st,
                                   const struct pl_cluster_failure *failures, size_t n,
                                   struct pl_cluster_failure *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!st->es[failures[i].tag].reevaluate)
            out[k++] = failures[i];
    return k;
}

/* Stores rows, failures and a backfill's updates in one transaction: the number of threshold
 * events, or -1. */
static int detect_store_tx(struct pl_service *svc, const struct detect_state *st, const char *rows,
                           size_t rows_len, struct pl_cluster_failure *failures, size_t nfailures,
                           struct pl_pg_error *err)
{
    struct pl_cluster_failure *live = failures;
    size_t nlive = nfailures;
    if (st->reevaluated > 0 && nfailures > 0) {
        if (!(live = malloc(nfailures * sizeof(*live)))) {
            snprintf(err->message, sizeof(err->message), "out of memory");
            err->sqlstate[0] = '\0';
            return -1;
        }
        nlive = detect_live_failures(st, failures, nfailures, live);
    }
    PGconn *conn = pl_pg_acquire(svc->pg, err);
    int events = -1;
    if (!conn || pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0 ||
        (events = pl_cluster_store_batch(conn, rows, rows_len, failures, nfailures,
                                         PL_GROUPING_VERSION, svc->cfg.kafka_topic_clusters, err)) <
            0 ||
        detect_store_updates(conn, st->updates, err) != 0 ||
        pl_cluster_store_publish_failures(conn, live, nlive, svc->cfg.kafka_topic_failures, err) <
            0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0)
        events = -1;
    if (live != failures)
        free(live);
    if (conn)
        pl_pg_release(svc->pg, conn); /* rolls back what did not commit */
    return events;
}

/* A row PostgreSQL refused for its content (bad value, constraint, size), not a transient
 * failure: retrying the same batch would fail the same way forever. */
static bool detect_refused(const struct pl_pg_error *err)
{
    return strncmp(err->sqlstate, "22", 2) == 0 || strcmp(err->sqlstate, "23502") == 0 ||
           strcmp(err->sqlstate, "23514") == 0 || strcmp(err->sqlstate, "54000") == 0;
}

/*
 * Stores entries [lo, hi) of a batch whose whole store was refused: halves until the refused
 * trace is alone, dead-letters it with PostgreSQL's reason, and stores the rest (log2 of the
 * batch size transactions per refused trace). Returns the events written, or -1 (transient:
 * the batch is retried; what was stored is recognised then).
 */
static int detect_isolate(struct pl_service *svc, struct detect_state *st, size_t lo, size_t hi,
                          struct pl_pg_error *err)
{
    size_t from = st->row_off[lo], to = st->row_off[hi];
    if (from == to)
        return 0;
    struct pl_cluster_failure *part = NULL;
    size_t np = 0;
    for (size_t k = 0; k < st->failures.n; k++)
        np += st->failures.items[k].tag >= lo && st->failures.items[k].tag < hi;
    if (np && !(part = malloc(np * sizeof(*part)))) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        return -1;
    }
    np = 0;
    for (size_t k = 0; k < st->failures.n; k++)
        if (st->failures.items[k].tag >= lo && st->failures.items[k].tag < hi)
            part[np++] = st->failures.items[k];
    int events = detect_store_tx(svc, st, st->rows + from, to - from, part, np, err);
    free(part);
    if (events >= 0 || !detect_refused(err))
        return events;
    if (hi - lo == 1) {
        struct detect_entry *e = &st->es[lo];
        pl_warn("detector: PostgreSQL refused trace %s [%s]: %s", e->t.id, err->sqlstate,
                err->message);
        e->item->result = PL_HANDLE_DLQ;
        snprintf(e->item->reason, sizeof(e->item->reason), "PostgreSQL refused the trace: %.200s",
                 err->message);
        st->stored--;
        return 0;
    }
    size_t mid = lo + (hi - lo) / 2;
    int a = detect_isolate(svc, st, lo, mid, err);
    int b = a < 0 ? -1 : detect_isolate(svc, st, mid, hi, err);
    return b < 0 ? -1 : a + b;
}

/* Stores a prepared batch in one transaction. */
enum pl_handle_result detect_store(struct pl_service *svc, void *p, void *arg)
{
    (void)arg;
    static struct pl_metric *m_traces, *m_failures, *m_events, *m_over_trace, *m_over_tenant,
        *m_skipped;
    if (!m_traces) {
        static const char over_help[] = "Traces flagged because an evaluation budget skipped "
                                        "some of their rules, by the budget that did first";
        m_over_trace = pl_metric_counter("pl_detector_eval_budget_exceeded_total",
                                         "budget=\"trace\"", over_help);
        m_over_tenant = pl_metric_counter("pl_detector_eval_budget_exceeded_total",
                                          "budget=\"tenant\"", over_help);
        m_skipped = pl_metric_counter("pl_detector_eval_rules_skipped_total", NULL,
                                      "Rule runs skipped or cut short by an evaluation budget");
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
    if (st->reevaluated > 0)
        pl_info("detector: backfill: %zu stored trace(s) re-evaluated under newer rules",
                st->reevaluated);
    int64_t t_store = pl_now_ms();
    struct pl_pg_error err;
    size_t nfailures = st->failures.n;
    int events =
        detect_store_tx(svc, st, st->rows, st->rows_len, st->failures.items, st->failures.n, &err);
    if (events < 0 && detect_refused(&err)) {
        pl_warn("detector: a batch of %zu was refused [%s]: %s; isolating the trace", st->stored,
                err.sqlstate, err.message);
        events = detect_isolate(svc, st, 0, st->n, &err);
    }
    if (events < 0) {
        pl_warn("detector: storing a batch of %zu failed [%s]: %s", st->stored, err.sqlstate,
                err.message);
        return PL_HANDLE_RETRY; /* the batch is redelivered */
    }
    pl_failpoint_crash("detector_after_commit"); /* crash-safety tests: before offsets */
    pl_debug("detector: batch of %zu: prepared in %lld ms, stored in %lld ms (%lld ms after it"
             " was prepared); %zu failures, %d events",
             st->stored, (long long)(st->t_prepared - st->t0), (long long)(pl_now_ms() - t_store),
             (long long)(t_store - st->t_prepared), nfailures, events);
    pl_metric_add(m_traces, (int64_t)st->stored);
    pl_metric_add(m_over_trace, (int64_t)st->over_trace);
    pl_metric_add(m_over_tenant, (int64_t)st->over_tenant);
    pl_metric_add(m_skipped, (int64_t)st->rules_skipped);
    pl_metric_add(m_failures, (int64_t)nfailures);
    pl_metric_add(m_events, events);
    if (events > 0)
        pl_info("detector: %d cluster(s) reached their threshold", events);
    return PL_HANDLED;
}
