/* The consume loop every stage runs. */
#include "worker.h"

#include "json_scan.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One tokener per thread, freed when the thread ends (stores run on short-lived threads): a
 * new one per message (a 1 KiB allocation among many small frees) made glibc consolidate its
 * free lists for every message. */
static pthread_key_t worker_tokener_key;
static pthread_once_t worker_tokener_once = PTHREAD_ONCE_INIT;

static void worker_tokener_free(void *tok)
{
    json_tokener_free(tok);
}

static void worker_tokener_key_create(void)
{
    pthread_key_create(&worker_tokener_key, worker_tokener_free);
}

static json_tokener *worker_tokener(void)
{
    pthread_once(&worker_tokener_once, worker_tokener_key_create);
    json_tokener *tok = pthread_getspecific(worker_tokener_key);
    /* An event may carry a trace as deep as ingest takes (PL_JSON_SCAN_MAX_DEPTH, counted
     * from the trace's top) inside its envelope, and json-c counts the innermost value as
     * one more level: its default of 32 dropped such traces from pl.traces. */
    if (!tok && (tok = json_tokener_new_ex(PL_JSON_SCAN_MAX_DEPTH + 2)) != NULL &&
        pthread_setspecific(worker_tokener_key, tok) != 0) {
        json_tokener_free(tok);
        tok = NULL;
    }
    return tok;
}

json_object *pl_worker_parse_event(const rd_kafka_message_t *msg, const char *const *uuid_fields,
                                   char *reason, size_t reasonsz)
{
    if (!msg->payload || msg->len == 0) {
        snprintf(reason, reasonsz, "empty message");
        return NULL;
    }
    json_tokener *tok = worker_tokener();
    if (!tok) {
        snprintf(reason, reasonsz, "out of memory");
        return NULL;
    }
    json_tokener_reset(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, msg->payload, (int)msg->len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
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
/* The first (or last) message of each partition the batch holds, into ends (n slots): O(n x
 * partitions), a batch spans few. Returns how many. */
static size_t worker_partition_ends(const struct pl_worker_item *items, size_t n, bool last,
                                    const rd_kafka_message_t **ends)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *m = items[i].msg;
        size_t j = 0;
        while (j < k && !(ends[j]->rkt == m->rkt && ends[j]->partition == m->partition))
            j++;
        if (j == k)
            ends[k++] = m;
        else if (last)
            ends[j] = m;
    }
    return k;
}

static void worker_rewind(struct pl_consumer *c, struct pl_worker_item *items, size_t n)
{
    const rd_kafka_message_t **firsts = malloc(n * sizeof(*firsts));
    if (!firsts) {
        for (size_t i = n; i-- > 0;) /* the earliest of each partition is sought last */
            pl_consumer_rewind(c, items[i].msg);
        return;
    }
    size_t k = worker_partition_ends(items, n, false, firsts);
    for (size_t i = 0; i < k; i++)
        pl_consumer_rewind(c, firsts[i]);
    free(firsts);
}

