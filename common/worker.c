#include "worker.h"

#include "log.h"
#include "metrics.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_object *pl_worker_parse_event(const rd_kafka_message_t *msg, const char *const *uuid_fields,
                                   char *reason, size_t reasonsz)
{
    if (!msg->payload || msg->len == 0) {
        snprintf(reason, reasonsz, "empty message");
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, msg->payload, (int)msg->len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj || jerr != json_tokener_success || used != msg->len) {
        snprintf(reason, reasonsz, "payload is not valid JSON: %s",
                 obj ? "trailing data" : json_tokener_error_desc(jerr));
        json_object_put(obj);
        return NULL;
    }
    json_object *v;
    if (!json_object_is_type(obj, json_type_object)) {
        snprintf(reason, reasonsz, "payload is not a JSON object");
        goto bad;
    }
    if (!json_object_object_get_ex(obj, "schema_version", &v) ||
        !json_object_is_type(v, json_type_int) || json_object_get_int(v) != 1) {
        snprintf(reason, reasonsz, "schema_version must be 1");
        goto bad;
    }
    for (const char *const *f = uuid_fields; *f; f++) {
        if (!json_object_object_get_ex(obj, *f, &v) || !json_object_is_type(v, json_type_string) ||
            !pl_uuid_valid(json_object_get_string(v))) {
            snprintf(reason, reasonsz, "%s must be a uuid string", *f);
            goto bad;
        }
    }
    return obj;
bad:
    json_object_put(obj);
    return NULL;
}

static struct pl_metric *worker_counter(const char *result)
{
    return pl_metric_result_counter("pl_worker_messages_total", result,
                                    "Messages handled by this stage, by result");
}

/* Rewinds every partition of the batch to its first message there (transient failure). */
static void worker_rewind(struct pl_consumer *c, struct pl_worker_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (items[j].msg->rkt == items[i].msg->rkt &&
                items[j].msg->partition == items[i].msg->partition)
                first = false;
        if (first)
            pl_consumer_rewind(c, items[i].msg);
    }
}

/* Collects up to max messages: waits for the first, then at most max_wait_ms more. */
static size_t worker_gather(struct pl_consumer *c, struct pl_worker_item *items, size_t max,
                            int max_wait_ms)
{
    size_t n = 0;
    rd_kafka_message_t *m = pl_consumer_poll(c, 200);
    if (!m)
        return 0;
    int64_t deadline = pl_now_ms() + max_wait_ms;
    for (;;) {
        items[n] = (struct pl_worker_item){.msg = m, .result = PL_HANDLED};
        if (++n == max || !pl_running)
            break;
        int64_t left = deadline - pl_now_ms();
        if (left <= 0 || !(m = pl_consumer_poll(c, (int)left)))
            break;
    }
    return n;
}

int pl_worker_run_batch(struct pl_service *svc, const char *const *topics,
                        pl_worker_batch_handler handler, void *arg, size_t max_batch,
                        int max_wait_ms)
{
    char err[512];
    struct pl_consumer *c = pl_consumer_new(svc->cfg.kafka_brokers, svc->cfg.kafka_group_id, topics,
                                            svc->cfg.kafka_session_timeout_ms, err, sizeof(err));
    if (!c) {
        pl_error("consumer: %s", err);
        return -1;
    }
    struct pl_worker_item *items = calloc(max_batch, sizeof(*items));
    if (!items) {
        pl_consumer_close(c);
        return -1;
    }
    pl_info("joined group %s", svc->cfg.kafka_group_id);
    struct pl_metric *m_ok = worker_counter("handled"), *m_dlq = worker_counter("dead_lettered"),
                     *m_retry = worker_counter("retried");
    int backoff = 100;
    while (pl_running) {
        size_t n = worker_gather(c, items, max_batch, max_wait_ms);
        if (n == 0)
            continue;
        enum pl_handle_result r = handler(svc, items, n, arg);
        for (size_t i = 0; r != PL_HANDLE_RETRY && i < n; i++) {
            if (items[i].result != PL_HANDLE_DLQ)
                continue;
            const rd_kafka_message_t *msg = items[i].msg;
            pl_warn("dead-lettering %s[%d]@%lld: %s", rd_kafka_topic_name(msg->rkt), msg->partition,
                    (long long)msg->offset, items[i].reason);
            if (pl_kafka_dlq_send(svc->producer, svc->cfg.kafka_topic_dlq, msg, items[i].reason,
                                  err, sizeof(err)) != 0) {
                /* The batch's database work is idempotent: doing it again is harmless. */
                pl_warn("dead-letter failed, will retry: %s", err);
                r = PL_HANDLE_RETRY;
            }
        }
        if (r == PL_HANDLE_RETRY) {
            pl_warn("retrying %zu message(s) in %d ms: %s", n, backoff,
                    items[0].reason[0] ? items[0].reason : "transient failure");
            pl_metric_add(m_retry, (int64_t)n);
            worker_rewind(c, items, n);
            pl_sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        } else {
            backoff = 100;
            for (size_t i = 0; i < n; i++) {
                pl_metric_add(items[i].result == PL_HANDLE_DLQ ? m_dlq : m_ok, 1);
                pl_consumer_store(c, items[i].msg);
            }
        }
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy((rd_kafka_message_t *)items[i].msg);
    }
    pl_info("stopping: committing offsets and leaving group %s", svc->cfg.kafka_group_id);
    free(items);
    pl_consumer_close(c);
    return 0;
}

/* Runs a one-message handler through the batch loop. */
static enum pl_handle_result worker_single(struct pl_service *svc, struct pl_worker_item *items,
                                           size_t n, void *arg)
{
    pl_worker_handler handler = *(pl_worker_handler *)arg;
    (void)n;
    enum pl_handle_result r = handler(svc, items[0].msg, items[0].reason, sizeof(items[0].reason));
    items[0].result = r == PL_HANDLE_DLQ ? PL_HANDLE_DLQ : PL_HANDLED;
    return r;
}

int pl_worker_run(struct pl_service *svc, const char *const *topics, pl_worker_handler handler)
{
    return pl_worker_run_batch(svc, topics, worker_single, &handler, 1, 0);
}
