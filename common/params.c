/* Validation of request input: query parameters, bodies, fields. */
#include "params.h"

#include "json_scan.h"

#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_param_int(const char *name, const char *value, long long def, long long min, long long max,
                 long long *out, char *err, size_t errsz)
{
    if (!value) {
        *out = def;
        return 0;
    }
    long long v;
    if (pl_parse_ll(value, &v) != 0 || v < min || v > max) {
        snprintf(err, errsz, "%s must be an integer between %lld and %lld", name, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* What json-c lets through and the rest of the system cannot hold or would read wrongly:
 * the ingest scanner's rules (valid UTF-8, no \u0000, which PostgreSQL's jsonb and C strings
 * cannot hold; numbers a double or an int64 can hold; no key twice in an object, where json-c
 * keeps the last silently), checked over the whole text with the failing place named. */
struct strict_check {
    struct pl_json_scan s;
    char path[160];
    char *err;
    size_t errsz;
    const char *what;
};

static bool strict_fail(struct strict_check *c, const char *why)
{
    if (c->path[0])
        snprintf(c->err, c->errsz, "%s: %s: %s", c->what, c->path, why);
    else
        snprintf(c->err, c->errsz, "%s: %s", c->what, why);
    return false;
}

static int strict_key_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A number token: finite and not flushed to zero as a double; an integer within int64. */
static bool strict_number_ok(const char *text, size_t len, bool is_int)
{
    char buf[64];
    if (len >= sizeof(buf))
        return false; /* longer than any number a double or an int64 holds */
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    if (is_int) {
        (void)strtoll(buf, NULL, 10);
        return errno == 0;
    }
    double d = strtod(buf, NULL);
    return errno == 0 && isfinite(d);
}

static bool strict_value(struct strict_check *c, int depth)
{
    struct pl_json_scan *s = &c->s;
    size_t at = strlen(c->path);
    if (!pl_json_scan_ws(s))
        return strict_fail(c, "ends early");
    char open = *s->p;
    if (open != '{' && open != '[') {
        struct pl_json_value v;
        if (!pl_json_scan_value(s, &v))
            return strict_fail(c, s->err);
        if (v.kind == PL_JSON_NUMBER && !strict_number_ok(v.text, v.text_len, v.is_int))
            return strict_fail(c, "number out of range");
        return true;
    }
    if (depth >= PL_JSON_SCAN_MAX_DEPTH)
        return strict_fail(c, "nests too deep");
    pl_json_scan_enter(s, open);
    char **keys = NULL;
    size_t nkeys = 0, cap = 0;
    bool ok = true;
    for (size_t i = 0; ok; i++) {
        struct pl_json_str key;
        int r = open == '{' ? pl_json_scan_member(s, i, &key) : pl_json_scan_item(s, i);
        if (r <= 0) {
            ok = r == 0 || strict_fail(c, s->err);
            break;
        }
        if (open == '{') {
            if (nkeys == cap) {
                cap = cap ? 2 * cap : 8;
                char **grown = realloc(keys, cap * sizeof(*keys));
                if (!grown) {
                    ok = strict_fail(c, "out of memory");
                    break;
                }
                keys = grown;
            }
            if (!(keys[nkeys] = malloc(key.len + 1))) {
                ok = strict_fail(c, "out of memory");
                break;
            }
            pl_json_str_decode(&key, keys[nkeys]);
            snprintf(c->path + at, sizeof(c->path) - at, "%s%s", at ? "." : "", keys[nkeys]);
            nkeys++;
        } else {
            snprintf(c->path + at, sizeof(c->path) - at, "[%zu]", i);
        }
        ok = strict_value(c, depth + 1);
        c->path[at] = '\0';
    }
    if (ok && nkeys > 1) {
        qsort(keys, nkeys, sizeof(*keys), strict_key_cmp);
        for (size_t i = 1; i < nkeys && ok; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                char why[128];
                snprintf(why, sizeof(why), "the key \"%.80s\" appears twice", keys[i]);
                ok = strict_fail(c, why);
            }
    }
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    return ok;
}

static bool strict_json(const char *text, size_t len, const char *what, char *err, size_t errsz)
{
    struct strict_check c = {.err = err, .errsz = errsz, .what = what};
    pl_json_scan_init(&c.s, text, len);
    return strict_value(&c, 0);
}

json_object *pl_param_json_object(const char *body, size_t len, bool allow_empty, char *err,
                                  size_t errsz)
{
    return pl_json_object_parse(body, len, allow_empty, "request body", err, errsz);
}

json_object *pl_json_object_parse(const char *body, size_t len, bool allow_empty, const char *what,
                                  char *err, size_t errsz)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len) {
        if (allow_empty)
            return json_object_new_object();
        snprintf(err, errsz, "%s must be a JSON object", what);
        return NULL;
    }
    /* Only an object is acceptable: another JSON value is refused before parsing (json-c
     * cannot finish a bare top-level number without a terminator anyway). */
    if (strchr("[\"-0123456789", body[i])) {
        snprintf(err, errsz, "%s must be a JSON object", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    /* Strict: no comments, trailing commas or NaN; valid UTF-8. Trailing data is let through
     * the tokener so that it can be named as such below. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    while (end < len &&
           (body[end] == ' ' || body[end] == '\n' || body[end] == '\r' || body[end] == '\t'))
        end++;
    /* true/false/null: a literal (null parses to NULL; json-c wants a terminator after the
     * others, and "true " has one) is valid JSON, just not an object. */
    if (body[i] != '{' &&
        (jerr == json_tokener_continue ||
         (jerr == json_tokener_success && !json_object_is_type(obj, json_type_object)))) {
        snprintf(err, errsz, "%s must be a JSON object", what);
        json_object_put(obj);
        return NULL;
    }
    if (!obj || jerr != json_tokener_success) {
        snprintf(err, errsz, "%s is not valid JSON: %s", what,
                 jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
        json_object_put(obj);
        return NULL;
    }
    if (end != len) {
        snprintf(err, errsz, "%s has data after the JSON value", what);
        json_object_put(obj);
        return NULL;
    }
    if (!strict_json(body, len, what, err, errsz)) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

enum pl_field_result pl_param_check_fields(json_object *obj, const struct pl_field_rule *rules,
                                           size_t n, char *err, size_t errsz)
{
    json_object_object_foreach(obj, key, val)
    {
        const struct pl_field_rule *r = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(rules[i].name, key) == 0)
                r = &rules[i];
        if (!r) {
            snprintf(err, errsz, "unknown field \"%s\"", key);
            return PL_FIELDS_BAD_REQUEST;
        }
        switch (r->type) {
        case PL_FIELD_OBJECT:
            if (!json_object_is_type(val, json_type_object)) {
                snprintf(err, errsz, "%s must be an object", key);
                return PL_FIELDS_BAD_REQUEST;
            }
            break;
        case PL_FIELD_BOOL:
            if (!json_object_is_type(val, json_type_boolean)) {
                snprintf(err, errsz, "%s must be a boolean", key);
                return PL_FIELDS_BAD_REQUEST;
            }
            break;
        case PL_FIELD_NUMBER:
        case PL_FIELD_FRACTION: {
            if (!json_object_is_type(val, json_type_int) &&
                !json_object_is_type(val, json_type_double)) {
                snprintf(err, errsz, "%s must be a number", key);
                return PL_FIELDS_BAD_REQUEST;
            }
            double v = json_object_get_double(val);
            double lo = r->type == PL_FIELD_FRACTION ? 0 : (double)r->min;
            double hi = r->type == PL_FIELD_FRACTION ? 1 : (double)r->max;
            if (!(v >= lo && v <= hi)) {
                snprintf(err, errsz, "%s must be between %g and %g", key, lo, hi);
                return PL_FIELDS_UNPROCESSABLE;
            }
            break;
        }
        case PL_FIELD_INT: {
            if (!json_object_is_type(val, json_type_int)) {
                snprintf(err, errsz, "%s must be an integer", key);
                return PL_FIELDS_BAD_REQUEST;
            }
            long long v = json_object_get_int64(val);
            if (v < r->min || v > r->max) {
                snprintf(err, errsz, "%s must be between %lld and %lld", key, r->min, r->max);
                return PL_FIELDS_UNPROCESSABLE;
            }
            break;
        }
        case PL_FIELD_STRING: {
            if (!json_object_is_type(val, json_type_string)) {
                snprintf(err, errsz, "%s must be a string", key);
                return PL_FIELDS_BAD_REQUEST;
            }
            /* characters, not bytes: the body is valid UTF-8 (strict_json), so every byte
             * that is not a continuation byte starts one */
            long long len = 0;
            for (const unsigned char *c = (const unsigned char *)json_object_get_string(val); *c;
                 c++)
                len += (*c & 0xC0) != 0x80;
            if (len < r->min || len > r->max) {
                snprintf(err, errsz, "%s must be %lld to %lld characters long", key, r->min,
                         r->max);
                return PL_FIELDS_UNPROCESSABLE;
            }
            break;
        }
        }
    }
    return PL_FIELDS_OK;
}

/* Fixed widths and calendar ranges: the API hands the text to `$n::timestamptz`, which
 * refuses Feb 31, year 0, second 61 or an offset of letters or past 15:59 (a 500 instead of
 * a 400) and reads "1-01-01" as 2001. A leap second (:60) and a bare '.' it takes. */
bool pl_param_timestamp_ok(const char *s)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strnlen(s, 20) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return false;
    int y = pl_digits(s, 4), mo = pl_digits(s + 5, 2), d = pl_digits(s + 8, 2),
        h = pl_digits(s + 11, 2), mi = pl_digits(s + 14, 2), sec = pl_digits(s + 17, 2);
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
        return false;
    const char *end = s + 19;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++)
            ;
    if (*end == 'Z')
        return end[1] == '\0';
    if ((*end != '+' && *end != '-') || strlen(end) != 6 || end[3] != ':')
        return false;
    int oh = pl_digits(end + 1, 2), om = pl_digits(end + 4, 2);
    return oh >= 0 && oh <= 15 && om >= 0 && om <= 59;
}
