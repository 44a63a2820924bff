/* The audit heads' publisher (see audit_head.h). */
#include "audit_head.h"

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Session advisory lock key: whoever holds it publishes the heads. */
#define PUBLISHER_LOCK_KEY "7233360914107211003"
/* An unchanged head is published again this often, so that a reader always finds a recent one. */
#define REPUBLISH_MS (3600 * 1000)

struct tenant_head {
    char tenant_id[37];
    struct pl_audit_head head;
    char broken[512]; /* the last error published ("" while the chain verifies) */
    char anchor[65];  /* once broken: the last head verified, which the chain must contain */
    long long anchor_id;
    int64_t published_ms;
    bool seen; /* still in the log this round */
};

struct pl_audit_publisher {
    char *dsn;
    char *topic;
    struct pl_producer *producer;
    int interval_ms;
    pthread_t thread;
    atomic_bool stop;
    PGconn *conn;
    bool leader;
    struct tenant_head *tenants;
    size_t ntenants, cap;
    struct pl_metric *m_published, *m_broken;
};

static struct tenant_head *publisher_tenant(struct pl_audit_publisher *p, const char *tenant_id)
{
    for (size_t i = 0; i < p->ntenants; i++)
        if (strcmp(p->tenants[i].tenant_id, tenant_id) == 0)
            return &p->tenants[i];
    if (p->ntenants == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct tenant_head *t = realloc(p->tenants, cap * sizeof(*t));
        if (!t)
            return NULL;
        p->tenants = t;
        p->cap = cap;
    }
    struct tenant_head *t = &p->tenants[p->ntenants++];
    memset(t, 0, sizeof(*t));
    snprintf(t->tenant_id, sizeof(t->tenant_id), "%s", tenant_id);
    return t;
}

static void publisher_send(struct pl_audit_publisher *p, struct tenant_head *t)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "tenant_id", json_object_new_string(t->tenant_id));
    json_object_object_add(o, "verified", json_object_new_boolean(!t->broken[0]));
    if (t->broken[0]) {
        json_object_object_add(o, "error", json_object_new_string(t->broken));
    } else {
        json_object_object_add(o, "head_hash", json_object_new_string(t->head.hash));
        json_object_object_add(o, "row_count", json_object_new_int64(t->head.rows));
        json_object_object_add(o, "last_id", json_object_new_int64(t->head.last_id));
        const char *key_id = pl_audit_key_id();
        json_object_object_add(o, "key_id", key_id ? json_object_new_string(key_id) : NULL);
    }
    json_object_object_add(o, "at_ms", json_object_new_int64(pl_now_ms()));
    size_t len;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    struct pl_kafka_msg msg = {.topic = p->topic,
                               .partition = RD_KAFKA_PARTITION_UA,
                               .key = t->tenant_id,
                               .key_len = strlen(t->tenant_id),
                               .value = text,
                               .value_len = len};
    char err[256];
    if (pl_producer_send(p->producer, &msg, err, sizeof(err)) != 0) {
        pl_warn("audit head of tenant %s not published to %s: %s (next round)", t->tenant_id,
                p->topic, err);
        t->published_ms = 0;
    } else {
        t->published_ms = pl_now_ms();
        pl_metric_add(p->m_published, 1);
    }
    json_object_put(o);
}

/* Reports a chain that does not verify (once per distinct error) and remembers the last head
 * verified before (last), which every later round must find again. */
static void publisher_broken(struct pl_audit_publisher *p, struct tenant_head *t, const char *err,
                             const struct pl_audit_head *last)
{
    if (!t->anchor[0] && last->rows > 0) {
        snprintf(t->anchor, sizeof(t->anchor), "%s", last->hash);
        t->anchor_id = last->last_id;
    }
    memset(&t->head, 0, sizeof(t->head));
    if (strcmp(err, t->broken) == 0)
        return;
    snprintf(t->broken, sizeof(t->broken), "%s", err);
    pl_error("audit chain of tenant %s does not verify: %s", t->tenant_id, err);
    pl_metric_add(p->m_broken, 1);
    publisher_send(p, t);
}

