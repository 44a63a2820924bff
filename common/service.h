/* What every promptloop executable shares: config, logging, signals, database pool,
 * producer, outbox relay, audit head publisher, and the ops endpoints /healthz, /readyz and
 * /metrics. */
#ifndef PL_SERVICE_H
#define PL_SERVICE_H

#include "config.h"
#include "http.h"
#include "kafka.h"
#include "outbox.h"
#include "pg.h"

#include <signal.h>
#include <stdbool.h>

struct pl_service {
    const char *name;
    struct pl_config cfg;
    struct pl_pg_pool *pg;
    struct pl_producer *producer;
    struct pl_outbox_relay *relay;
    struct pl_audit_publisher *audit_heads;
    struct pl_http_server *http;
    struct pl_http_route *routes; /* service routes + ops routes */
    void *ctx;                    /* the service's own state, for its handlers */
};

/** @brief Set to 0 by SIGTERM/SIGINT: every loop checks it. */
extern volatile sig_atomic_t pl_running;

/**
 * @brief Loads config from argv/env, sets up logging, signals, the database pool, the
 *        producer and the relay, and starts the HTTP server with routes (may be 0) plus the
 *        ops routes. Handlers get the service as req->user.
 * @returns 0, or -1 after logging why (the caller exits non-zero).
 */
int pl_service_start(struct pl_service *svc, const char *name, int argc, char **argv,
                     const struct pl_http_route *routes, size_t nroutes, void *ctx);

/** @brief Stops everything pl_service_start started, in reverse order. */
void pl_service_stop(struct pl_service *svc);

#endif
