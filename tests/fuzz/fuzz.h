/* Helpers shared by the libFuzzer targets: the entry point's prototype, invariant checks that
 * abort (so libFuzzer keeps the input as a crash) and small independent oracles. */
#ifndef PL_FUZZ_H
#define PL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant: on failure names it with a printf-style detail and aborts. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The bytes as a NUL-terminated string (cut at the first NUL); the caller frees it. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A well-formed UTF-8 sequence at p (RFC 3629), written apart from the code under test. */
static inline size_t fuzz_utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static inline bool fuzz_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = fuzz_utf8_len((const unsigned char *)s + i, n - i);
        if (!l)
            return false;
        i += l;
    }
    return true;
}

/* Code points of valid UTF-8 text. */
static inline size_t fuzz_utf8_chars(const char *s, size_t n)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    return chars;
}

/* The input split at its first '\n' bytes: up to n fields (the last takes the rest). */
struct fuzz_fields {
    const char *p[8];
    size_t len[8];
    size_t n;
};

static inline void fuzz_split_lines(const uint8_t *data, size_t size, size_t n,
                                    struct fuzz_fields *f)
{
    const char *s = (const char *)data, *end = s + size;
    f->n = 0;
    while (f->n < n && f->n < 8) {
        const char *nl = f->n + 1 < n ? memchr(s, '\n', (size_t)(end - s)) : NULL;
        f->p[f->n] = s;
        f->len[f->n] = nl ? (size_t)(nl - s) : (size_t)(end - s);
        f->n++;
        if (!nl)
            break;
        s = nl + 1;
    }
}

#endif
