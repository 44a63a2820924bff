/* pl-api under connection hoarding and ambiguous framing: per-address limit, idle timeout,
 * request smuggling refused, auth and method headers, aborted-connection log rate. */
#include "itest.h"

#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../raw_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define IDLE        2000 /* idle connections from 127.0.0.1 */
#define PER_IP      16
#define TIMEOUT_S   3
#define FD_HEADROOM 256

static pid_t api_pid;
static int api_port;
static char api_log[128];

/* A socket from source (e.g. "127.0.0.2") to the api; -1 when the connect fails. */
static int tcp_connect(const char *source)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in from = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, source, &from.sin_addr), 1);
    /* Any address in 127/8 is loopback: the server sees a second client. */
    if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0)
        fail_msg("bind %s: %s", source, strerror(errno));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)api_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request from source on its own connection; the whole answer. */
static char *exchange(const char *source, const char *request, bool *closed)
{
    int fd = tcp_connect(source);
    assert_true(fd >= 0);
    raw_send(fd, request, strlen(request));
    char *out = raw_read(fd, 5000, closed);
    close(fd);
    return out;
}

static int setup(void **state)
{
    (void)state;
    /* IDLE sockets here, and the api (a child) inherits the limit too. */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t need = IDLE + FD_HEADROOM;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
            fprintf(stderr, "open-file hard limit %llu is below %llu\n",
                    (unsigned long long)rl.rlim_max, (unsigned long long)need);
            return -1;
        }
        rl.rlim_cur = need;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    char per_ip[64], timeout[64];
    snprintf(per_ip, sizeof(per_ip), "PL_HTTP_PER_IP_LIMIT=%d", PER_IP);
    snprintf(timeout, sizeof(timeout), "PL_HTTP_TIMEOUT_S=%d", TIMEOUT_S);
    const char *env[] = {per_ip, timeout, "PL_HTTP_MAX_CONNECTIONS=8192", NULL};
    api_pid = itest_service_start("pl-api", "itest-http-limits", env, api_log);
    const char *url = itest_service_url();
    api_port = (int)strtol(strrchr(url, ':') + 1, NULL, 10);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    itest_service_stop(api_pid);
    return 0;
}

static void test_idle_connections_do_not_starve_others(void **state)
{
    (void)state;
    static int fds[IDLE];
    static int64_t opened[IDLE];
    int64_t started = pl_now_ms();
    for (int i = 0; i < IDLE; i++) {
        fds[i] = tcp_connect("127.0.0.1");
        if (fds[i] < 0)
            fail_msg("connection %d refused by the kernel: %s", i, strerror(errno));
        opened[i] = pl_now_ms();
        /* A request line and nothing more, or not even a whole line. */
        const char *part = i % 2 ? "GET / HTTP/1.1\r\n" : "GET / HT";
        (void)send(fds[i], part, strlen(part), MSG_NOSIGNAL); /* may be closed already */
    }

    /* Another client is served at once. */
    int64_t t0 = pl_now_ms();
    bool closed;
    char *resp = exchange("127.0.0.2",
                          "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &closed);
    int64_t took = pl_now_ms() - t0;
    assert_int_equal(raw_status(resp), 200);
    free(resp);
    if (took >= 1000)
        fail_msg("/healthz took %lld ms with %d idle connections open", (long long)took, IDLE);

    /* The server closes every one: past the per-address limit at once, the rest when idle
     * for TIMEOUT_S. */
    static struct pollfd p[IDLE];
    int open = IDLE;
    int64_t last_close_age = 0;
    int64_t deadline = pl_now_ms() + (TIMEOUT_S + 15) * 1000;
    while (open > 0 && pl_now_ms() < deadline) {
        int n = 0;
        for (int i = 0; i < IDLE; i++)
            if (fds[i] >= 0)
                p[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(p, (nfds_t)n, 200) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!p[k].revents)
                continue;
            char b[64];
            ssize_t got = recv(p[k].fd, b, sizeof(b), MSG_DONTWAIT);
            if (got > 0)
                fail_msg("an idle connection got an answer: %.*s", (int)got, b);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                continue;
            for (int i = 0; i < IDLE; i++)
                if (fds[i] == p[k].fd) {
                    int64_t age = pl_now_ms() - opened[i];
                    if (age > last_close_age)
                        last_close_age = age;
                    close(fds[i]);
                    fds[i] = -1;
                    open--;
                    break;
                }
        }
    }
    for (int i = 0; i < IDLE; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (open)
        fail_msg("%d of %d idle connections still open after %d s", open, IDLE, TIMEOUT_S + 15);
    /* The ones the server took in were closed by the idle timeout, not before. */
    assert_true(last_close_age >= (TIMEOUT_S - 1) * 1000);

    /* Counted in /metrics; logged in a line or two, not one per connection. */
    resp = exchange("127.0.0.2", "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                    &closed);
    assert_int_equal(raw_status(resp), 200);
    const char *m = strstr(resp, "pl_http_connection_problems_total{reason=\"limit\"} ");
    assert_non_null(m);
    long limited =
        strtol(m + strlen("pl_http_connection_problems_total{reason=\"limit\"} "), NULL, 10);
    if (limited < IDLE - PER_IP)
        fail_msg("%ld connections counted as refused, want >= %d", limited, IDLE - PER_IP);
    assert_non_null(strstr(resp, "pl_http_connections_open "));
    free(resp);
    FILE *f = fopen(api_log, "r");
    assert_non_null(f);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "connection limit"))
            lines++;
    fclose(f);
    int64_t allowed = 1 + (pl_now_ms() - started) / 10000; /* one line per 10 s at most */
    if (lines > allowed)
        fail_msg("%d log lines about %ld refused connections, want <= %lld", lines, limited,
                 (long long)allowed);
}

