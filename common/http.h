/* HTTP server on libmicrohttpd: a route table with {param} path segments, a body size
 * limit, connection limits, strict request framing, and JSON bodies for errors. Handlers run
 * on the server's worker threads. */
#ifndef PL_HTTP_H
#define PL_HTTP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define PL_HTTP_MAX_PARAMS 4

struct MHD_Connection;

struct pl_http_request {
    const char *method;
    const char *path;
    const char *params[PL_HTTP_MAX_PARAMS]; /* the {name} segments of the route, in order */
    int nparams;
    const char *body; /* NUL-terminated; "" when none */
    size_t body_len;
    void *user; /* the pointer given to pl_http_server_start */
    struct MHD_Connection *conn;
};

#define PL_HTTP_MAX_HEADERS 8

struct pl_http_response {
    int status;
    char *body; /* owned; freed after sending */
    const char *content_type;
    char retry_after[16]; /* sent as Retry-After when not empty */
    char set_cookie[256]; /* sent as Set-Cookie when not empty */
    /* further headers {name, value}, borrowed (static text): see pl_http_add_header */
    const char *headers[PL_HTTP_MAX_HEADERS][2];
    int nheaders;
};

typedef void (*pl_http_handler)(struct pl_http_request *req, struct pl_http_response *res);

struct pl_http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/things/{id}/do" */
    pl_http_handler handler;
};

struct pl_http_server;

/* Connection limits, so that one client cannot take the server offline. */
struct pl_http_limits {
    int per_ip;           /* open connections from one address; 0: unlimited */
    int max_connections;  /* open connections in all; lowered to what RLIMIT_NOFILE allows */
    int timeout_s;        /* a connection idle this long is closed */
    int max_header_bytes; /* request line and headers; larger gets 431 (414 for the URI) */
};

#define PL_HTTP_DEFAULT_PER_IP           256
#define PL_HTTP_DEFAULT_MAX_CONNECTIONS  4096
#define PL_HTTP_DEFAULT_TIMEOUT_S        30
#define PL_HTTP_DEFAULT_MAX_HEADER_BYTES 16384

/**
 * @brief Starts serving routes (the array must outlive the server) on bind:port (port 0:
 *        any free port) with a pool of threads; bodies over max_body get 413. The default
 *        limits (PL_HTTP_DEFAULT_*) apply.
 * @returns the server, or NULL with err filled.
 */
struct pl_http_server *pl_http_server_start(const char *bind, int port, int threads,
                                            size_t max_body, const struct pl_http_route *routes,
                                            size_t nroutes, void *user, char *err, size_t errsz);

/**
 * @brief pl_http_server_start with limits (NULL: the defaults). Raises the process's soft
 *        RLIMIT_NOFILE up to the hard limit when max_connections needs it.
 */
struct pl_http_server *pl_http_server_start_limited(
    const char *bind, int port, int threads, size_t max_body, const struct pl_http_limits *limits,
    const struct pl_http_route *routes, size_t nroutes, void *user, char *err, size_t errsz);

/** @brief The port actually bound. */
int pl_http_server_port(const struct pl_http_server *srv);

/** @brief Stops accepting, finishes in-flight requests and frees the server. */
void pl_http_server_stop(struct pl_http_server *srv);

/** @brief A query-string value, or NULL when absent. */
const char *pl_http_query(const struct pl_http_request *req, const char *name);

/** @brief A request header value, or NULL when absent. */
const char *pl_http_header(const struct pl_http_request *req, const char *name);

/** @brief The client's IP address as text (IPv4 or IPv6). @returns false when unknown. */
bool pl_http_peer(const struct pl_http_request *req, char *out, size_t outsz);

/**
 * @brief Fails (returns the name) when the query has a parameter not in the NULL-terminated
 *        allowed list, so typos are 400s instead of silently ignored filters.
 */
const char *pl_http_query_unknown(const struct pl_http_request *req, const char *const *allowed);

/** @brief Sets a JSON response; takes ownership of obj (json_object_put). */
void pl_http_json(struct pl_http_response *res, int status, json_object *obj);

/** @brief Sets a JSON response from already-serialised text (copied). */
void pl_http_json_text(struct pl_http_response *res, int status, const char *json, size_t len);

/** @brief Sets {"error": message} with status. */
void pl_http_error(struct pl_http_response *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @brief Adds a header to the response; name and value must outlive it (static text).
 *         Past PL_HTTP_MAX_HEADERS the header is dropped with a warning. */
void pl_http_add_header(struct pl_http_response *res, const char *name, const char *value);

/** @brief Sets a plain body (taken over) with its content type. */
void pl_http_text(struct pl_http_response *res, int status, const char *content_type, char *body);

#endif
