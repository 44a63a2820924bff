/* Kafka producer and consumer wrappers with promptloop's delivery semantics. */
#include "kafka.h"

#include "log.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pl_producer {
    rd_kafka_t *rk;
    pthread_t poller;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t delivered;
};

/* Tracks one pl_producer_send_batch call; messages point at it through their opaque. */
struct delivery_batch {
    struct pl_producer *producer;
    size_t pending;
};

struct delivery_slot {
    struct delivery_batch *batch;
    struct pl_kafka_msg *msg;
};

static void producer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct delivery_slot *slot = m->_private;
    if (!slot)
        return;
    struct pl_producer *p = slot->batch->producer;
    pthread_mutex_lock(&p->lock);
    slot->msg->result = m->err;
    slot->msg->out_partition = m->partition;
    slot->msg->out_offset = m->offset;
    slot->batch->pending--;
    pthread_cond_broadcast(&p->delivered);
    pthread_mutex_unlock(&p->lock);
}

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    pl_log(level <= 3   ? PL_LOG_ERROR
           : level <= 5 ? PL_LOG_WARN
                        : PL_LOG_DEBUG,
           "kafka %s: %s", fac, buf);
}

static void *producer_poll_thread(void *arg)
{
    struct pl_producer *p = arg;
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 50);
    return NULL;
}

static int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                          size_t errsz)
{
    if (rd_kafka_conf_set(conf, name, value, err, errsz) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

struct pl_producer *pl_producer_new(const char *brokers, int delivery_timeout_ms, char *err,
                                    size_t errsz)
{
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%d", delivery_timeout_ms);
    struct pl_producer *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, err, errsz) ||
        kafka_conf_set(conf, "enable.idempotence", "true", err, errsz) ||
        kafka_conf_set(conf, "acks", "all", err, errsz) ||
        kafka_conf_set(conf, "linger.ms", "2", err, errsz) ||
        /* Small request/acknowledge exchanges: Nagle + delayed ACK would add ~40 ms each. */
        kafka_conf_set(conf, "socket.nagle.disable", "true", err, errsz) ||
        kafka_conf_set(conf, "message.timeout.ms", timeout, err, errsz)) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, producer_dr_cb);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errsz);
    if (!p->rk) { /* conf is only consumed on success */
        rd_kafka_conf_destroy(conf);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->delivered, NULL);
    if (pthread_create(&p->poller, NULL, producer_poll_thread, p) != 0) {
        snprintf(err, errsz, "cannot start the delivery-report thread");
        rd_kafka_destroy(p->rk);
        free(p);
        return NULL;
    }
    return p;
}

void pl_producer_destroy(struct pl_producer *p, int timeout_ms)
{
    if (!p)
        return;
    rd_kafka_flush(p->rk, timeout_ms);
    atomic_store(&p->stop, true);
    pthread_join(p->poller, NULL);
    rd_kafka_destroy(p->rk);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->delivered);
    free(p);
}

rd_kafka_t *pl_producer_handle(struct pl_producer *p)
{
    return p->rk;
}

int pl_producer_send_batch(struct pl_producer *p, struct pl_kafka_msg *msgs, size_t n)
{
    struct delivery_batch batch = {p, 0};
    struct delivery_slot *slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots) {
        for (size_t i = 0; i < n; i++)
            msgs[i].result = RD_KAFKA_RESP_ERR__FAIL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct pl_kafka_msg *m = &msgs[i];
        slots[i].batch = &batch;
        slots[i].msg = m;
        m->result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        pthread_mutex_lock(&p->lock);
        batch.pending++;
        pthread_mutex_unlock(&p->lock);
        rd_kafka_resp_err_t e;
        for (;;) {
            /* The headers pass to librdkafka only when producev succeeds. */
            rd_kafka_headers_t *hdrs = NULL;
            if (m->event_id) {
                hdrs = rd_kafka_headers_new(1);
                rd_kafka_header_add(hdrs, "event_id", -1, m->event_id, -1);
            }
            e = rd_kafka_producev(
                p->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_PARTITION(m->partition),
                RD_KAFKA_V_KEY(m->key, m->key_len),
                RD_KAFKA_V_VALUE((void *)m->value, m->value_len),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                RD_KAFKA_V_OPAQUE(&slots[i]), RD_KAFKA_V_END);
            if (e && hdrs)
                rd_kafka_headers_destroy(hdrs);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(p->rk, 10); /* local queue full: let deliveries drain */
        }
        if (e) {
            pthread_mutex_lock(&p->lock);
            batch.pending--;
            m->result = e;
            pthread_mutex_unlock(&p->lock);
        }
    }
    /* librdkafka reports every accepted message within message.timeout.ms, so this ends. */
    pthread_mutex_lock(&p->lock);
    while (batch.pending > 0)
        pthread_cond_wait(&p->delivered, &p->lock);
    pthread_mutex_unlock(&p->lock);
    free(slots);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].result)
            rc = -1;
    return rc;
}

int pl_producer_send(struct pl_producer *p, struct pl_kafka_msg *msg, char *err, size_t errsz)
{
    if (pl_producer_send_batch(p, msg, 1) != 0) {
        snprintf(err, errsz, "delivery to %s failed: %s", msg->topic,
                 rd_kafka_err2str(msg->result));
        return -1;
    }
    return 0;
}