static void test_smuggled_request_not_served(void **state)
{
    (void)state;
    /* Chunked ends the body at "0"; what follows would be a second request. */
    bool closed;
    char *resp = exchange("127.0.0.2",
                          "POST /v1/traces HTTP/1.1\r\nHost: a\r\nContent-Length: 39\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                          "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                          &closed);
    assert_int_equal(raw_status(resp), 400);
    assert_int_equal(raw_count(resp, "\r\nDate: "), 1); /* one response only */
    assert_string_equal(raw_header(resp, "Connection"), "close");
    assert_string_equal(raw_header(resp, "Content-Type"), "application/json");
    assert_non_null(strstr(resp, "{\"error\":"));
    assert_true(closed);
    free(resp);

    resp = exchange("127.0.0.2",
                    "POST /v1/traces HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                    "Content-Length: 36\r\n\r\n{}GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                    &closed);
    assert_int_equal(raw_status(resp), 400);
    assert_int_equal(raw_count(resp, "\r\nDate: "), 1);
    assert_true(closed);
    free(resp);

    resp = exchange("127.0.0.2",
                    "POST /v1/traces HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"
                    "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                    &closed);
    assert_int_equal(raw_status(resp), 400);
    assert_int_equal(raw_count(resp, "\r\nDate: "), 1);
    assert_true(closed);
    free(resp);
}

static void test_auth_and_method_headers(void **state)
{
    (void)state;
    bool closed;
    char *resp = exchange(
        "127.0.0.2", "GET /v1/projects HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &closed);
    assert_int_equal(raw_status(resp), 401);
    assert_string_equal(raw_header(resp, "WWW-Authenticate"), "Bearer");
    free(resp);

    resp =
        exchange("127.0.0.2",
                 "DELETE /v1/projects HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", &closed);
    assert_int_equal(raw_status(resp), 405);
    assert_string_equal(raw_header(resp, "Allow"), "GET, HEAD, POST");
    free(resp);

    /* The scheme is case-insensitive. */
    PGconn *db = itest_pg(NULL);
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    const char *schemes[] = {"bearer", "BEARER", "Bearer"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        char req[512];
        snprintf(req, sizeof(req),
                 "GET /v1/projects HTTP/1.1\r\nHost: a\r\nAuthorization: %s %s\r\n"
                 "Connection: close\r\n\r\n",
                 schemes[i], t.viewer_key);
        resp = exchange("127.0.0.2", req, &closed);
        if (raw_status(resp) != 200)
            fail_msg("scheme %s: %.300s", schemes[i], resp);
        free(resp);
    }
    PQfinish(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connections_do_not_starve_others),
        cmocka_unit_test(test_smuggled_request_not_served),
        cmocka_unit_test(test_auth_and_method_headers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
