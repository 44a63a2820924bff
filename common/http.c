/* The HTTP server on libmicrohttpd: routing, limits, framing checks, JSON errors. */
#include "http.h"

#include "log.h"
#include "metrics.h"
#include "util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

/* File descriptors kept for everything but client connections: database pool, Kafka,
 * outgoing HTTP, logs, the server's own epoll and listen sockets. */
#define HTTP_FD_RESERVE 256

/* At most one log line per kind of client-caused connection problem in this period. */
#define HTTP_NOISE_INTERVAL_MS 10000

struct pl_http_server {
    struct MHD_Daemon *daemon;
    const struct pl_http_route *routes;
    size_t nroutes;
    size_t max_body;
    size_t max_header_bytes;
    void *user;
    int port;
};

/* Per-request upload state, kept in MHD's connection-class pointer. */
struct http_upload {
    char *buf;
    size_t len;
    bool too_large;
};

/* The end of the path segment starting at s. */
static const char *http_segment_end(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash ? slash : s + strlen(s);
}

/* Matches path against pattern; fills params (pointers into segbuf) on success. */
static bool http_route_match(const char *pattern, const char *path, char *segbuf, size_t segsz,
                             const char **params, int *nparams)
{
    size_t used = 0;
    *nparams = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        const char *pend = http_segment_end(p);
        const char *send = http_segment_end(s);
        size_t plen = (size_t)(pend - p), slen = (size_t)(send - s);
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (slen == 0 || *nparams >= PL_HTTP_MAX_PARAMS || used + slen + 1 > segsz)
                return false;
            memcpy(segbuf + used, s, slen);
            segbuf[used + slen] = '\0';
            params[(*nparams)++] = segbuf + used;
            used += slen + 1;
        } else if (plen != slen || strncmp(p, s, plen) != 0) {
            return false;
        }
        p = pend;
        s = send;
    }
    return *p == '\0' && *s == '\0';
}

void pl_http_json(struct pl_http_response *res, int status, json_object *obj)
{
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    pl_http_json_text(res, status, text, strlen(text));
    json_object_put(obj);
}

void pl_http_json_text(struct pl_http_response *res, int status, const char *json, size_t len)
{
    free(res->body);
    res->body = strndup(json, len);
    res->status = res->body ? status : 500;
    res->content_type = "application/json";
}

void pl_http_error(struct pl_http_response *res, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(msg));
    pl_http_json(res, status, o);
}

void pl_http_add_header(struct pl_http_response *res, const char *name, const char *value)
{
    if (res->nheaders >= PL_HTTP_MAX_HEADERS) {
        pl_warn("http: header %s dropped: more than %d", name, PL_HTTP_MAX_HEADERS);
        return;
    }
    res->headers[res->nheaders][0] = name;
    res->headers[res->nheaders++][1] = value;
}

void pl_http_text(struct pl_http_response *res, int status, const char *content_type, char *body)
{
    free(res->body);
    res->body = body;
    res->status = status;
    res->content_type = content_type;
}

const char *pl_http_query(const struct pl_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *pl_http_header(const struct pl_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

bool pl_http_peer(const struct pl_http_request *req, char *out, size_t outsz)
{
    const union MHD_ConnectionInfo *info =
        req->conn ? MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    const struct sockaddr *sa = info ? info->client_addr : NULL;
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                         (socklen_t)outsz) != NULL;
    if (sa->sa_family == AF_INET6)
        return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                         (socklen_t)outsz) != NULL;
    return false;
}

struct query_check {
    const char *const *allowed;
    const char *unknown;
};

static enum MHD_Result http_query_check_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    (void)kind;
    (void)value;
    struct query_check *qc = cls;
    for (const char *const *a = qc->allowed; *a; a++)
        if (strcasecmp(*a, key) == 0) /* MHD looks values up ignoring case, so must we */
            return MHD_YES;
    qc->unknown = key;
    return MHD_NO;
}

const char *pl_http_query_unknown(const struct pl_http_request *req, const char *const *allowed)
{
    struct query_check qc = {allowed, NULL};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, http_query_check_one, &qc);
    return qc.unknown;
}

/* ---- client-caused connection problems: counted, logged at a bounded rate ----------------- */

