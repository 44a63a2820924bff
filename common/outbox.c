/* Transactional outbox: events written with the change, published by the relay. */
#include "outbox.h"

#include "failpoint.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Session advisory lock key: whoever holds it is the one publishing relay. */
#define RELAY_LOCK_KEY   "7233360914107211002"
#define RELAY_MAX_TOPICS 8

/*
 * Exactly-once publication without Kafka transactions:
 *  1. before producing, each row records (committed) the target partition and that
 *     partition's high watermark; the relay picks partitions itself (murmur2 of the key,
 *     as the Java client does), so the partition is known in advance;
 *  2. produce and wait for acknowledgements, carrying the row id as header "event_id";
 *  3. mark the rows published.
 * A relay that dies between 1 and 3 leaves rows "attempted"; the next leader reads their
 * partitions from the recorded watermark and finds which event ids already landed, marks
 * those published and produces only the rest.
 */

struct relay_topic {
    char name[128];
    int partitions;
};

struct pl_outbox_relay {
    char *dsn;
    char *brokers;
    struct pl_producer *producer;
    int poll_ms;
    int batch;
    pthread_t thread;
    atomic_bool stop;
    PGconn *conn;
    bool leader;
    struct relay_topic topics[RELAY_MAX_TOPICS];
    int ntopics;
    struct pl_metric *m_published, *m_recovered, *m_failed, *m_backlog, *m_age;
};

struct relay_row {
    char *id;
    char *topic;
    char *key;
    char *payload;
    bool attempted;
    int32_t partition;
    int64_t attempt_offset;
    bool published;
};

int pl_outbox_write(PGconn *conn, const char *topic, const char *key, const char *payload_json,
                    struct pl_pg_error *err)
{
    const char *params[3] = {topic, key, payload_json};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_outbox_write",
        "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3::jsonb)", 3, params, err);
    int rc = res ? 0 : -1;
    PQclear(res);
    return rc;
}

static int relay_partitions(struct pl_outbox_relay *r, const char *topic)
{
    for (int i = 0; i < r->ntopics; i++)
        if (strcmp(r->topics[i].name, topic) == 0)
            return r->topics[i].partitions;
    int n = pl_kafka_partition_count(pl_producer_handle(r->producer), topic, 5000);
    if (n > 0 && r->ntopics < RELAY_MAX_TOPICS) {
        snprintf(r->topics[r->ntopics].name, sizeof(r->topics[0].name), "%s", topic);
        r->topics[r->ntopics++].partitions = n;
    }
    return n;
}

static void relay_disconnect(struct pl_outbox_relay *r)
{
    if (r->conn)
        PQfinish(r->conn); /* also releases the advisory lock */
    r->conn = NULL;
    if (r->leader)
        pl_info("outbox relay: no longer the publisher");
    r->leader = false;
}

static bool relay_become_leader(struct pl_outbox_relay *r)
{
    struct pl_pg_error err;
    if (!r->conn) {
        r->conn = pl_pg_connect(r->dsn, &err);
        if (!r->conn)
            return false;
    }
    PGresult *res =
        pl_pg_query(r->conn, "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")", 0, NULL, &err);
    if (!res) {
        pl_warn("outbox relay: %s", err.message);
        relay_disconnect(r);
        return false;
    }
    r->leader = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (r->leader)
        pl_info("outbox relay: now the publisher");
    return r->leader;
}

/* Marks rows published; ids is a Postgres array literal like {1,2,3}. */
static int relay_mark_published(struct pl_outbox_relay *r, const char *ids)
{
    struct pl_pg_error err;
    const char *params[1] = {ids};
    if (pl_pg_exec(r->conn,
                   "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
                   " AND published_at IS NULL",
                   1, params, &err) != 0) {
        pl_warn("outbox relay: marking published: %s", err.message);
        return -1;
    }
    return 0;
}

static char *relay_id_array(struct relay_row *rows, int n, bool want_published)
{
    size_t cap = 2 + (size_t)n * 21, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[len++] = '{';
    for (int i = 0; i < n; i++) {
        if (rows[i].published != want_published)
            continue;
        len += (size_t)snprintf(s + len, cap - len, "%s%s", len > 1 ? "," : "", rows[i].id);
    }
    snprintf(s + len, cap - len, "}");
    return s;
}

/* Reads topic/partition from offset `from` up to its current end and marks every
 * attempted row whose event id is found there as published. */
