/* The audit chains' heads published outside PostgreSQL (the pl.audit topic and the log), so
 * that a deletion at the end of a chain is detectable: see architecture §4. */
#ifndef PL_AUDIT_HEAD_H
#define PL_AUDIT_HEAD_H

#include "kafka.h"

struct pl_audit_publisher;

/**
 * @brief Starts the publisher thread: every interval_s it verifies what was appended to each
 *        tenant's chain since the last round (each entry is checked once) and publishes the
 *        head {tenant_id, head_hash, row_count, last_id, key_id, verified, at} to topic, keyed
 *        by tenant, and to the log. A chain that no longer verifies is published with
 *        verified=false and the error, logged as an error and counted. Any number may run (one
 *        per replica): a session advisory lock makes one of them the publisher. The producer
 *        is borrowed. @returns the publisher, or NULL with err.
 */
struct pl_audit_publisher *pl_audit_publisher_start(const char *pg_dsn,
                                                    struct pl_producer *producer, const char *topic,
                                                    int interval_s, char *err, size_t errsz);

/** @brief Stops the thread (after its current round) and frees the publisher; NULL is fine. */
void pl_audit_publisher_stop(struct pl_audit_publisher *p);

#endif