enum http_noise { HTTP_NOISE_ABORTED, HTTP_NOISE_MALFORMED, HTTP_NOISE_LIMIT, HTTP_NOISE_N };

static const struct {
    const char *reason; /* the metric label */
    const char *what;   /* for the log line */
} http_noise_kinds[HTTP_NOISE_N] = {
    {"aborted", "connections closed or reset by the client before the exchange finished"},
    {"malformed", "requests refused by the HTTP library as malformed"},
    {"limit", "connections refused at a connection limit (per client address or in all)"},
};

/* The libmicrohttpd 0.9.75 messages, by kind; other messages are logged as they come. */
static const struct {
    enum http_noise kind;
    const char *prefix;
} http_noise_messages[] = {
    {HTTP_NOISE_ABORTED, "Connection was closed by remote side"},
    {HTTP_NOISE_ABORTED, "Socket has been disconnected"},
    {HTTP_NOISE_ABORTED, "Connection socket is closed"},
    {HTTP_NOISE_ABORTED, "Failed to send "},
    {HTTP_NOISE_ABORTED, "The connection was forcibly closed"},
    {HTTP_NOISE_MALFORMED, "Error processing request"},
    {HTTP_NOISE_MALFORMED, "Failed to parse `Content-Length'"},
    {HTTP_NOISE_MALFORMED, "Too large value of 'Content-Length'"},
    {HTTP_NOISE_MALFORMED, "Received HTTP/1.1 request without"},
    {HTTP_NOISE_MALFORMED, "Not enough memory in pool to allocate header record"},
    {HTTP_NOISE_LIMIT, "Server reached connection limit"},
};

static pthread_mutex_t http_noise_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int64_t pending;   /* events since the last line */
    int64_t last_ms;   /* when the last line was written; 0: never */
    char example[200]; /* the latest message */
} http_noise[HTTP_NOISE_N];

/* Writes the pending count of kind (lock held). */
static void http_noise_emit(enum http_noise kind, int64_t now)
{
    int64_t since_s = http_noise[kind].last_ms ? (now - http_noise[kind].last_ms) / 1000 : 0;
    if (http_noise[kind].last_ms)
        pl_warn("http: %lld %s in the last %lld s (latest: %s)",
                (long long)http_noise[kind].pending, http_noise_kinds[kind].what,
                (long long)since_s, http_noise[kind].example);
    else
        pl_warn("http: %lld %s (latest: %s); further ones are summed up at most every %d s",
                (long long)http_noise[kind].pending, http_noise_kinds[kind].what,
                http_noise[kind].example, HTTP_NOISE_INTERVAL_MS / 1000);
    http_noise[kind].pending = 0;
    http_noise[kind].last_ms = now;
}

static void http_noise_add(enum http_noise kind, const char *msg)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", http_noise_kinds[kind].reason);
    pl_metric_add(pl_metric_counter("pl_http_connection_problems_total", labels,
                                    "client-caused HTTP connection problems, by reason"),
                  1);
    int64_t now = pl_now_ms();
    pthread_mutex_lock(&http_noise_lock);
    http_noise[kind].pending++;
    snprintf(http_noise[kind].example, sizeof(http_noise[kind].example), "%s", msg);
    if (!http_noise[kind].last_ms || now - http_noise[kind].last_ms >= HTTP_NOISE_INTERVAL_MS)
        http_noise_emit(kind, now);
    pthread_mutex_unlock(&http_noise_lock);
}

/* Logs what was counted but not yet written (at server stop). */
static void http_noise_flush(void)
{
    int64_t now = pl_now_ms();
    pthread_mutex_lock(&http_noise_lock);
    for (int k = 0; k < HTTP_NOISE_N; k++)
        if (http_noise[k].pending)
            http_noise_emit((enum http_noise)k, now);
    pthread_mutex_unlock(&http_noise_lock);
}

/* ---- request framing: what libmicrohttpd 0.9.75 lets through ------------------------------ */

struct http_framing {
    int content_lengths;
    const char *content_length; /* the first */
    bool content_length_conflict;
    int transfer_encodings;
    const char *transfer_encoding; /* the first */
    bool has_host;
    const char *bad_name; /* a field name that is not an RFC 9110 token */
    size_t header_bytes;
};

static bool http_token(const char *s)
{
    if (!*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p)))
            return false;
    return true;
}