static int relay_scan_partition(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t from,
                                struct relay_row *rows, int n)
{
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic, partition, &lo, &hi, 5000))
        return -1;
    if (from < lo)
        from = lo;
    if (from >= hi)
        return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = from;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t deadline = pl_now_ms() + 15000;
    int64_t next = from;
    int rc = 0;
    while (next < hi) {
        if (pl_now_ms() > deadline) {
            rc = -1;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            next = m->offset + 1;
            char eid[32];
            if (pl_kafka_msg_event_id(m, eid, sizeof(eid)) == 0)
                for (int i = 0; i < n; i++)
                    if (rows[i].attempted && !rows[i].published && rows[i].partition == partition &&
                        strcmp(rows[i].topic, topic) == 0 && strcmp(rows[i].id, eid) == 0)
                        rows[i].published = true;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    return rc;
}

/* Settles rows a dead publisher attempted: found in Kafka → published, else produce again. */
static int relay_recover(struct pl_outbox_relay *r, struct relay_row *rows, int n)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", r->brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", "pl-outbox-readback", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_uncommitted", errstr, sizeof(errstr))) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        pl_warn("outbox relay: read-back consumer: %s", errstr);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!rows[i].attempted || rows[i].published)
            continue;
        /* Scan each (topic, partition) once, from the lowest recorded watermark. */
        bool seen = false;
        for (int j = 0; j < i; j++)
            if (rows[j].attempted && rows[j].partition == rows[i].partition &&
                strcmp(rows[j].topic, rows[i].topic) == 0)
                seen = true;
        if (seen)
            continue;
        int64_t from = rows[i].attempt_offset;
        for (int j = i + 1; j < n; j++)
            if (rows[j].attempted && rows[j].partition == rows[i].partition &&
                strcmp(rows[j].topic, rows[i].topic) == 0 && rows[j].attempt_offset < from)
                from = rows[j].attempt_offset;
        rc = relay_scan_partition(rk, rows[i].topic, rows[i].partition, from, rows, n);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    int recovered = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].attempted && rows[i].published)
            recovered++;
    if (rc == 0 && recovered > 0) {
        char *ids = relay_id_array(rows, n, true);
        rc = ids ? relay_mark_published(r, ids) : -1;
        free(ids);
        pl_info("outbox relay: %d event(s) found already published after a takeover", recovered);
        pl_metric_add(r->m_recovered, recovered);
    }
    return rc;
}

/* Records partition and watermark for the rows about to be produced for the first time. */
static int relay_mark_attempted(struct pl_outbox_relay *r, struct relay_row *rows, int n)
{
    rd_kafka_t *rk = pl_producer_handle(r->producer);
    for (int i = 0; i < n; i++) {
        if (rows[i].attempted)
            continue;
        int parts = relay_partitions(r, rows[i].topic);
        if (parts <= 0) {
            pl_warn("outbox relay: topic %s has no known partitions", rows[i].topic);
            return -1;
        }
        rows[i].partition = rd_kafka_msg_partitioner_murmur2(NULL, rows[i].key, strlen(rows[i].key),
                                                             parts, NULL, NULL);
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, rows[i].topic, rows[i].partition, &lo, &hi,
                                             5000)) {
            pl_warn("outbox relay: cannot read the watermark of %s[%d]", rows[i].topic,
                    rows[i].partition);
            return -1;
        }
        rows[i].attempt_offset = hi;
        char part[16], off[24];
        snprintf(part, sizeof(part), "%d", rows[i].partition);
        snprintf(off, sizeof(off), "%" PRId64, hi);
        const char *params[3] = {rows[i].id, part, off};
        struct pl_pg_error err;
        if (pl_pg_exec(r->conn,
                       "UPDATE outbox SET attempted_at = now(), attempt_partition = $2,"
                       " attempt_offset = $3 WHERE id = $1",
                       3, params, &err) != 0) {
            pl_warn("outbox relay: %s", err.message);
            return -1;
        }
        rows[i].attempted = true;
    }
    return 0;
}

static int relay_produce(struct pl_outbox_relay *r, struct relay_row *rows, int n)
{
    if (n <= 0)
        return 0;
    struct pl_kafka_msg *msgs = calloc((size_t)n, sizeof(*msgs));
    int *index = calloc((size_t)n, sizeof(*index));
    int nm = 0, rc = 0;
    if (!msgs || !index) {
        free(msgs);
        free(index);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (rows[i].published)
            continue;
        msgs[nm] = (struct pl_kafka_msg){.topic = rows[i].topic,
                                         .partition = rows[i].partition,
                                         .key = rows[i].key,
                                         .key_len = strlen(rows[i].key),
                                         .value = rows[i].payload,
                                         .value_len = strlen(rows[i].payload),
                                         .event_id = rows[i].id};
        index[nm++] = i;
    }
    if (nm > 0) {
        pl_producer_send_batch(r->producer, msgs, (size_t)nm);
        pl_failpoint_crash("outbox_after_produce");
        int failed = 0;
        for (int k = 0; k < nm; k++) {
            if (msgs[k].result == RD_KAFKA_RESP_ERR_NO_ERROR)
                rows[index[k]].published = true;
            else
                failed++;
        }
        char *ids = relay_id_array(rows, n, true);
        rc = ids ? relay_mark_published(r, ids) : -1;
        free(ids);
        pl_metric_add(r->m_published, nm - failed);
        if (failed) {
            pl_warn("outbox relay: %d event(s) not acknowledged, will retry", failed);
            pl_metric_add(r->m_failed, failed);
            rc = -1;
        }
    }
    free(msgs);
    free(index);
    return rc;
}

