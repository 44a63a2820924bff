/* Backfills (see backfill.h). */
#include "backfill.h"

#include "offsets.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON array [o0, o1, ...] of a list's offsets, by partition. */
static char *backfill_offsets_json(const rd_kafka_topic_partition_list_t *l)
{
    json_object *a = json_object_new_array_ext(l->cnt);
    for (int p = 0; p < l->cnt; p++)
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].partition == p)
                json_object_array_add(a, json_object_new_int64(l->elems[i].offset));
    char *s = strdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
    json_object_put(a);
    return s;
}

/* Parses an offsets array of n entries into a new array; NULL when it is not one. */
static int64_t *backfill_offsets_parse(const char *text, int *n)
{
    json_object *a = json_tokener_parse(text);
    int64_t *out = NULL;
    if (a && json_object_is_type(a, json_type_array) && json_object_array_length(a) > 0 &&
        (out = calloc(json_object_array_length(a), sizeof(*out)))) {
        *n = (int)json_object_array_length(a);
        for (int i = 0; i < *n; i++)
            out[i] = json_object_get_int64(json_object_array_get_idx(a, (size_t)i));
    }
    json_object_put(a);
    return out;
}

void pl_backfill_free(struct pl_backfill *b)
{
    free(b->start);
    free(b->end);
    b->start = b->end = NULL;
}

int pl_backfill_load(PGconn *conn, const char *name, struct pl_backfill *b, char *err, size_t errsz)
{
    memset(b, 0, sizeof(*b));
    const char *p[1] = {name};
    struct pl_pg_error perr;
    PGresult *res = pl_pg_query(conn,
                                "SELECT name, stage, group_id, topic, pl_ts(from_time),"
                                " coalesce(pl_ts(to_time), ''), start_offsets::text,"
                                " end_offsets::text, pl_ts(created_at),"
                                " coalesce(pl_ts(finished_at), '') FROM backfills WHERE name = $1",
                                1, p, &perr);
    if (!res) {
        snprintf(err, errsz, "%s", perr.message);
        return -1;
    }
    int rc = PQntuples(res) == 1;
    if (rc) {
        snprintf(b->name, sizeof(b->name), "%s", PQgetvalue(res, 0, 0));
        snprintf(b->stage, sizeof(b->stage), "%s", PQgetvalue(res, 0, 1));
        snprintf(b->group_id, sizeof(b->group_id), "%s", PQgetvalue(res, 0, 2));
        snprintf(b->topic, sizeof(b->topic), "%s", PQgetvalue(res, 0, 3));
        snprintf(b->from, sizeof(b->from), "%s", PQgetvalue(res, 0, 4));
        snprintf(b->to, sizeof(b->to), "%s", PQgetvalue(res, 0, 5));
        snprintf(b->created_at, sizeof(b->created_at), "%s", PQgetvalue(res, 0, 8));
        snprintf(b->finished_at, sizeof(b->finished_at), "%s", PQgetvalue(res, 0, 9));
        int ns = 0, ne = 0;
        b->start = backfill_offsets_parse(PQgetvalue(res, 0, 6), &ns);
        b->end = backfill_offsets_parse(PQgetvalue(res, 0, 7), &ne);
        if (!b->start || !b->end || ns != ne) {
            snprintf(err, errsz, "backfill %s: its offsets are unreadable", name);
            pl_backfill_free(b);
            rc = -1;
        }
        b->npartitions = ns;
    }
    PQclear(res);
    return rc;
}

