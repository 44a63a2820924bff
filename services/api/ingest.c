/* Trace ingest: validate, claim the ids (duplicate detection), hand the traces to Kafka, and
 * answer only after the broker acknowledged them (architecture §6). */
#include "api.h"

#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "trace.h"
#include "util.h"
#include "trace_store.h"
#include "json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INGEST_BATCH_MAX 100

/*
 * Claims the ids and produces the new traces in one database transaction: the claim commits
 * only when the broker acknowledged every new trace, so a trace is either accepted (and in
 * Kafka) or not recorded at all — a client retry after a 503 is never taken for a duplicate.
 * All traces share one project (checked by the caller). Fills is_new. Sets res on failure.
 */
static bool ingest_publish(struct pl_http_request *req, struct pl_http_response *res,
                           const struct pl_principal *who, const struct pl_trace_view *traces,
                           int n, bool *is_new, const char *received_at)
{
    struct pl_service *svc = req->user;
    const char *project_id = traces[0].project_id;
    const char *ids[INGEST_BATCH_MAX];
    for (int i = 0; i < n; i++)
        ids[i] = traces[i].id;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return false;
    struct pl_pg_error err;
    bool ok = false;
    struct pl_kafka_msg msgs[INGEST_BATCH_MAX];
    char *payloads[INGEST_BATCH_MAX] = {0};
    int nmsgs = 0;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, &err) != 0) {
        api_db_error(res, &err);
        goto out;
    }
    int64_t t0 = pl_now_ms();
    int claimed = pl_trace_store_claim(conn, who->tenant_id, project_id, ids, n, is_new, &err);
    if (claimed < 0) {
        api_db_error(res, &err);
        goto out;
    }
    if (claimed == 0) {
        pl_http_error(res, 404, "project %s not found", project_id);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (!is_new[i])
            continue;
        size_t len = 0;
        payloads[nmsgs] = pl_trace_envelope(who->tenant_id, received_at, &traces[i], &len);
        if (!payloads[nmsgs]) {
            pl_http_error(res, 503, "out of memory; nothing was accepted, retry");
            goto out;
        }
        msgs[nmsgs] = (struct pl_kafka_msg){.topic = svc->cfg.kafka_topic_traces,
                                            .partition = RD_KAFKA_PARTITION_UA,
                                            .key = ids[i],
                                            .key_len = strlen(ids[i]),
                                            .value = payloads[nmsgs],
                                            .value_len = len};
        nmsgs++;
    }
    int64_t t1 = pl_now_ms();
    if (nmsgs > 0 && pl_producer_send_batch(svc->producer, msgs, (size_t)nmsgs) != 0) {
        for (int k = 0; k < nmsgs; k++)
            if (msgs[k].result) {
                pl_warn("ingest: broker did not take trace %.*s: %s", (int)msgs[k].key_len,
                        msgs[k].key, rd_kafka_err2str(msgs[k].result));
                break;
            }
        pl_http_error(res, 503, "the event broker is unavailable; nothing was accepted, retry");
        snprintf(res->retry_after, sizeof(res->retry_after), "2");
        goto out;
    }
    int64_t t2 = pl_now_ms();
    if (pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0) {
        api_db_error(res, &err);
        goto out;
    }
    pl_debug("ingest: %d traces: claim+envelopes %lld ms, produce %lld ms, commit %lld ms", n,
             (long long)(t1 - t0), (long long)(t2 - t1), (long long)(pl_now_ms() - t2));
    pl_metric_add(pl_metric_counter("pl_ingest_traces_total", "result=\"accepted\"",
                                    "Traces received by the ingest API, by result"),
                  nmsgs);
    pl_metric_add(pl_metric_counter("pl_ingest_traces_total", "result=\"duplicate\"",
                                    "Traces received by the ingest API, by result"),
                  n - nmsgs);
    ok = true;
out:
    for (int k = 0; k < nmsgs; k++)
        free(payloads[k]);
    api_db_release(req, conn); /* rolls back an open transaction */
    return ok;
}

/* Fails the request with the scanner's syntax error. */
static void ingest_bad_json(struct pl_http_response *res, const struct pl_json_scan *s)
{
    /* PostgreSQL's jsonb cannot hold \u0000, so such a trace could never be stored. */
    if (s->nul)
        pl_http_error(res, 422, "NUL characters (\\u0000) are not supported in traces");
    else
        pl_http_error(res, 400, "request body is not valid JSON: %s", s->err);
}

/* The body must be a JSON object: its first byte (after whitespace) is '{'. */
static bool ingest_starts_object(struct pl_http_request *req, struct pl_http_response *res,
                                 struct pl_json_scan *s)
{
    pl_json_scan_init(s, req->body, req->body_len);
    if (pl_json_scan_ws(s) && *s->p == '{')
        return true;
    pl_http_error(res, 400, "request body must be a JSON object");
    return false;
}

