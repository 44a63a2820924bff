/* Strict JSON scanning without building a tree (see json_scan.h). */
#include "json_scan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_NUMBER_MAX 64 /* longer numbers are refused: no double holds them anyway */

__attribute__((format(printf, 2, 3))) static bool scan_fail(struct pl_json_scan *s, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return false;
}

void pl_json_scan_init(struct pl_json_scan *s, const char *text, size_t len)
{
    s->p = text;
    s->end = text + len;
    s->depth = 0;
    s->nul = false;
    s->err[0] = '\0';
}

bool pl_json_scan_ws(struct pl_json_scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
    return s->p < s->end;
}

bool pl_json_scan_done(struct pl_json_scan *s)
{
    return !pl_json_scan_ws(s);
}

static int scan_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Length of the UTF-8 sequence at p (0: invalid), overlongs and surrogates refused. */
static size_t scan_utf8(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool pl_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = *p < 0x80 ? 1 : scan_utf8(p, end);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

/* Bytes \u escapes at p (past the backslash-u) decode to; 0 when invalid. Sets *used. */
static size_t scan_unicode(struct pl_json_scan *s, const char *p, size_t *used)
{
    if (s->end - p < 4 || scan_hex4(p) < 0)
        return scan_fail(s, "invalid \\u escape"), 0;
    int cp = scan_hex4(p);
    *used = 4;
    if (cp == 0) {
        s->nul = true;
        return scan_fail(s, "NUL characters (\\u0000) are not supported"), 0;
    }
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return scan_fail(s, "unpaired surrogate in a \\u escape"), 0;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        int lo = s->end - p >= 10 && p[4] == '\\' && p[5] == 'u' ? scan_hex4(p + 6) : -1;
        if (lo < 0xdc00 || lo > 0xdfff)
            return scan_fail(s, "unpaired surrogate in a \\u escape"), 0;
        *used = 10;
        return 4;
    }
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
}

static bool scan_string(struct pl_json_scan *s, struct pl_json_str *out)
{
    if (s->p >= s->end || *s->p != '"')
        return scan_fail(s, "expected a string");
    const char *p = s->p + 1;
    size_t len = 0;
    bool escaped = false;
    for (;;) {
        /* Plain ASCII runs first: most text has nothing to check. */
        while (p < s->end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' &&
               *p != '\\') {
            p++;
            len++;
        }
        if (p >= s->end)
            return scan_fail(s, "unterminated string");
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20)
            return scan_fail(s, "control character in a string");
        if (c >= 0x80) {
            size_t n = scan_utf8((const unsigned char *)p, (const unsigned char *)s->end);
            if (!n)
                return scan_fail(s, "invalid UTF-8 in a string");
            p += n;
            len += n;
            continue;
        }
        /* a backslash */
        escaped = true;
        if (s->end - p < 2)
            return scan_fail(s, "unterminated string");
        char e = p[1];
        if (e == 'u') {
            size_t used = 0, n = scan_unicode(s, p + 2, &used);
            if (!n)
                return false;
            p += 2 + used;
            len += n;
        } else if (strchr("\"\\/bfnrt", e) && e) {
            p += 2;
            len++;
        } else {
            return scan_fail(s, "invalid escape \\%c", e);
        }
    }
    out->raw = s->p + 1;
    out->raw_len = (size_t)(p - s->p - 1);
    out->len = len;
    out->escaped = escaped;
    s->p = p + 1;
    return true;
}

static bool scan_digits(const char **p, const char *end)
{
    const char *start = *p;
    while (*p < end && **p >= '0' && **p <= '9')
        (*p)++;
    return *p > start;
}

static bool scan_number(struct pl_json_scan *s, struct pl_json_value *v)
{
    const char *p = s->p;
    bool is_int = true;
    if (p < s->end && *p == '-')
        p++;
    if (p < s->end && *p == '0')
        p++;
    else if (!scan_digits(&p, s->end))
        return scan_fail(s, "invalid number");
    if (p < s->end && *p == '.') {
        p++;
        is_int = false;
        if (!scan_digits(&p, s->end))
            return scan_fail(s, "invalid number");
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        is_int = false;
        if (p < s->end && (*p == '+' || *p == '-'))
            p++;
        if (!scan_digits(&p, s->end))
            return scan_fail(s, "invalid number");
    }
    size_t n = (size_t)(p - s->p);
    if (n > SCAN_NUMBER_MAX)
        return scan_fail(s, "number too long");
    /* Out of a double's range: neither evaluators nor PostgreSQL's jsonb could use it. */
    char buf[SCAN_NUMBER_MAX + 1];
    memcpy(buf, s->p, n);
    buf[n] = '\0';
    if (!is_int) {
        errno = 0;
        double d = strtod(buf, NULL);
        if (errno == ERANGE && (d == 0 || !isfinite(d))) /* as PostgreSQL's float8in */
            return scan_fail(s, "number out of range");
    }
    v->is_int = is_int;
    s->p = p;
    return true;
}

