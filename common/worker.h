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

/**
 * @brief Parses msg's value as a JSON object with "schema_version": 1 and the given
 *        required uuid fields (NULL-terminated). @returns the object (caller puts it), or
 *        NULL with the reason filled.
 */
json_object *pl_worker_parse_event(const rd_kafka_message_t *msg, const char *const *uuid_fields,
                                   char *reason, size_t reasonsz);

#endif
