/* Raw HTTP over a socket for tests of what curl would not send (framing, limits, headers):
 * send, read until the server closes, and look at the answer. Include after cmocka.h. */
#ifndef PL_TEST_RAW_HTTP_H
#define PL_TEST_RAW_HTTP_H

#include "util.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static inline void raw_send(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes the connection or timeout_ms passes; sets *closed. */
static inline char *raw_read(int fd, int timeout_ms, bool *closed)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    *closed = false;
    int64_t deadline = pl_now_ms() + timeout_ms;
    for (int64_t left; (left = deadline - pl_now_ms()) > 0;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            break;
        if (len + 1024 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            *closed = true;
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static inline long raw_status(const char *resp)
{
    long status = 0;
    if (sscanf(resp, "HTTP/1.1 %ld ", &status) != 1)
        fail_msg("not an HTTP response: \"%.200s\"", resp);
    return status;
}

/* The value of header name in the response's header block, or "" (static buffer). */
static inline const char *raw_header(const char *resp, const char *name)
{
    static char value[256];
    value[0] = '\0';
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *l = strstr(resp, "\r\n"); l && (!end || l < end); l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, name, nlen) == 0 && l[2 + nlen] == ':') {
            const char *v = l + 3 + nlen;
            while (*v == ' ')
                v++;
            snprintf(value, sizeof(value), "%.*s", (int)strcspn(v, "\r"), v);
            break;
        }
    return value;
}

static inline size_t raw_count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#endif
