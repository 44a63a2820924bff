/* Strict JSON scanning without building a tree (RFC 8259: no comments, trailing commas, NaN or
 * bare control characters; valid UTF-8; paired surrogates; no \u0000). The hot paths (ingest,
 * detector) check a trace in one pass and keep slices of its text instead of a json-c tree:
 * allocating and freeing that tree was most of their CPU time. */
#ifndef PL_JSON_SCAN_H
#define PL_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#define PL_JSON_SCAN_MAX_DEPTH 32 /* as json-c's default */

enum pl_json_kind {
    PL_JSON_ABSENT = 0,
    PL_JSON_NULL,
    PL_JSON_BOOL,
    PL_JSON_NUMBER,
    PL_JSON_STRING,
    PL_JSON_ARRAY,
    PL_JSON_OBJECT,
};

/** A string token: its raw contents between the quotes and its decoded length. */
struct pl_json_str {
    const char *raw;
    size_t raw_len;
    size_t len;   /* bytes once unescaped */
    bool escaped; /* raw holds escapes: decode before use */
};

/** A scanned value: its kind and its JSON text. */
struct pl_json_value {
    enum pl_json_kind kind;
    const char *text;
    size_t text_len;
    bool is_int;            /* numbers without fraction or exponent */
    size_t count;           /* arrays: items; objects: members */
    struct pl_json_str str; /* strings */
};

/** Scanner state over [p, end). err names the first problem. */
struct pl_json_scan {
    const char *p, *end;
    int depth;
    bool nul; /* the error is a \u0000 escape (PostgreSQL's jsonb cannot hold one) */
    char err[128];
};

void pl_json_scan_init(struct pl_json_scan *s, const char *text, size_t len);

/** @brief Skips whitespace; true if a byte follows. */
bool pl_json_scan_ws(struct pl_json_scan *s);

/** @brief Scans (checks and skips) any value at the cursor. */
bool pl_json_scan_value(struct pl_json_scan *s, struct pl_json_value *v);

/**
 * @brief Object iteration: call with i = 0, 1, ... after pl_json_scan_enter(s, '{').
 * @returns 1 with the member's key scanned and its ':' consumed (the value is next), 0 at the
 *          closing brace (consumed), -1 on a syntax error.
 */
int pl_json_scan_member(struct pl_json_scan *s, size_t i, struct pl_json_str *key);

/** @brief Array iteration, like pl_json_scan_member: 1 when an item is next. */
int pl_json_scan_item(struct pl_json_scan *s, size_t i);

/** @brief Consumes the opening '{' or '[' (after whitespace). */
bool pl_json_scan_enter(struct pl_json_scan *s, char open);

/** @brief True when only whitespace is left. */
bool pl_json_scan_done(struct pl_json_scan *s);

/** @brief Unescapes a scanned string into out (out holds str->len + 1 bytes; NUL-terminated). */
void pl_json_str_decode(const struct pl_json_str *str, char *out);

/** @brief True when the scanned string equals lit. */
bool pl_json_str_eq(const struct pl_json_str *str, const char *lit);

/** @brief Whether len bytes at s are valid UTF-8 (no overlong forms, surrogates or code points
 *         past U+10FFFF), as the scanner requires of strings. */
bool pl_utf8_valid(const char *s, size_t len);

#endif
