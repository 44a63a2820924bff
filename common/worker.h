/* The consume loop every stage runs: poll, handle, then store the offset only once the
 * handler's database work committed; dead-letter what can never succeed; rewind and back
 * off on transient failures. */
#ifndef PL_WORKER_H
#define PL_WORKER_H

#include "service.h"

#include <json-c/json.h>

enum pl_handle_result {
    PL_HANDLED,      /* done (or already done: replay), commit the offset */
    PL_HANDLE_DLQ,   /* bad input: dead-letter it with the reason, then commit */
    PL_HANDLE_RETRY, /* transient failure: deliver again after a backoff */
};

typedef enum pl_handle_result (*pl_worker_handler)(struct pl_service *svc,
                                                   const rd_kafka_message_t *msg, char *reason,
                                                   size_t reasonsz);

/**
 * @brief Joins the service's consumer group on topics (NULL-terminated) and handles
 *        messages until pl_running drops, then commits, leaves the group and returns.
 * @returns 0 on a clean stop, -1 if the consumer could not be created.
 */
int pl_worker_run(struct pl_service *svc, const char *const *topics, pl_worker_handler handler);

/** One message of a batch and what became of it. */
struct pl_worker_item {
    const rd_kafka_message_t *msg;
    enum pl_handle_result result; /* the handler sets PL_HANDLED or PL_HANDLE_DLQ */
    char reason[256];             /* why, for PL_HANDLE_DLQ */
};

/**
 * A batch handler does the work of all items (typically in one transaction). Returning
 * PL_HANDLE_RETRY redelivers the whole batch later; otherwise each item's result counts.
 */
typedef enum pl_handle_result (*pl_worker_batch_handler)(struct pl_service *svc,
                                                         struct pl_worker_item *items, size_t n,
                                                         void *arg);

/**
 * @brief Like pl_worker_run, but hands the handler up to max_batch messages at once,
 *        gathered for at most max_wait_ms after the first one arrived.
 */
int pl_worker_run_batch(struct pl_service *svc, const char *const *topics,
                        pl_worker_batch_handler handler, void *arg, size_t max_batch,
                        int max_wait_ms);

/**
 * A batch handler in two phases, so that a stage keeps two cores busy: prepare (parsing,
 * evaluation, reads; no writes) of one batch runs while the previous batch is being stored.
 */
struct pl_worker_stages {
    /** Returns the batch's state, or NULL to deliver the batch again later; marks bad items
     *  PL_HANDLE_DLQ with their reason. */
    void *(*prepare)(struct pl_service *svc, struct pl_worker_item *items, size_t n, void *arg);
    /** Writes a prepared batch (typically one transaction), on its own thread, after the
     *  previous batch's store returned. PL_HANDLE_RETRY redelivers the batch. */
    enum pl_handle_result (*store)(struct pl_service *svc, void *state, void *arg);
    /** Frees a state (stored or not); may be NULL. */
    void (*release)(void *state);
};

/**
 * @brief Like pl_worker_run_batch, with the handler split into stages. Offsets are stored,
 *        and bad items dead-lettered, batch by batch in order, after each batch's store.
 */
int pl_worker_run_stages(struct pl_service *svc, const char *const *topics,
                         const struct pl_worker_stages *stages, void *arg, size_t max_batch,
                         int max_wait_ms);

/**
 * @brief Parses msg's value as a JSON object with "schema_version": 1 and the given
 *        required uuid fields (NULL-terminated). @returns the object (caller puts it), or
 *        NULL with the reason filled.
 */
json_object *pl_worker_parse_event(const rd_kafka_message_t *msg, const char *const *uuid_fields,
                                   char *reason, size_t reasonsz);

#endif
