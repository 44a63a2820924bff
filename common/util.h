/* Small helpers with no other home: strict number parsing, ids, hashing, clocks. */
#ifndef PL_UTIL_H
#define PL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** @brief The n decimal digits at p as a number, or -1 when one of them is not a digit. */
int pl_digits(const char *p, int n);

/** @brief Parses a whole base-10 integer (no spaces, no trailing text); -1 if not one. */
int pl_parse_ll(const char *s, long long *out);

/** @brief True when s is a canonical 8-4-4-4-12 hex UUID. */
bool pl_uuid_valid(const char *s);

/** @brief Writes the lowercase hex SHA-256 of data (65 bytes with the NUL). */
void pl_sha256_hex(const void *data, size_t len, char out[65]);

/** @brief Fills buf with n cryptographically random bytes; -1 if the source failed. */
int pl_random_bytes(void *buf, size_t n);

/** @brief Milliseconds of CLOCK_MONOTONIC. */
int64_t pl_now_ms(void);

/** @brief Now as the API's timestamps: ISO-8601 UTC with microseconds
 *         (2026-01-31T12:00:00.000000Z), into out (at least 28 bytes). */
void pl_now_iso(char *out, size_t outsz);

/** @brief Sleeps ms milliseconds (for backoff and idle loops, never for synchronisation). */
void pl_sleep_ms(int ms);

#endif