/* Marks a handled batch's messages processed: the last offset of each partition. */
static void worker_store_offsets(struct pl_consumer *c, struct pl_worker_item *items, size_t n)
{
    const rd_kafka_message_t **lasts = malloc(n * sizeof(*lasts));
    if (!lasts) {
        for (size_t i = 0; i < n; i++)
            pl_consumer_store(c, items[i].msg);
        return;
    }
    size_t k = worker_partition_ends(items, n, true, lasts);
    for (size_t i = 0; i < k; i++)
        pl_consumer_store(c, lasts[i]);
    free(lasts);
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

/* One gathered batch on its way through prepare and store. */
struct worker_batch {
    struct pl_worker_item *items;
    size_t n;
    void *state; /* from prepare; NULL: the batch is retried */
    enum pl_handle_result result;
    pthread_t thread;
    bool threaded; /* store runs on thread */
    bool storing;  /* stored but not settled */
    struct pl_service *svc;
    const struct pl_worker_stages *stages;
    void *arg;
};

static void *worker_store_thread(void *p)
{
    struct worker_batch *b = p;
    b->result = b->state ? b->stages->store(b->svc, b->state, b->arg) : PL_HANDLE_RETRY;
    return NULL;
}

/* Drops a batch's state and messages. */
static void worker_batch_clear(struct worker_batch *b)
{
    if (b->state && b->stages->release)
        b->stages->release(b->state);
    b->state = NULL;
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_message_destroy((rd_kafka_message_t *)b->items[i].msg);
    b->n = 0;
}

/* After a batch's store: dead-letters its bad items and stores its offsets. Returns false when
 * the batch must be delivered again (the caller rewinds it). */
static bool worker_settle(struct worker_batch *b, struct pl_consumer *c)
{
    struct pl_service *svc = b->svc;
    char err[512];
    enum pl_handle_result r = b->result;
    for (size_t i = 0; r != PL_HANDLE_RETRY && i < b->n; i++) {
        if (b->items[i].result != PL_HANDLE_DLQ)
            continue;
        const rd_kafka_message_t *msg = b->items[i].msg;
        pl_warn("dead-lettering %s[%d]@%lld: %s", rd_kafka_topic_name(msg->rkt), msg->partition,
                (long long)msg->offset, b->items[i].reason);
        if (pl_kafka_dlq_send(svc->producer, svc->cfg.kafka_topic_dlq, msg, b->items[i].reason, err,
                              sizeof(err)) != 0) {
            /* The batch's database work is idempotent: doing it again is harmless. */
            pl_warn("dead-letter failed, will retry: %s", err);
            r = PL_HANDLE_RETRY;
        }
    }
    if (r == PL_HANDLE_RETRY)
        return false;
    static struct pl_metric *m_ok, *m_dlq;
    if (!m_ok) {
        m_ok = worker_counter("handled");
        m_dlq = worker_counter("dead_lettered");
    }
    size_t dead = 0;
    for (size_t i = 0; i < b->n; i++)
        dead += b->items[i].result == PL_HANDLE_DLQ;
    pl_metric_add(m_dlq, (int64_t)dead);
    pl_metric_add(m_ok, (int64_t)(b->n - dead));
    worker_store_offsets(c, b->items, b->n);
    return true;
}

/* How often a consumer reports its lag; the watermarks it reads are the ones its fetches
 * brought back, so reporting costs no broker round trip. */
#define WORKER_LAG_EVERY_MS 5000

/* Sets m to the messages behind on the partitions this consumer holds: each partition's high
 * watermark minus its position (its low watermark before it has one). */
static void worker_report_lag(struct pl_consumer *c, struct pl_metric *m)
{
    rd_kafka_t *rk = pl_consumer_handle(c);
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    int64_t lag = 0;
    if (rd_kafka_position(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < parts->cnt; i++) {
            int64_t lo = 0, hi = 0;
            if (rd_kafka_get_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition,
                                               &lo, &hi) != 0 ||
                hi < 0)
                continue;
            int64_t at = parts->elems[i].offset >= 0 ? parts->elems[i].offset : lo;
            lag += hi > at ? hi - at : 0;
        }
    rd_kafka_topic_partition_list_destroy(parts);
    pl_metric_set(m, lag);
}

int pl_worker_run_stages(struct pl_service *svc, const char *const *topics,
                         const struct pl_worker_stages *stages, void *arg, size_t max_batch,
                         int max_wait_ms)
{
    char err[512];
    struct pl_consumer *c = pl_consumer_new(svc->cfg.kafka_brokers, svc->cfg.kafka_group_id, topics,
                                            svc->cfg.kafka_session_timeout_ms, err, sizeof(err));
    if (!c) {
        pl_error("consumer: %s", err);
        return -1;
    }
    struct worker_batch batches[2];
    for (int i = 0; i < 2; i++)
        batches[i] =
            (struct worker_batch){.items = calloc(max_batch, sizeof(struct pl_worker_item)),
                                  .svc = svc,
                                  .stages = stages,
                                  .arg = arg};
    if (!batches[0].items || !batches[1].items) {
        free(batches[0].items);
        free(batches[1].items);
        pl_consumer_close(c);
        return -1;
    }
    pl_info("joined group %s", svc->cfg.kafka_group_id);
    struct pl_metric *m_retry = worker_counter("retried");
    char labels[192];
    snprintf(labels, sizeof(labels), "group=\"%s\"", svc->cfg.kafka_group_id);
    struct pl_metric *m_lag = pl_metric_gauge(
        "pl_consumer_lag", labels,
        "Messages behind the end of the partitions this consumer holds (alert when it grows)");
    int64_t lag_at = 0;
    struct worker_batch *stored = &batches[0], *next = &batches[1];
    int backoff = 100;
    /* While one batch is being stored (its own thread), the next is gathered and prepared;
     * batches are stored one after the other, in order, and settled in that order. */
    while (pl_running || stored->storing) {
        if (pl_now_ms() - lag_at >= WORKER_LAG_EVERY_MS) {
            worker_report_lag(c, m_lag);
            lag_at = pl_now_ms();
        }
        next->n = pl_running ? worker_gather(c, next->items, max_batch, max_wait_ms) : 0;
        if (next->n > 0)
            next->state = stages->prepare(svc, next->items, next->n, arg);
        struct worker_batch *done = NULL;
        if (stored->storing) {
            if (stored->threaded)
                pthread_join(stored->thread, NULL);
            stored->storing = false;
            done = stored;
            if (!worker_settle(stored, c)) {
                pl_warn("retrying %zu message(s) in %d ms: %s", stored->n + next->n, backoff,
                        stored->items[0].reason[0] ? stored->items[0].reason : "transient failure");
                pl_metric_add(m_retry, (int64_t)(stored->n + next->n));
                /* The next batch follows the stored one in its partitions: rewinding the
                 * stored batch last puts shared partitions back to its (earlier) offsets. */
                worker_rewind(c, next->items, next->n);
                worker_rewind(c, stored->items, stored->n);
                worker_batch_clear(next);
                pl_sleep_ms(backoff);
                backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            } else {
                backoff = 100;
            }
        }
        if (next->n > 0) {
            next->threaded = pthread_create(&next->thread, NULL, worker_store_thread, next) == 0;
            if (!next->threaded)
                worker_store_thread(next); /* no thread to spare: store on this one */
            next->storing = true;
        }
        if (done) /* freed once the next store runs: off its critical path */
            worker_batch_clear(done);
        if (next->n > 0) {
            struct worker_batch *t = stored;
            stored = next;
            next = t;
        }
    }
    pl_info("stopping: committing offsets and leaving group %s", svc->cfg.kafka_group_id);
    free(batches[0].items);
    free(batches[1].items);
    pl_consumer_close(c);
    return 0;
}

/* A one-phase batch handler as stages: the whole work runs in store. */
struct worker_plain {
    pl_worker_batch_handler handler;
    void *arg;
    struct pl_worker_item *items;
    size_t n;
};

static void *worker_plain_prepare(struct pl_service *svc, struct pl_worker_item *items, size_t n,
                                  void *arg)
{
    (void)svc;
    struct worker_plain *p = malloc(sizeof(*p));
    if (p)
        *p = (struct worker_plain){((struct worker_plain *)arg)->handler,
                                   ((struct worker_plain *)arg)->arg, items, n};
    return p;
}

static enum pl_handle_result worker_plain_store(struct pl_service *svc, void *state, void *arg)
{
    (void)arg;
    struct worker_plain *p = state;
    return p->handler(svc, p->items, p->n, p->arg);
}

int pl_worker_run_batch(struct pl_service *svc, const char *const *topics,
                        pl_worker_batch_handler handler, void *arg, size_t max_batch,
                        int max_wait_ms)
{
    static const struct pl_worker_stages stages = {worker_plain_prepare, worker_plain_store, free};
    struct worker_plain plain = {handler, arg, NULL, 0};
    return pl_worker_run_stages(svc, topics, &stages, &plain, max_batch, max_wait_ms);
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
