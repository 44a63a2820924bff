/* Kafka producer and consumer wrappers with promptloop's delivery semantics (architecture §6):
 * an idempotent producer whose callers wait for the broker's acknowledgement, and a consumer
 * whose offsets are stored only after the caller's database work committed. */
#ifndef PL_KAFKA_H
#define PL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pl_producer;
struct pl_consumer;

/** @brief One message to produce; partition -1 lets the partitioner choose by key. */
struct pl_kafka_msg {
    const char *topic;
    int32_t partition;
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    const char *event_id; /* optional: sent as header "event_id" */
    /* filled in by pl_producer_send_batch: */
    rd_kafka_resp_err_t result;
    int32_t out_partition;
    int64_t out_offset;
};

/**
 * @brief Creates an idempotent producer (acks=all) with a background thread that serves
 *        delivery reports. Every message gets its report within delivery_timeout_ms
 *        (librdkafka's message.timeout.ms). @returns the producer, or NULL with err filled.
 */
struct pl_producer *pl_producer_new(const char *brokers, int delivery_timeout_ms, char *err,
                                    size_t errsz);

/** @brief Flushes outstanding messages (up to timeout_ms) and frees the producer. */
void pl_producer_destroy(struct pl_producer *p, int timeout_ms);

/**
 * @brief Produces n messages and waits for the delivery report of each (at most the
 *        delivery timeout), so msgs may be freed on return. Each message's result says how
 *        it went. @returns 0 when all were acknowledged, else -1.
 */
int pl_producer_send_batch(struct pl_producer *p, struct pl_kafka_msg *msgs, size_t n);

/** @brief Sends one message and waits for its acknowledgement; -1 with err on failure. */
int pl_producer_send(struct pl_producer *p, struct pl_kafka_msg *msg, char *err, size_t errsz);

/** @brief The underlying handle (for metadata queries); owned by the producer. */
rd_kafka_t *pl_producer_handle(struct pl_producer *p);

/** @brief True when the cluster answers a metadata request within timeout_ms. */
bool pl_kafka_reachable(rd_kafka_t *rk, int timeout_ms);

/** @brief Number of partitions of topic, or -1 if it cannot be learnt. */
int pl_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms);

/**
 * @brief Creates a consumer in group, subscribed to the NULL-terminated topics, with
 *        automatic commit of explicitly stored offsets only (at-least-once).
 * @returns the consumer, or NULL with err filled.
 */
struct pl_consumer *pl_consumer_new(const char *brokers, const char *group,
                                    const char *const *topics, int session_timeout_ms, char *err,
                                    size_t errsz);

/**
 * @brief Waits up to timeout_ms for the next message.
 * @returns a message the caller must rd_kafka_message_destroy(), or NULL (nothing, or a
 *          transient error that was logged).
 */
rd_kafka_message_t *pl_consumer_poll(struct pl_consumer *c, int timeout_ms);

/** @brief Marks msg processed: its offset + 1 is committed by the next auto-commit. */
int pl_consumer_store(struct pl_consumer *c, const rd_kafka_message_t *msg);

/** @brief Rewinds msg's partition to msg so it is delivered again (transient failure). */
int pl_consumer_rewind(struct pl_consumer *c, const rd_kafka_message_t *msg);

/** @brief Commits stored offsets, leaves the group and frees the consumer. */
void pl_consumer_close(struct pl_consumer *c);

/** @brief The underlying handle; owned by the consumer. */
rd_kafka_t *pl_consumer_handle(struct pl_consumer *c);

/**
 * @brief Sends msg to the dead-letter topic with reason, waiting for the acknowledgement
 *        (architecture §6 record: source_topic, partition, offset, error, payload_base64, at).
 * @returns 0, or -1 with err filled (the caller must then not store the offset).
 */
int pl_kafka_dlq_send(struct pl_producer *p, const char *dlq_topic, const rd_kafka_message_t *msg,
                      const char *reason, char *err, size_t errsz);

/** @brief Reads header "event_id" of msg into buf; -1 when absent. */
int pl_kafka_msg_event_id(const rd_kafka_message_t *msg, char *buf, size_t bufsz);

#endif
