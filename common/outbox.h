/* Transactional outbox (architecture §6): events are written in the same transaction as the change
 * they announce, and a relay publishes them to Kafka exactly once. */
#ifndef PL_OUTBOX_H
#define PL_OUTBOX_H

#include "kafka.h"
#include "pg.h"

/**
 * @brief Queues payload (a JSON object) for topic with key, inside the caller's open
 *        transaction. The relay adds "event_id" (the outbox row id) when it publishes.
 * @returns 0, or -1 with err filled.
 */
int pl_outbox_write(PGconn *conn, const char *topic, const char *key, const char *payload_json,
                    struct pl_pg_error *err);

struct pl_outbox_relay;

/**
 * @brief Starts the relay thread. Any number of relays may run (one per service replica):
 *        a session advisory lock makes exactly one of them the publisher at a time.
 *        The producer is borrowed and must outlive the relay.
 * @returns the relay, or NULL with err filled.
 */
struct pl_outbox_relay *pl_outbox_relay_start(const char *pg_dsn, const char *brokers,
                                              struct pl_producer *producer, int poll_ms, int batch,
                                              char *err, size_t errsz);

/** @brief Stops the relay thread (finishing its current batch) and frees it. */
void pl_outbox_relay_stop(struct pl_outbox_relay *relay);

#endif
