/* Trace ingest: validate, claim the ids (duplicate detection), hand the traces to Kafka, and
 * answer only after the broker acknowledged them (SPEC 6). */
#include "api.h"

#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "trace.h"
#include "util.h"
#include "trace_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INGEST_BATCH_MAX 100

static void ingest_now(char *buf, size_t bufsz)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, bufsz - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/*
 * Claims the ids and produces the new traces in one database transaction: the claim commits
 * only when the broker acknowledged every new trace, so a trace is either accepted (and in
 * Kafka) or not recorded at all — a client retry after a 503 is never taken for a duplicate.
 * All traces share one project (checked by the caller). Fills is_new. Sets res on failure.
 */
static bool ingest_publish(struct pl_http_request *req, struct pl_http_response *res,
                           const struct pl_principal *who, const char *project_id,
                           json_object **traces, int n, bool *is_new, const char *received_at)
{
    struct pl_service *svc = req->user;
    const char *ids[INGEST_BATCH_MAX];
    for (int i = 0; i < n; i++)
        ids[i] = json_object_get_string(json_object_object_get(traces[i], "id"));
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
        payloads[nmsgs] = pl_trace_envelope(who->tenant_id, project_id, received_at, traces[i]);
        msgs[nmsgs] = (struct pl_kafka_msg){.topic = svc->cfg.kafka_topic_traces,
                                            .partition = RD_KAFKA_PARTITION_UA,
                                            .key = ids[i],
                                            .key_len = strlen(ids[i]),
                                            .value = payloads[nmsgs],
                                            .value_len = strlen(payloads[nmsgs])};
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

/* PostgreSQL's jsonb cannot hold \u0000, so such a trace could never be stored. */
static bool ingest_has_nul(struct pl_http_request *req, struct pl_http_response *res)
{
    if (!pl_bytes_contain(req->body, req->body_len, "\\u0000"))
        return false;
    pl_http_error(res, 422, "NUL characters (\\u0000) are not supported in traces");
    return true;
}

void api_ingest_one(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who) || ingest_has_nul(req, res))
        return;
    char why[512];
    json_object *trace = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!trace) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    int st = pl_trace_validate(trace, "", why, sizeof(why));
    if (st) {
        pl_http_error(res, st, "%s", why);
        json_object_put(trace);
        return;
    }
    char received_at[40];
    ingest_now(received_at, sizeof(received_at));
    const char *project = json_object_get_string(json_object_object_get(trace, "project_id"));
    bool is_new = false;
    if (ingest_publish(req, res, &who, project, &trace, 1, &is_new, received_at)) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_get(json_object_object_get(trace, "id")));
        if (is_new)
            json_object_object_add(o, "created_at", json_object_new_string(received_at));
        else
            json_object_object_add(o, "status", json_object_new_string("duplicate"));
        pl_http_json(res, is_new ? 201 : 200, o);
    }
    json_object_put(trace);
}

void api_ingest_batch(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who) || ingest_has_nul(req, res))
        return;
    char why[512];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    json_object *arr;
    if (json_object_object_length(body) != 1 || !json_object_object_get_ex(body, "traces", &arr) ||
        !json_object_is_type(arr, json_type_array)) {
        pl_http_error(res, 400, "body must be {\"traces\": [...]}");
        json_object_put(body);
        return;
    }
    size_t n = json_object_array_length(arr);
    if (n < 1 || n > INGEST_BATCH_MAX) {
        pl_http_error(res, 422, "traces must hold 1 to %d traces", INGEST_BATCH_MAX);
        json_object_put(body);
        return;
    }
    json_object *traces[INGEST_BATCH_MAX];
    const char *project = NULL;
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof(where), "traces[%zu]", i);
        traces[i] = json_object_array_get_idx(arr, i);
        int st = pl_trace_validate(traces[i], where, why, sizeof(why));
        if (st) {
            pl_http_error(res, st, "%s", why);
            json_object_put(body);
            return;
        }
        const char *p = json_object_get_string(json_object_object_get(traces[i], "project_id"));
        if (project && strcmp(project, p) != 0) {
            pl_http_error(res, 422, "%s.project_id: all traces of a batch belong to one project",
                          where);
            json_object_put(body);
            return;
        }
        project = p;
    }
    char received_at[40];
    ingest_now(received_at, sizeof(received_at));
    bool is_new[INGEST_BATCH_MAX];
    if (ingest_publish(req, res, &who, project, traces, (int)n, is_new, received_at)) {
        json_object *items = json_object_new_array();
        int created = 0;
        for (size_t i = 0; i < n; i++) {
            json_object *it = json_object_new_object();
            json_object_object_add(it, "id",
                                   json_object_get(json_object_object_get(traces[i], "id")));
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
    json_object_put(body);
}