int pl_backfill_create(PGconn *conn, const char *brokers, const char *name, const char *stage,
                       const char *topic, int64_t from_ms, int64_t to_ms, struct pl_backfill *b,
                       char *err, size_t errsz)
{
    char from[24], to[24], group[128];
    snprintf(from, sizeof(from), "%lld", (long long)from_ms);
    snprintf(to, sizeof(to), "%lld", (long long)to_ms);
    snprintf(group, sizeof(group), "pl-%s-backfill-%s", stage, name);
    int found = pl_backfill_load(conn, name, b, err, errsz);
    if (found < 0)
        return -1;
    if (found) { /* the same command again: resume, unless the name means another range */
        const char *p[5] = {name, stage, topic, from, to_ms ? to : NULL};
        struct pl_pg_error perr;
        PGresult *res = pl_pg_query(conn,
                                    "SELECT 1 FROM backfills WHERE name = $1 AND stage = $2 AND"
                                    " topic = $3 AND from_time = to_timestamp($4::bigint / 1000.0)"
                                    " AND to_time IS NOT DISTINCT FROM"
                                    " to_timestamp($5::bigint / 1000.0)",
                                    5, p, &perr);
        bool same = res && PQntuples(res) == 1;
        PQclear(res);
        if (!same) {
            snprintf(err, errsz, "backfill %s exists for another stage or range", name);
            pl_backfill_free(b);
            return -1;
        }
        return 0;
    }
    rd_kafka_topic_partition_list_t *start = pl_offsets_at(brokers, topic, from_ms, err, errsz);
    rd_kafka_topic_partition_list_t *end =
        start ? pl_offsets_at(brokers, topic, to_ms ? to_ms : PL_OFFSETS_LATEST, err, errsz) : NULL;
    char *start_json = NULL, *end_json = NULL;
    int rc = -1;
    if (!end)
        goto out;
    if (!(start_json = backfill_offsets_json(start)) || !(end_json = backfill_offsets_json(end))) {
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    /* recorded first, then positioned: a failed commit leaves a backfill that a second run
     * positions (its group has no offsets yet, so the consumer starts from the recorded ones) */
    const char *p[8] = {name, stage, group, topic, from, to_ms ? to : NULL, start_json, end_json};
    struct pl_pg_error perr;
    if (pl_pg_exec(conn,
                   "INSERT INTO backfills (name, stage, group_id, topic, from_time, to_time,"
                   " start_offsets, end_offsets) VALUES ($1, $2, $3, $4,"
                   " to_timestamp($5::bigint / 1000.0), to_timestamp($6::bigint / 1000.0),"
                   " $7::jsonb, $8::jsonb)",
                   8, p, &perr) != 0) {
        snprintf(err, errsz, "%s", perr.message);
        goto out;
    }
    if (pl_offsets_commit(brokers, group, topic, start, err, errsz) != 0)
        goto out;
    rc = pl_backfill_load(conn, name, b, err, errsz) == 1 ? 1 : -1;
out:
    free(start_json);
    free(end_json);
    if (start)
        rd_kafka_topic_partition_list_destroy(start);
    if (end)
        rd_kafka_topic_partition_list_destroy(end);
    return rc;
}

int pl_backfill_names(PGconn *conn, char ***names, char *err, size_t errsz)
{
    struct pl_pg_error perr;
    PGresult *res = pl_pg_query(conn, "SELECT name FROM backfills ORDER BY created_at DESC, name",
                                0, NULL, &perr);
    if (!res) {
        snprintf(err, errsz, "%s", perr.message);
        return -1;
    }
    int n = PQntuples(res);
    *names = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; *names && i < n; i++)
        (*names)[i] = strdup(PQgetvalue(res, i, 0));
    PQclear(res);
    if (!*names) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    return n;
}

bool pl_backfill_past_end(const struct pl_backfill *b, int32_t partition, int64_t offset)
{
    /* a partition added after the backfill was created holds nothing of its range */
    return partition < 0 || partition >= b->npartitions || offset >= b->end[partition];
}

int pl_backfill_progress(const char *brokers, const struct pl_backfill *b,
                         struct pl_backfill_progress *p, int64_t *committed, char *err,
                         size_t errsz)
{
    memset(p, 0, sizeof(*p));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(b->npartitions);
    for (int i = 0; i < b->npartitions; i++)
        rd_kafka_topic_partition_list_add(l, b->topic, i);
    if (pl_offsets_committed(brokers, b->group_id, l, err, errsz) != 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return -1;
    }
    p->complete = true;
    for (int i = 0; i < l->cnt; i++) {
        int part = l->elems[i].partition;
        int64_t at = l->elems[i].offset < 0 ? b->start[part] : l->elems[i].offset;
        int64_t span = b->end[part] > b->start[part] ? b->end[part] - b->start[part] : 0;
        int64_t done = at - b->start[part];
        p->total += span;
        p->done += done < 0 ? 0 : done > span ? span : done;
        p->complete = p->complete && at >= b->end[part];
        if (committed)
            committed[part] = at;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return 0;
}

int pl_backfill_mark_finished(PGconn *conn, const char *name, struct pl_pg_error *err)
{
    const char *p[1] = {name};
    return pl_pg_exec(conn,
                      "UPDATE backfills SET finished_at = now() WHERE name = $1"
                      " AND finished_at IS NULL",
                      1, p, err);
}
