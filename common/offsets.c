/* Consumer-group offsets from outside the group (see offsets.h). */
#include "offsets.h"

#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFFSETS_TIMEOUT_MS 10000

/* A consumer handle of group that never subscribes: for metadata, offsets and commits. */
static rd_kafka_t *offsets_client(const char *brokers, const char *group, char *err, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errsz) ||
        rd_kafka_conf_set(conf, "group.id", group, err, errsz) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, errsz) ||
        rd_kafka_conf_set(conf, "log_level", "3", err, errsz) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, errsz)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errsz);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static void offsets_client_close(rd_kafka_t *rk)
{
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* The timestamp of the message at offset of topic[partition], or -1. */
static int64_t offsets_timestamp_of(rd_kafka_t *rk, const char *topic, int32_t partition,
                                    int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t ts = -1, deadline = pl_now_ms() + OFFSETS_TIMEOUT_MS;
    while (ts < 0 && pl_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err && m->partition == partition && m->offset >= offset)
            ts = rd_kafka_message_timestamp(m, NULL);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    return ts;
}

/*
 * The first offset in [lo, hi) whose message is at or after time_ms, by binary search over
 * the messages' timestamps (hi when there is none). For brokers that answer a time lookup
 * with "none" without one (librdkafka's mock cluster); with Kafka it only confirms that
 * answer, reading the last message. Timestamps are taken as non-decreasing, as Kafka's time
 * index takes them.
 */
static int64_t offsets_search_time(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t lo,
                                   int64_t hi, int64_t time_ms)
{
    if (lo >= hi)
        return hi;
    int64_t last = offsets_timestamp_of(rk, topic, partition, hi - 1);
    if (last < 0 || last < time_ms)
        return hi;
    while (lo < hi - 1) { /* invariant: the message at hi - 1 is at or after the time */
        int64_t mid = lo + (hi - 1 - lo) / 2;
        int64_t ts = offsets_timestamp_of(rk, topic, partition, mid);
        if (ts < 0)
            return -1;
        if (ts >= time_ms)
            hi = mid + 1;
        else
            lo = mid + 1;
    }
    return lo;
}

rd_kafka_topic_partition_list_t *pl_offsets_at(const char *brokers, const char *topic,
                                               int64_t time_ms, char *err, size_t errsz)
{
    rd_kafka_t *rk = offsets_client(brokers, "pl-offsets-reader", err, errsz);
    if (!rk)
        return NULL;
    /* All topics, not just this one: asking for one topic by name makes brokers with
     * auto-creation create it, and a typo would then "succeed". */
    const struct rd_kafka_metadata *md = NULL;
    int nparts = -1;
    if (rd_kafka_metadata(rk, 1, NULL, &md, OFFSETS_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topic) == 0 && !md->topics[i].err)
                nparts = md->topics[i].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *l = NULL;
    if (nparts < 0) {
        snprintf(err, errsz, "topic %s not found or broker unreachable", topic);
        goto out;
    }
    l = rd_kafka_topic_partition_list_new(nparts);
    int64_t *high = calloc((size_t)nparts + 1, sizeof(*high));
    int64_t *low = calloc((size_t)nparts + 1, sizeof(*low));
    bool ok = high && low;
    for (int p = 0; ok && p < nparts; p++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, OFFSETS_TIMEOUT_MS)) {
            snprintf(err, errsz, "cannot read the offsets of %s[%d]", topic, p);
            ok = false;
        }
        high[p] = hi;
        low[p] = lo;
        int64_t at = time_ms == PL_OFFSETS_EARLIEST ? lo
                     : time_ms == PL_OFFSETS_LATEST ? hi
                                                    : time_ms;
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = at;
    }
    if (ok && time_ms >= 0) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, l, OFFSETS_TIMEOUT_MS);
        if (e) {
            snprintf(err, errsz, "offsets for time: %s", rd_kafka_err2str(e));
            ok = false;
        }
        for (int i = 0; ok && i < l->cnt; i++) /* "none at or after the time": look */
            if (l->elems[i].offset < 0) {
                int32_t p = l->elems[i].partition;
                l->elems[i].offset = offsets_search_time(rk, topic, p, low[p], high[p], time_ms);
                if (l->elems[i].offset < 0) {
                    snprintf(err, errsz, "cannot read the messages of %s[%d]", topic, p);
                    ok = false;
                }
            }
    }
    free(high);
    free(low);
    if (!ok) {
        rd_kafka_topic_partition_list_destroy(l);
        l = NULL;
    }
out:
    offsets_client_close(rk);
    return l;
}

/* Joins group on topic (waiting for an assignment) and commits offsets as its member: some
 * brokers (librdkafka's mock cluster among them) refuse commits from outside a group that has
 * had members. Joining needs the group's consumers stopped, which a commit needs anyway. */
static rd_kafka_resp_err_t offsets_commit_as_member(const char *brokers, const char *group,
                                                    const char *topic,
                                                    rd_kafka_topic_partition_list_t *offsets)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "partition.assignment.strategy", "range", err, sizeof(err))) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    int64_t deadline = pl_now_ms() + 30000;
    bool assigned = false;
    while (!e && !assigned && pl_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m)
            rd_kafka_message_destroy(m);
        rd_kafka_topic_partition_list_t *a = NULL;
        if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assigned = a->cnt > 0;
            rd_kafka_topic_partition_list_destroy(a);
        }
    }
    if (!e)
        e = assigned ? rd_kafka_commit(rk, offsets, 0) : RD_KAFKA_RESP_ERR__TIMED_OUT;
    offsets_client_close(rk);
    return e;
}

int pl_offsets_commit(const char *brokers, const char *group, const char *topic,
                      rd_kafka_topic_partition_list_t *offsets, char *err, size_t errsz)
{
    rd_kafka_t *rk = offsets_client(brokers, group, err, errsz);
    if (!rk)
        return -1;
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, offsets, 0);
    offsets_client_close(rk);
    if (e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
        e = offsets_commit_as_member(brokers, group, topic, offsets);
    if (e) {
        snprintf(err, errsz, "commit failed (stop the group's consumers first): %s",
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int pl_offsets_committed(const char *brokers, const char *group,
                         rd_kafka_topic_partition_list_t *parts, char *err, size_t errsz)
{
    rd_kafka_t *rk = offsets_client(brokers, group, err, errsz);
    if (!rk)
        return -1;
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, parts, OFFSETS_TIMEOUT_MS);
    offsets_client_close(rk);
    if (e) {
        snprintf(err, errsz, "committed offsets of %s: %s", group, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}
