/* Validation of request input: query parameters and JSON bodies. Pure functions, so every
 * rule is unit-tested without a server. */
#ifndef PL_PARAMS_H
#define PL_PARAMS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/**
 * @brief Parses an optional integer parameter: NULL gives def; otherwise a whole decimal
 *        number in [min, max]. @returns 0, or -1 with a message naming `name` in err.
 */
int pl_param_int(const char *name, const char *value, long long def, long long min, long long max,
                 long long *out, char *err, size_t errsz);

/**
 * @brief Parses a body that must be one JSON object (empty body allowed when
 *        allow_empty: gives an empty object). @returns the object (caller puts it), or NULL
 *        with err filled.
 */
json_object *pl_param_json_object(const char *body, size_t len, bool allow_empty, char *err,
                                  size_t errsz);

/**
 * @brief The same strict parse for any text that must be one JSON object (an LLM reply, a
 *        message); err names it as `what` ("reply must be a JSON object").
 */
json_object *pl_json_object_parse(const char *body, size_t len, bool allow_empty, const char *what,
                                  char *err, size_t errsz);

/** Field kinds for pl_param_check_fields. */
enum pl_field_type {
    PL_FIELD_STRING,
    PL_FIELD_BOOL,
    PL_FIELD_INT,
    PL_FIELD_OBJECT,
    PL_FIELD_FRACTION, /* a number in [0, 1] (a rate or a probability) */
    PL_FIELD_NUMBER    /* a finite number in [min, max] */
};

struct pl_field_rule {
    const char *name;
    enum pl_field_type type;
    long long min, max; /* ints: value range; strings: length range (characters) */
};

enum pl_field_result { PL_FIELDS_OK, PL_FIELDS_BAD_REQUEST, PL_FIELDS_UNPROCESSABLE };

/**
 * @brief Checks every member of obj against rules (n of them): unknown members and wrong
 *        types are BAD_REQUEST (400), values out of range are UNPROCESSABLE (422); err names
 *        the field.
 */
enum pl_field_result pl_param_check_fields(json_object *obj, const struct pl_field_rule *rules,
                                           size_t n, char *err, size_t errsz);

/** @brief An ISO-8601 instant: YYYY-MM-DDTHH:MM:SS (a calendar date, years 0001 to 9999),
 *         an optional fraction, Z or +hh:mm / -hh:mm (at most 15:59). */
bool pl_param_timestamp_ok(const char *s);

#endif