static enum MHD_Result http_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    (void)kind;
    struct http_framing *f = cls;
    value = value ? value : "";
    f->header_bytes += strlen(key) + strlen(value) + 4; /* ": " and CRLF */
    if (!f->bad_name && !http_token(key))
        f->bad_name = key;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->content_lengths++ == 0)
            f->content_length = value;
        else if (strcmp(f->content_length, value) != 0)
            f->content_length_conflict = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (f->transfer_encodings++ == 0)
            f->transfer_encoding = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->has_host = true;
    }
    return MHD_YES;
}

static enum MHD_Result http_framing_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    (void)kind;
    struct http_framing *f = cls;
    f->header_bytes += strlen(key) + (value ? strlen(value) + 1 : 0) + 1; /* '=' and '&' */
    return MHD_YES;
}

/* A request whose framing is ambiguous (RFC 9112 section 6.3) or over the header limit gets
 * an error status and message; 0 when it is fine. Answered with Connection: close, since
 * where its body ends, and so where a next request would start, is unknown. */
static int http_check_framing(const struct pl_http_server *srv, struct MHD_Connection *conn,
                              const char *url, const char *version, char *msg, size_t msgsz)
{
    struct http_framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, http_framing_header, &f);
    size_t url_bytes = strlen(url);
    f.header_bytes += url_bytes;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, http_framing_arg, &f);
    if (url_bytes > srv->max_header_bytes) {
        snprintf(msg, msgsz, "request target longer than %zu bytes", srv->max_header_bytes);
        return 414;
    }
    if (f.header_bytes > srv->max_header_bytes) {
        snprintf(msg, msgsz, "request header fields larger than %zu bytes", srv->max_header_bytes);
        return 431;
    }
    if (f.bad_name) {
        snprintf(msg, msgsz, "malformed header field name \"%.64s\"", f.bad_name);
        return 400;
    }
    if (f.content_length_conflict) {
        snprintf(msg, msgsz, "conflicting Content-Length headers");
        return 400;
    }
    if (f.transfer_encodings && f.content_lengths) {
        snprintf(msg, msgsz, "both Content-Length and Transfer-Encoding given");
        return 400;
    }
    /* libmicrohttpd decodes exactly one coding, "chunked"; anything else would be misread. */
    if (f.transfer_encodings > 1 ||
        (f.transfer_encodings && strcasecmp(f.transfer_encoding, "chunked") != 0)) {
        snprintf(msg, msgsz, "unsupported Transfer-Encoding (only \"chunked\")");
        return 400;
    }
    if (!f.has_host && version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0) {
        snprintf(msg, msgsz, "HTTP/1.1 request without a Host header");
        return 400;
    }
    return 0;
}

static void http_count(int status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "code=\"%d\"", status);
    pl_metric_add(pl_metric_counter("pl_http_requests_total", labels,
                                    "HTTP requests answered, by status code"),
                  1);
}

static bool http_has_header(const struct pl_http_response *res, const char *name)
{
    for (int i = 0; i < res->nheaders; i++)
        if (strcasecmp(res->headers[i][0], name) == 0)
            return true;
    return false;
}

