/* Consumer-group offsets from outside the group: where a topic stood at a time, committing a
 * position for a group, and reading a group's committed positions (offsets reset, backfills). */
#ifndef PL_OFFSETS_H
#define PL_OFFSETS_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#define PL_OFFSETS_EARLIEST (-2) /* time_ms for pl_offsets_at: the low watermarks */
#define PL_OFFSETS_LATEST   (-1) /* the high watermarks */

/**
 * @brief Every partition of topic with the offset of its first message at or after time_ms
 *        (epoch ms; the high watermark when there is none), or its low or high watermark.
 * @returns the list (caller destroys), or NULL with err (an unknown topic included).
 */
rd_kafka_topic_partition_list_t *pl_offsets_at(const char *brokers, const char *topic,
                                               int64_t time_ms, char *err, size_t errsz);

/**
 * @brief Commits offsets as group's positions. The group must have no live consumers (they
 *        would overwrite them). @returns 0, or -1 with err.
 */
int pl_offsets_commit(const char *brokers, const char *group, const char *topic,
                      rd_kafka_topic_partition_list_t *offsets, char *err, size_t errsz);

/**
 * @brief Fills each element of parts with group's committed offset (RD_KAFKA_OFFSET_INVALID
 *        where it has none), without joining the group. @returns 0, or -1 with err.
 */
int pl_offsets_committed(const char *brokers, const char *group,
                         rd_kafka_topic_partition_list_t *parts, char *err, size_t errsz);

#endif
