#include "worker.h"

#include "log.h"
#include "metrics.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
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
    char labels[48];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    return pl_metric_counter("pl_worker_messages_total", labels,
                             "Messages handled by this stage, by result");
}

int pl_worker_run(struct pl_service *svc, const char *const *topics, pl_worker_handler handler)
{
    char err[512];
    struct pl_consumer *c = pl_consumer_new(svc->cfg.kafka_brokers, svc->cfg.kafka_group_id, topics,
                                            svc->cfg.kafka_session_timeout_ms, err, sizeof(err));
    if (!c) {
        pl_error("consumer: %s", err);
        return -1;
    }
    pl_info("joined group %s", svc->cfg.kafka_group_id);
    struct pl_metric *m_ok = worker_counter("handled"), *m_dlq = worker_counter("dead_lettered"),
                     *m_retry = worker_counter("retried");
    int backoff = 100;
    while (pl_running) {
        rd_kafka_message_t *msg = pl_consumer_poll(c, 200);
        if (!msg)
            continue;
        char reason[512] = "";
        enum pl_handle_result r = handler(svc, msg, reason, sizeof(reason));
        if (r == PL_HANDLE_DLQ) {
            pl_warn("dead-lettering %s[%d]@%lld: %s", rd_kafka_topic_name(msg->rkt), msg->partition,
                    (long long)msg->offset, reason);
            if (pl_kafka_dlq_send(svc->producer, svc->cfg.kafka_topic_dlq, msg, reason, err,
                                  sizeof(err)) != 0) {
                pl_warn("dead-letter failed, will retry: %s", err);
                r = PL_HANDLE_RETRY;
            } else {
                pl_metric_add(m_dlq, 1);
            }
        }
        if (r == PL_HANDLE_RETRY) {
            pl_metric_add(m_retry, 1);
            pl_consumer_rewind(c, msg);
            rd_kafka_message_destroy(msg);
            pl_sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        if (r == PL_HANDLED)
            pl_metric_add(m_ok, 1);
        backoff = 100;
        pl_consumer_store(c, msg);
        rd_kafka_message_destroy(msg);
    }
    pl_info("stopping: committing offsets and leaving group %s", svc->cfg.kafka_group_id);
    pl_consumer_close(c);
    return 0;
}