/* Queues res; allow (may be NULL) is sent as Allow, close ends the connection after it. */
static enum MHD_Result http_send(struct MHD_Connection *conn, struct pl_http_response *res,
                                 const char *allow, bool close)
{
    if (!res->body) {
        res->body = strdup("");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        res->body ? strlen(res->body) : 0, res->body ? res->body : (void *)"",
        res->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(res->body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res->content_type ? res->content_type : "application/json");
    if (res->retry_after[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, res->retry_after);
    if (res->set_cookie[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, res->set_cookie);
    for (int i = 0; i < res->nheaders; i++)
        MHD_add_response_header(r, res->headers[i][0], res->headers[i][1]);
    /* RFC 9110 section 11.6.1: a 401 names the scheme to authenticate with. */
    if (res->status == 401 && !http_has_header(res, MHD_HTTP_HEADER_WWW_AUTHENTICATE))
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (allow && allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res->status, r);
    MHD_destroy_response(r);
    http_count(res->status);
    return ret;
}

/* Appends method to the comma-separated list allow unless it is there already. */
static void http_allow_add(char *allow, size_t allowsz, const char *method)
{
    size_t mlen = strlen(method);
    for (const char *p = allow; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == mlen && strncmp(p, method, len) == 0)
            return;
        p = comma ? comma + 2 : p + len;
    }
    size_t used = strlen(allow);
    snprintf(allow + used, allowsz - used, "%s%s", used ? ", " : "", method);
}

/* Runs the route for method and url; on 405 fills allow with the path's methods. */
static void http_dispatch(struct pl_http_server *srv, struct MHD_Connection *conn,
                          const char *method, const char *url, struct http_upload *up,
                          struct pl_http_response *res, char *allow, size_t allowsz)
{
    char segbuf[1024];
    bool path_matched = false;
    allow[0] = '\0';
    for (size_t i = 0; i < srv->nroutes; i++) {
        struct pl_http_request req = {
            .method = method, .path = url, .conn = conn, .user = srv->user};
        if (!http_route_match(srv->routes[i].pattern, url, segbuf, sizeof(segbuf), req.params,
                              &req.nparams))
            continue;
        path_matched = true;
        http_allow_add(allow, allowsz, srv->routes[i].method);
        if (strcmp(srv->routes[i].method, "GET") == 0)
            http_allow_add(allow, allowsz, "HEAD");
        /* HEAD is GET without the body (MHD drops the body for HEAD). */
        const char *as = strcmp(method, "HEAD") == 0 ? "GET" : method;
        if (strcmp(srv->routes[i].method, as) != 0)
            continue;
        allow[0] = '\0';
        req.body = up->buf ? up->buf : "";
        req.body_len = up->len;
        srv->routes[i].handler(&req, res);
        if (!res->status)
            pl_http_error(res, 500, "internal error: handler set no response");
        return;
    }
    if (path_matched) {
        pl_http_error(res, 405, "method %s not allowed on %s", method, url);
    } else {
        allow[0] = '\0';
        pl_http_error(res, 404, "no route for %s %s", method, url);
    }
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct pl_http_server *srv = cls;
    struct http_upload *up = *con_cls;
    if (!up) {
        up = calloc(1, sizeof(*up));
        if (!up)
            return MHD_NO;
        *con_cls = up;
        char msg[160];
        int status = http_check_framing(srv, conn, url, version, msg, sizeof(msg));
        if (status) {
            up->too_large = true; /* discard whatever body MHD still hands over */
            struct pl_http_response res = {0};
            pl_http_error(&res, status, "%s", msg);
            return http_send(conn, &res, NULL, true);
        }
        /* Refuse a declared oversize body before reading any of it. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->max_body) {
            /* Answer now: MHD then closes the connection instead of reading the body. */
            up->too_large = true;
            struct pl_http_response res = {0};
            pl_http_error(&res, 413, "request body larger than %zu bytes", srv->max_body);
            return http_send(conn, &res, NULL, true);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!up->too_large && up->len + *upload_data_size <= srv->max_body) {
            char *nb = realloc(up->buf, up->len + *upload_data_size + 1);
            if (!nb)
                return MHD_NO;
            memcpy(nb + up->len, upload_data, *upload_data_size);
            up->buf = nb;
            up->len += *upload_data_size;
            up->buf[up->len] = '\0';
        } else {
            up->too_large = true;
        }
        *upload_data_size = 0; /* consumed (or discarded) */
        return MHD_YES;
    }
    struct pl_http_response res = {0};
    char allow[128] = "";
    if (up->too_large)
        pl_http_error(&res, 413, "request body larger than %zu bytes", srv->max_body);
    else
        http_dispatch(srv, conn, method, url, up, &res, allow, sizeof(allow));
    return http_send(conn, &res, allow, false);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct http_upload *up = *con_cls;
    if (up) {
        free(up->buf);
        free(up);
        *con_cls = NULL;
    }
}

/* Open connections, for spotting a client that hoards them. */
static void http_connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                                   enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)conn;
    (void)socket_context;
    pl_metric_add(pl_metric_gauge("pl_http_connections_open", NULL, "open HTTP client connections"),
                  code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

/* The format attribute tells clang that fmt is libmicrohttpd's own printf format. */
__attribute__((format(printf, 2, 0))) static void http_mhd_log(void *cls, const char *fmt,
                                                               va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    /* Clients cause these at will (one short load test: thousands): count, do not flood. */
    for (size_t i = 0; i < sizeof(http_noise_messages) / sizeof(http_noise_messages[0]); i++)
        if (strncmp(msg, http_noise_messages[i].prefix, strlen(http_noise_messages[i].prefix)) ==
            0) {
            http_noise_add(http_noise_messages[i].kind, msg);
            return;
        }
    pl_warn("http: %s", msg);
}

/* The connection limit the process's open-file limit allows, raising the soft limit towards
 * the hard one when needed: past it accept() fails and MHD stops accepting for a while. */
static int http_connection_budget(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return want;
    rlim_t need = (rlim_t)want + HTTP_FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t target = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) ? need : rl.rlim_max;
        if (target > rl.rlim_cur) {
            struct rlimit raised = {target, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
                pl_info("http: raised the open-file limit from %llu to %llu",
                        (unsigned long long)rl.rlim_cur, (unsigned long long)target);
                rl.rlim_cur = target;
            }
        }
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        int cap = rl.rlim_cur > 2 * HTTP_FD_RESERVE ? (int)(rl.rlim_cur - HTTP_FD_RESERVE)
                                                    : (int)(rl.rlim_cur / 2);
        pl_warn("http: max_connections lowered from %d to %d: the open-file limit is %llu "
                "(hard limit %llu)",
                want, cap, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
        return cap;
    }
    return want;
}

