/* Backfills: a stage replays a time range of its topic under a consumer group of its own,
 * next to the live group, and re-evaluates what changed since (architecture §6). */
#ifndef PL_BACKFILL_H
#define PL_BACKFILL_H

#include "pg.h"

#include <stdbool.h>
#include <stdint.h>

#define PL_BACKFILL_NAME_MAX 64

struct pl_backfill {
    char name[PL_BACKFILL_NAME_MAX];
    char stage[32];
    char group_id[128]; /* pl-<stage>-backfill-<name> */
    char topic[128];
    char from[40], to[40];                /* ISO-8601; to is "" when the range ends at creation */
    char created_at[40], finished_at[40]; /* finished_at "" while running */
    int npartitions;
    int64_t *start, *end; /* per partition: first offset, and the end (exclusive) */
};

/**
 * @brief Creates backfill name of stage over topic: start offsets at from_ms, end offsets at
 *        to_ms (0: the topic's end now); commits the start as the new group's positions and
 *        records it. A name that exists with the same stage and range is loaded instead, so
 *        that running the same command again resumes it.
 * @returns 1 created, 0 resumed, -1 with err (a name in use for another range included).
 */
int pl_backfill_create(PGconn *conn, const char *brokers, const char *name, const char *stage,
                       const char *topic, int64_t from_ms, int64_t to_ms, struct pl_backfill *b,
                       char *err, size_t errsz);

/** @brief Loads backfill name. @returns 1, 0 when there is none, -1 with err. */
int pl_backfill_load(PGconn *conn, const char *name, struct pl_backfill *b, char *err,
                     size_t errsz);

/** @brief The names of every backfill, newest first, into *names (caller frees each and the
 *         array). @returns how many, or -1 with err. */
int pl_backfill_names(PGconn *conn, char ***names, char *err, size_t errsz);

void pl_backfill_free(struct pl_backfill *b);

/** @brief Whether a message at offset of partition lies beyond the range (not replayed). */
bool pl_backfill_past_end(const struct pl_backfill *b, int32_t partition, int64_t offset);

/** Where a backfill stands. */
struct pl_backfill_progress {
    int64_t total; /* messages in the range */
    int64_t done;  /* of them behind the group's committed positions */
    bool complete; /* every partition's committed position is at or past its end */
};

/**
 * @brief Reads the group's committed positions from the broker. committed (npartitions
 *        entries, may be NULL) gets each partition's. @returns 0, or -1 with err.
 */
int pl_backfill_progress(const char *brokers, const struct pl_backfill *b,
                         struct pl_backfill_progress *p, int64_t *committed, char *err,
                         size_t errsz);

/** @brief Records that the backfill finished (once). @returns 0, or -1 with err. */
int pl_backfill_mark_finished(PGconn *conn, const char *name, struct pl_pg_error *err);

#endif