void api_ingest_one(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    struct pl_json_scan s;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who) ||
        !ingest_starts_object(req, res, &s))
        return;
    struct pl_trace_view *t = malloc(sizeof(*t));
    if (!t) {
        pl_http_error(res, 503, "out of memory; retry");
        return;
    }
    char why[512];
    int st = pl_trace_scan(&s, "", t, why, sizeof(why));
    if (!st && !pl_json_scan_done(&s)) {
        st = 400;
        snprintf(why, sizeof(why), "request body has data after the JSON value");
    }
    if (st) {
        pl_http_error(res, st, "%s", why);
        free(t);
        return;
    }
    char received_at[40];
    pl_now_iso(received_at, sizeof(received_at));
    bool is_new = false;
    if (ingest_publish(req, res, &who, t, 1, &is_new, received_at)) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(t->id));
        if (is_new)
            json_object_object_add(o, "created_at", json_object_new_string(received_at));
        else
            json_object_object_add(o, "status", json_object_new_string("duplicate"));
        pl_http_json(res, is_new ? 201 : 200, o);
    }
    free(t);
}

/*
 * First pass over a batch body: its JSON syntax and its shape {"traces": [...]}, noting where
 * each trace starts. Returns the number of traces (more than INGEST_BATCH_MAX are counted, not
 * noted), or -1 with res filled.
 */
static long ingest_batch_shape(struct pl_http_response *res, struct pl_json_scan *s,
                               const char **starts)
{
    bool shape = true, seen = false;
    long n = 0;
    struct pl_json_str key;
    int r;
    pl_json_scan_enter(s, '{');
    for (size_t i = 0; (r = pl_json_scan_member(s, i, &key)) == 1; i++) {
        if (!pl_json_str_eq(&key, "traces") || seen || !pl_json_scan_ws(s) || *s->p != '[') {
            struct pl_json_value skipped;
            shape = false;
            if (!pl_json_scan_value(s, &skipped))
                break;
            continue;
        }
        seen = true;
        pl_json_scan_enter(s, '[');
        for (size_t k = 0; (r = pl_json_scan_item(s, k)) == 1; k++) {
            pl_json_scan_ws(s);
            if (n < INGEST_BATCH_MAX)
                starts[n] = s->p;
            n++;
            struct pl_json_value item;
            if (!pl_json_scan_value(s, &item)) {
                r = -1;
                break;
            }
        }
        if (r < 0)
            break;
    }
    if (r < 0 || s->err[0]) {
        ingest_bad_json(res, s);
        return -1;
    }
    if (!pl_json_scan_done(s)) {
        pl_http_error(res, 400, "request body has data after the JSON value");
        return -1;
    }
    if (!shape || !seen) {
        pl_http_error(res, 400, "body must be {\"traces\": [...]}");
        return -1;
    }
    if (n < 1 || n > INGEST_BATCH_MAX) {
        pl_http_error(res, 422, "traces must hold 1 to %d traces", INGEST_BATCH_MAX);
        return -1;
    }
    return n;
}

void api_ingest_batch(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    struct pl_json_scan s;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who) ||
        !ingest_starts_object(req, res, &s))
        return;
    const char *starts[INGEST_BATCH_MAX];
    long n = ingest_batch_shape(res, &s, starts);
    if (n < 0)
        return;
    struct pl_trace_view *traces = malloc((size_t)n * sizeof(*traces));
    if (!traces) {
        pl_http_error(res, 503, "out of memory; retry");
        return;
    }
    char why[512];
    for (long i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof(where), "traces[%ld]", i);
        pl_json_scan_init(&s, starts[i], (size_t)(req->body + req->body_len - starts[i]));
        int st = pl_trace_scan(&s, where, &traces[i], why, sizeof(why));
        if (st) {
            pl_http_error(res, st, "%s", why);
            free(traces);
            return;
        }
        if (strcmp(traces[i].project_id, traces[0].project_id) != 0) {
            pl_http_error(res, 422, "%s.project_id: all traces of a batch belong to one project",
                          where);
            free(traces);
            return;
        }
    }
    char received_at[40];
    pl_now_iso(received_at, sizeof(received_at));
    bool is_new[INGEST_BATCH_MAX];
    if (ingest_publish(req, res, &who, traces, (int)n, is_new, received_at)) {
        json_object *items = json_object_new_array_ext((int)n);
        int created = 0;
        for (long i = 0; i < n; i++) {
            json_object *it = json_object_new_object();
            json_object_object_add(it, "id", json_object_new_string(traces[i].id));
            json_object_object_add(it, "status",
                                   json_object_new_string(is_new[i] ? "created" : "duplicate"));
            json_object_array_add(items, it);
            created += is_new[i];
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "items", items);
        json_object_object_add(o, "created", json_object_new_int(created));
        json_object_object_add(o, "duplicates", json_object_new_int((int)n - created));
        json_object_object_add(o, "created_at", json_object_new_string(received_at));
        pl_http_json(res, created ? 201 : 200, o);
    }
    free(traces);
}