struct pl_http_server *pl_http_server_start(const char *bind, int port, int threads,
                                            size_t max_body, const struct pl_http_route *routes,
                                            size_t nroutes, void *user, char *err, size_t errsz)
{
    return pl_http_server_start_limited(bind, port, threads, max_body, NULL, routes, nroutes, user,
                                        err, errsz);
}

static int http_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decoding of the path and the query, as libmicrohttpd's own, but for %00: decoded,
 * its NUL would end the C string there, and "/things/<id>%00junk" would find <id>. Left as
 * it is, it makes an id (or any value) one that matches nothing. */
static size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi = r[0] == '%' ? http_hex(r[1]) : -1, lo = hi >= 0 ? http_hex(r[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

struct pl_http_server *pl_http_server_start_limited(
    const char *bind, int port, int threads, size_t max_body, const struct pl_http_limits *limits,
    const struct pl_http_route *routes, size_t nroutes, void *user, char *err, size_t errsz)
{
    static const struct pl_http_limits defaults = {
        PL_HTTP_DEFAULT_PER_IP, PL_HTTP_DEFAULT_MAX_CONNECTIONS, PL_HTTP_DEFAULT_TIMEOUT_S,
        PL_HTTP_DEFAULT_MAX_HEADER_BYTES};
    if (!limits)
        limits = &defaults;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind, &addr.sin_addr) != 1) {
        snprintf(err, errsz, "http.bind: \"%s\" is not an IPv4 address", bind);
        return NULL;
    }
    struct pl_http_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    srv->routes = routes;
    srv->nroutes = nroutes;
    srv->max_body = max_body;
    srv->max_header_bytes = (size_t)limits->max_header_bytes;
    srv->user = user;
    unsigned pool = threads > 1 ? (unsigned)threads : 0;
    unsigned total = (unsigned)http_connection_budget(limits->max_connections);
    if (pool && total < pool)
        total = pool; /* MHD gives each pool thread its share; zero would refuse everything */
    /* The per-connection memory pool holds the request line and headers (and the response
     * headers): sized so a header block up to the limit reaches the JSON 431 check below,
     * while a much larger one still ends in MHD's own 431 or 414 page. */
    size_t memory = 2 * (size_t)limits->max_header_bytes + 8192;
    /* epoll, not select(): thousands of connections, file descriptors past FD_SETSIZE. */
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        http_access, srv, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_NOTIFY_COMPLETED,
        http_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, http_connection_notify, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)limits->timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        total, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)limits->per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory, MHD_OPTION_UNESCAPE_CALLBACK, http_unescape,
        NULL, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errsz, "cannot listen on %s:%d", bind, port);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : port;
    return srv;
}

int pl_http_server_port(const struct pl_http_server *srv)
{
    return srv->port;
}

void pl_http_server_stop(struct pl_http_server *srv)
{
    if (!srv)
        return;
    MHD_stop_daemon(srv->daemon);
    http_noise_flush();
    free(srv);
}
