#include "http.h"

#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct pl_http_server {
    struct MHD_Daemon *daemon;
    const struct pl_http_route *routes;
    size_t nroutes;
    size_t max_body;
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

static void http_count(int status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "code=\"%d\"", status);
    pl_metric_add(pl_metric_counter("pl_http_requests_total", labels,
                                    "HTTP requests answered, by status code"),
                  1);
}

static enum MHD_Result http_send(struct MHD_Connection *conn, struct pl_http_response *res)
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
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)res->status, r);
    MHD_destroy_response(r);
    http_count(res->status);
    return ret;
}

static void http_dispatch(struct pl_http_server *srv, struct MHD_Connection *conn,
                          const char *method, const char *url, struct http_upload *up,
                          struct pl_http_response *res)
{
    char segbuf[1024];
    bool path_matched = false;
    for (size_t i = 0; i < srv->nroutes; i++) {
        struct pl_http_request req = {
            .method = method, .path = url, .conn = conn, .user = srv->user};
        if (!http_route_match(srv->routes[i].pattern, url, segbuf, sizeof(segbuf), req.params,
                              &req.nparams))
            continue;
        path_matched = true;
        /* HEAD is GET without the body (MHD drops the body for HEAD). */
        const char *as = strcmp(method, "HEAD") == 0 ? "GET" : method;
        if (strcmp(srv->routes[i].method, as) != 0)
            continue;
        req.body = up->buf ? up->buf : "";
        req.body_len = up->len;
        srv->routes[i].handler(&req, res);
        if (!res->status)
            pl_http_error(res, 500, "internal error: handler set no response");
        return;
    }
    if (path_matched)
        pl_http_error(res, 405, "method %s not allowed on %s", method, url);
    else
        pl_http_error(res, 404, "no route for %s %s", method, url);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct pl_http_server *srv = cls;
    struct http_upload *up = *con_cls;
    if (!up) {
        up = calloc(1, sizeof(*up));
        if (!up)
            return MHD_NO;
        *con_cls = up;
        /* Refuse a declared oversize body before reading any of it. */
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->max_body) {
            /* Answer now: MHD then closes the connection instead of reading the body. */
            up->too_large = true;
            struct pl_http_response res = {0};
            pl_http_error(&res, 413, "request body larger than %zu bytes", srv->max_body);
            return http_send(conn, &res);
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
    if (up->too_large)
        pl_http_error(&res, 413, "request body larger than %zu bytes", srv->max_body);
    else
        http_dispatch(srv, conn, method, url, up, &res);
    return http_send(conn, &res);
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

static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    pl_warn("http: %s", msg);
}

struct pl_http_server *pl_http_server_start(const char *bind, int port, int threads,
                                            size_t max_body, const struct pl_http_route *routes,
                                            size_t nroutes, void *user, char *err, size_t errsz)
{
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
    srv->user = user;
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        http_access, srv, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(threads > 1 ? threads : 0), MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
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
    free(srv);
}