bool pl_kafka_reachable(rd_kafka_t *rk, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    bool ok = md->broker_cnt > 0;
    rd_kafka_metadata_destroy(md);
    return ok;
}

int pl_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return -1;
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

/* ---- consumer ---- */

struct pl_consumer {
    rd_kafka_t *rk;
};

/* Eager protocol (range assignor): take what we are given, drop all on revoke. librdkafka
 * tries to commit stored offsets before the revoke completes; when that commit fails (a
 * rebalance in progress), the new owner is delivered again what was handled since the last
 * commit, which the idempotent handlers take as a replay. */
static void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pl_info("partitions assigned: %d", parts->cnt);
        rd_kafka_assign(rk, parts);
    } else {
        pl_info("partitions revoked: %d", parts->cnt);
        rd_kafka_assign(rk, NULL);
    }
}

struct pl_consumer *pl_consumer_new(const char *brokers, const char *group,
                                    const char *const *topics, int session_timeout_ms, char *err,
                                    size_t errsz)
{
    char session[32];
    snprintf(session, sizeof(session), "%d", session_timeout_ms);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, err, errsz) ||
        kafka_conf_set(conf, "group.id", group, err, errsz) ||
        kafka_conf_set(conf, "enable.auto.commit", "true", err, errsz) ||
        kafka_conf_set(conf, "auto.commit.interval.ms", "500", err, errsz) ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errsz) ||
        kafka_conf_set(conf, "auto.offset.reset", "earliest", err, errsz) ||
        kafka_conf_set(conf, "partition.assignment.strategy", "range", err, errsz) ||
        kafka_conf_set(conf, "session.timeout.ms", session, err, errsz) ||
        kafka_conf_set(conf, "enable.partition.eof", "false", err, errsz) ||
        /* A fetch of an empty partition waits this long; a broker that does not answer as soon
         * as data arrives (librdkafka's mock cluster) would otherwise add up to 500 ms. */
        kafka_conf_set(conf, "fetch.wait.max.ms", "100", err, errsz)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    struct pl_consumer *c = calloc(1, sizeof(*c));
    if (!c) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errsz);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return NULL;
    }
    rd_kafka_poll_set_consumer(c->rk);
    int n = 0;
    while (topics[n])
        n++;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        snprintf(err, errsz, "subscribe: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
        free(c);
        return NULL;
    }
    return c;
}

rd_kafka_message_t *pl_consumer_poll(struct pl_consumer *c, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout_ms);
    if (!m)
        return NULL;
    if (m->err) {
        pl_warn("consumer: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return NULL;
    }
    return m;
}

int pl_consumer_store(struct pl_consumer *c, const rd_kafka_message_t *msg)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(msg->rkt), msg->partition)->offset =
        msg->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        /* The partition was revoked meanwhile: its next owner redelivers; handlers are
         * idempotent, so that is harmless. */
        pl_warn("offset store %s[%d]@%lld: %s", rd_kafka_topic_name(msg->rkt), msg->partition,
                (long long)msg->offset, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int pl_consumer_rewind(struct pl_consumer *c, const rd_kafka_message_t *msg)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(msg->rkt), msg->partition)->offset =
        msg->offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 5000);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        pl_warn("seek: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return 0;
}

void pl_consumer_close(struct pl_consumer *c)
{
    if (!c)
        return;
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
    if (e)
        pl_warn("consumer close: %s", rd_kafka_err2str(e));
    else
        pl_info("consumer closed and left its group");
    rd_kafka_destroy(c->rk);
    free(c);
}

rd_kafka_t *pl_consumer_handle(struct pl_consumer *c)
{
    return c->rk;
}

int pl_kafka_msg_event_id(const rd_kafka_message_t *msg, char *buf, size_t bufsz)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *val;
    size_t len;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, "event_id", &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        !val || len >= bufsz)
        return -1;
    memcpy(buf, val, len);
    buf[len] = '\0';
    return 0;
}

int pl_kafka_dlq_send(struct pl_producer *p, const char *dlq_topic, const rd_kafka_message_t *msg,
                      const char *reason, char *err, size_t errsz)
{
    int rc = -1;
    size_t b64cap = 4 * ((msg->len + 2) / 3) + 1;
    unsigned char *b64 = malloc(b64cap);
    if (!b64) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    EVP_EncodeBlock(b64, msg->payload ? msg->payload : (void *)"", (int)msg->len);

    char at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);

    json_object *rec = json_object_new_object();
    json_object_object_add(rec, "source_topic",
                           json_object_new_string(rd_kafka_topic_name(msg->rkt)));
    json_object_object_add(rec, "partition", json_object_new_int(msg->partition));
    json_object_object_add(rec, "offset", json_object_new_int64(msg->offset));
    json_object_object_add(rec, "error", json_object_new_string(reason));
    json_object_object_add(rec, "payload_base64", json_object_new_string((char *)b64));
    json_object_object_add(rec, "at", json_object_new_string(at));
    const char *text = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    struct pl_kafka_msg out = {
        .topic = dlq_topic,
        .partition = RD_KAFKA_PARTITION_UA,
        .key = msg->key,
        .key_len = msg->key_len,
        .value = text,
        .value_len = strlen(text),
    };
    rc = pl_producer_send(p, &out, err, errsz);
    json_object_put(rec);
    free(b64);
    return rc;
}