/* One pass: returns the number of rows handled, or -1 on error. */
static int relay_pass(struct pl_outbox_relay *r)
{
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", r->batch);
    const char *params[1] = {limit};
    struct pl_pg_error err;
    PGresult *res = pl_pg_query(
        r->conn,
        "SELECT id, topic, key, (payload || jsonb_build_object('event_id', id::text))::text,"
        " attempted_at IS NOT NULL, coalesce(attempt_partition, -1), coalesce(attempt_offset, 0),"
        " (SELECT count(*) FROM outbox WHERE published_at IS NULL),"
        " (SELECT coalesce(extract(epoch FROM now() - min(created_at))::bigint, 0) FROM outbox"
        "   WHERE published_at IS NULL)"
        " FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        1, params, &err);
    if (!res) {
        pl_warn("outbox relay: %s", err.message);
        return -1;
    }
    int n = PQntuples(res);
    pl_metric_set(r->m_backlog, n ? pl_pg_getll(res, 0, 7) : 0);
    pl_metric_set(r->m_age, n ? pl_pg_getll(res, 0, 8) : 0);
    struct relay_row *rows = calloc((size_t)(n ? n : 1), sizeof(*rows));
    if (!rows) {
        PQclear(res);
        return -1;
    }
    bool any_attempted = false;
    for (int i = 0; i < n; i++) {
        rows[i].id = PQgetvalue(res, i, 0);
        rows[i].topic = PQgetvalue(res, i, 1);
        rows[i].key = PQgetvalue(res, i, 2);
        rows[i].payload = PQgetvalue(res, i, 3);
        rows[i].attempted = strcmp(PQgetvalue(res, i, 4), "t") == 0;
        rows[i].partition = (int32_t)pl_pg_getll(res, i, 5);
        rows[i].attempt_offset = pl_pg_getll(res, i, 6);
        any_attempted |= rows[i].attempted;
    }
    int rc = n;
    if ((any_attempted && relay_recover(r, rows, n) != 0) ||
        relay_mark_attempted(r, rows, n) != 0 || relay_produce(r, rows, n) != 0)
        rc = -1;
    free(rows);
    PQclear(res);
    return rc;
}

static void *relay_thread(void *arg)
{
    struct pl_outbox_relay *r = arg;
    int backoff = r->poll_ms;
    while (!atomic_load(&r->stop)) {
        if (!r->leader && !relay_become_leader(r)) {
            pl_sleep_ms(r->poll_ms * 5);
            continue;
        }
        int handled = relay_pass(r);
        if (handled < 0) {
            if (PQstatus(r->conn) != CONNECTION_OK)
                relay_disconnect(r);
            pl_sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        backoff = r->poll_ms;
        if (handled < r->batch)
            pl_sleep_ms(r->poll_ms);
    }
    relay_disconnect(r);
    return NULL;
}

struct pl_outbox_relay *pl_outbox_relay_start(const char *pg_dsn, const char *brokers,
                                              struct pl_producer *producer, int poll_ms, int batch,
                                              char *err, size_t errsz)
{
    struct pl_outbox_relay *r = calloc(1, sizeof(*r));
    if (!r || !(r->dsn = strdup(pg_dsn)) || !(r->brokers = strdup(brokers))) {
        if (r)
            free(r->dsn);
        free(r);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    r->producer = producer;
    r->poll_ms = poll_ms;
    r->batch = batch;
    r->m_published =
        pl_metric_counter("pl_outbox_published_total", NULL, "Outbox events published to Kafka");
    r->m_recovered = pl_metric_counter("pl_outbox_recovered_total", NULL,
                                       "Outbox events found already published after a takeover");
    r->m_failed = pl_metric_counter("pl_outbox_publish_failures_total", NULL,
                                    "Outbox events the broker did not acknowledge (retried)");
    r->m_age = pl_metric_gauge("pl_outbox_oldest_age_seconds", NULL,
                               "Age of the oldest unpublished outbox event (0: none), seen by the "
                               "publishing relay: alert when it grows");
    r->m_backlog = pl_metric_gauge("pl_outbox_backlog", NULL,
                                   "Unpublished outbox events seen by the publishing relay");
    if (pthread_create(&r->thread, NULL, relay_thread, r) != 0) {
        snprintf(err, errsz, "cannot start the outbox relay thread");
        free(r->brokers);
        free(r->dsn);
        free(r);
        return NULL;
    }
    return r;
}

void pl_outbox_relay_stop(struct pl_outbox_relay *relay)
{
    if (!relay)
        return;
    atomic_store(&relay->stop, true);
    pthread_join(relay->thread, NULL);
    free(relay->brokers);
    free(relay->dsn);
    free(relay);
}