/* One tenant: verify what is new, publish when the head moved, broke or is getting old. */
static void publisher_tenant_round(struct pl_audit_publisher *p, struct tenant_head *t,
                                   long long last_id)
{
    bool moved = last_id != t->head.last_id || t->published_ms == 0;
    if (!moved && !t->broken[0] && pl_now_ms() - t->published_ms < REPUBLISH_MS)
        return;
    char err[512] = "";
    struct pl_audit_head before = t->head;
    long long n;
    if (t->anchor[0]) { /* broken: only the chain that still holds the old head is whole */
        n = pl_audit_verify_head(p->conn, t->tenant_id, t->anchor, &t->head, err, sizeof(err));
        if (n >= 0 && t->head.expected_found != 1) {
            snprintf(err, sizeof(err), PL_AUDIT_HEAD_GONE, t->anchor_id);
            n = -1;
        }
    } else {
        n = pl_audit_verify_more(p->conn, t->tenant_id, NULL, &t->head, err, sizeof(err));
    }
    if (n < 0 && PQstatus(p->conn) != CONNECTION_OK) { /* not a verdict: try again later */
        t->head = before;
        return;
    }
    if (n < 0) {
        publisher_broken(p, t, err, &before);
        return;
    }
    t->anchor[0] = '\0';
    if (t->broken[0])
        pl_info("audit chain of tenant %s verifies again", t->tenant_id);
    t->broken[0] = '\0';
    pl_info("audit head tenant=%s rows=%lld last_id=%lld hash=%s", t->tenant_id, t->head.rows,
            t->head.last_id, t->head.hash);
    publisher_send(p, t);
}

static void publisher_round(struct pl_audit_publisher *p)
{
    struct pl_pg_error perr;
    PGresult *res =
        pl_pg_query(p->conn, "SELECT tenant_id::text, max(id) FROM audit_log GROUP BY tenant_id", 0,
                    NULL, &perr);
    if (!res) {
        pl_warn("audit heads: %s", perr.message);
        return;
    }
    for (size_t i = 0; i < p->ntenants; i++)
        p->tenants[i].seen = false;
    for (int i = 0; i < PQntuples(res) && !atomic_load(&p->stop); i++) {
        struct tenant_head *t = publisher_tenant(p, PQgetvalue(res, i, 0));
        if (!t)
            break;
        t->seen = true;
        publisher_tenant_round(p, t, pl_pg_getll(res, i, 1));
    }
    PQclear(res);
    /* a tenant whose every entry is gone: its last published head no longer exists */
    for (size_t i = 0; i < p->ntenants; i++) {
        struct tenant_head *t = &p->tenants[i];
        if (t->seen || t->head.rows == 0 || atomic_load(&p->stop))
            continue;
        char err[512];
        snprintf(err, sizeof(err), "all %lld audit entries of the tenant are gone (head %s)",
                 t->head.rows, t->head.hash);
        struct pl_audit_head last = t->head;
        publisher_broken(p, t, err, &last);
    }
}

static void publisher_disconnect(struct pl_audit_publisher *p)
{
    if (p->conn)
        PQfinish(p->conn); /* also releases the advisory lock */
    p->conn = NULL;
    p->leader = false;
}

static bool publisher_lead(struct pl_audit_publisher *p)
{
    struct pl_pg_error err;
    if (!p->conn && !(p->conn = pl_pg_connect(p->dsn, &err)))
        return false;
    PGresult *res =
        pl_pg_query(p->conn, "SELECT pg_try_advisory_lock(" PUBLISHER_LOCK_KEY ")", 0, NULL, &err);
    if (!res) {
        publisher_disconnect(p);
        return false;
    }
    p->leader = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return p->leader;
}

/* Sleeps ms, waking early on stop. */
static void publisher_wait(struct pl_audit_publisher *p, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&p->stop); waited += 100)
        pl_sleep_ms(ms - waited < 100 ? ms - waited : 100);
}

static void *publisher_thread(void *arg)
{
    struct pl_audit_publisher *p = arg;
    while (!atomic_load(&p->stop)) {
        if (p->leader || publisher_lead(p)) {
            publisher_round(p);
            if (PQstatus(p->conn) != CONNECTION_OK)
                publisher_disconnect(p);
        }
        publisher_wait(p, p->interval_ms);
    }
    publisher_disconnect(p);
    return NULL;
}

struct pl_audit_publisher *pl_audit_publisher_start(const char *pg_dsn,
                                                    struct pl_producer *producer, const char *topic,
                                                    int interval_s, char *err, size_t errsz)
{
    struct pl_audit_publisher *p = calloc(1, sizeof(*p));
    if (!p || !(p->dsn = strdup(pg_dsn)) || !(p->topic = strdup(topic))) {
        if (p)
            free(p->dsn);
        free(p);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    p->producer = producer;
    p->interval_ms = interval_s * 1000;
    p->m_published = pl_metric_counter("pl_audit_heads_published_total", NULL,
                                       "Audit chain heads published to the audit topic");
    p->m_broken = pl_metric_counter("pl_audit_chain_broken_total", NULL,
                                    "Audit chains found not to verify (tampering or lost entries)");
    if (pthread_create(&p->thread, NULL, publisher_thread, p) != 0) {
        snprintf(err, errsz, "cannot start the audit head publisher thread");
        free(p->topic);
        free(p->dsn);
        free(p);
        return NULL;
    }
    return p;
}

void pl_audit_publisher_stop(struct pl_audit_publisher *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    free(p->tenants);
    free(p->topic);
    free(p->dsn);
    free(p);
}