static bool scan_literal(struct pl_json_scan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return scan_fail(s, "unexpected character '%c'", *s->p);
    s->p += n;
    return true;
}

bool pl_json_scan_enter(struct pl_json_scan *s, char open)
{
    if (!pl_json_scan_ws(s) || *s->p != open)
        return scan_fail(s, "expected '%c'", open);
    if (++s->depth > PL_JSON_SCAN_MAX_DEPTH)
        return scan_fail(s, "nesting deeper than %d levels", PL_JSON_SCAN_MAX_DEPTH);
    s->p++;
    return true;
}

/* Before member or item i: the separator, or the closing bracket (consumed: returns 0). */
static int scan_next(struct pl_json_scan *s, size_t i, char close)
{
    if (!pl_json_scan_ws(s))
        return scan_fail(s, "unexpected end of input"), -1;
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    if (i > 0) {
        if (*s->p != ',')
            return scan_fail(s, "expected ',' or '%c'", close), -1;
        s->p++;
        if (!pl_json_scan_ws(s))
            return scan_fail(s, "unexpected end of input"), -1;
        if (*s->p == close)
            return scan_fail(s, "trailing comma"), -1;
    }
    return 1;
}

int pl_json_scan_member(struct pl_json_scan *s, size_t i, struct pl_json_str *key)
{
    int r = scan_next(s, i, '}');
    if (r != 1)
        return r;
    if (!scan_string(s, key))
        return -1;
    if (!pl_json_scan_ws(s) || *s->p != ':')
        return scan_fail(s, "expected ':'"), -1;
    s->p++;
    return 1;
}

int pl_json_scan_item(struct pl_json_scan *s, size_t i)
{
    return scan_next(s, i, ']');
}

bool pl_json_scan_value(struct pl_json_scan *s, struct pl_json_value *v)
{
    if (!pl_json_scan_ws(s))
        return scan_fail(s, "unexpected end of input");
    const char *start = s->p;
    bool ok;
    v->count = 0;
    v->is_int = false;
    switch (*s->p) {
    case '"':
        v->kind = PL_JSON_STRING;
        ok = scan_string(s, &v->str);
        break;
    case '{': {
        v->kind = PL_JSON_OBJECT;
        ok = pl_json_scan_enter(s, '{');
        struct pl_json_str key;
        struct pl_json_value inner;
        int r;
        while (ok && (r = pl_json_scan_member(s, v->count, &key)) == 1) {
            ok = pl_json_scan_value(s, &inner);
            v->count++;
        }
        ok = ok && r == 0;
        break;
    }
    case '[': {
        v->kind = PL_JSON_ARRAY;
        ok = pl_json_scan_enter(s, '[');
        struct pl_json_value inner;
        int r;
        while (ok && (r = pl_json_scan_item(s, v->count)) == 1) {
            ok = pl_json_scan_value(s, &inner);
            v->count++;
        }
        ok = ok && r == 0;
        break;
    }
    case 't':
    case 'f':
        v->kind = PL_JSON_BOOL;
        ok = scan_literal(s, *s->p == 't' ? "true" : "false");
        break;
    case 'n':
        v->kind = PL_JSON_NULL;
        ok = scan_literal(s, "null");
        break;
    default:
        v->kind = PL_JSON_NUMBER;
        ok = (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
                 ? scan_number(s, v)
                 : scan_fail(s, "unexpected character '%c'", *s->p);
    }
    v->text = start;
    v->text_len = (size_t)(s->p - start);
    return ok;
}

void pl_json_str_decode(const struct pl_json_str *str, char *out)
{
    if (!str->escaped) {
        memcpy(out, str->raw, str->raw_len);
        out[str->raw_len] = '\0';
        return;
    }
    const char *p = str->raw, *end = str->raw + str->raw_len;
    char *o = out;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            unsigned cp = (unsigned)scan_hex4(p);
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) { /* paired: checked by the scan */
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)scan_hex4(p + 2) - 0xdc00);
                p += 6;
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xc0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xe0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *o++ = (char)(0xf0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: /* " \ / */
            *o++ = e;
        }
    }
    *o = '\0';
}

bool pl_json_str_eq(const struct pl_json_str *str, const char *lit)
{
    if (!str->escaped)
        return strlen(lit) == str->raw_len && memcmp(str->raw, lit, str->raw_len) == 0;
    char buf[256];
    if (str->len >= sizeof(buf))
        return false;
    pl_json_str_decode(str, buf);
    return strcmp(buf, lit) == 0;
}
