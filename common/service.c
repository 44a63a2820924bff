/* What every promptloop executable shares: config, HTTP, health, shutdown. */
#include "service.h"

#include "audit.h"
#include "audit_head.h"
#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile sig_atomic_t pl_running = 1;

static void service_on_signal(int sig)
{
    (void)sig;
    pl_running = 0;
}

static void service_healthz(struct pl_http_request *req, struct pl_http_response *res)
{
    (void)req;
    /* Liveness only: never depends on the database or the broker. */
    pl_http_json_text(res, 200, "{\"status\":\"ok\"}", 15);
}

static void service_readyz(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_service *svc = req->user;
    bool db = pl_pg_ping(svc->pg);
    bool kafka = pl_kafka_reachable(pl_producer_handle(svc->producer), 1000);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "status",
                           json_object_new_string(db && kafka ? "ready" : "not_ready"));
    json_object_object_add(o, "database", json_object_new_boolean(db));
    json_object_object_add(o, "kafka", json_object_new_boolean(kafka));
    pl_http_json(res, db && kafka ? 200 : 503, o);
}

static void service_metrics(struct pl_http_request *req, struct pl_http_response *res)
{
    (void)req;
    char *text = pl_metrics_render();
    if (!text) {
        pl_http_error(res, 500, "cannot render metrics");
        return;
    }
    pl_http_text(res, 200, "text/plain; version=0.0.4", text);
}

static const struct pl_http_route service_ops_routes[] = {
    {"GET", "/healthz", service_healthz},
    {"GET", "/readyz", service_readyz},
    {"GET", "/metrics", service_metrics},
};
#define SERVICE_NOPS (sizeof(service_ops_routes) / sizeof(service_ops_routes[0]))

int pl_service_start(struct pl_service *svc, const char *name, int argc, char **argv,
                     const struct pl_http_route *routes, size_t nroutes, void *ctx)
{
    memset(svc, 0, sizeof(*svc));
    svc->name = name;
    svc->ctx = ctx;
    char err[512];
    pl_log_init(name, PL_LOG_INFO);
    if (pl_config_from_args(&svc->cfg, name, argc, argv, err, sizeof(err)) != 0) {
        pl_error("config: %s", err);
        return -1;
    }
    enum pl_log_level level;
    pl_log_level_parse(svc->cfg.log_level, &level); /* validated by the config table */
    pl_log_init(name, level);
    if (pl_audit_key_load(&svc->cfg, err, sizeof(err)) != 0) {
        pl_error("audit: %s", err);
        return -1;
    }

    struct sigaction sa = {.sa_handler = service_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    svc->pg = pl_pg_pool_new(svc->cfg.pg_dsn, svc->cfg.pg_pool_size);
    if (!svc->pg) {
        pl_error("out of memory creating the database pool");
        return -1;
    }
    svc->producer = pl_producer_new(svc->cfg.kafka_brokers, svc->cfg.kafka_delivery_timeout_ms, err,
                                    sizeof(err));
    if (!svc->producer) {
        pl_error("kafka producer: %s", err);
        return -1;
    }
    if (svc->cfg.outbox_relay) {
        svc->relay =
            pl_outbox_relay_start(svc->cfg.pg_dsn, svc->cfg.kafka_brokers, svc->producer,
                                  svc->cfg.outbox_poll_ms, svc->cfg.outbox_batch, err, sizeof(err));
        if (!svc->relay) {
            pl_error("outbox relay: %s", err);
            return -1;
        }
    }
    /* publishing heads rides with the relay: a process that relays may publish */
    if (svc->cfg.outbox_relay && svc->cfg.audit_publish_interval_s > 0) {
        svc->audit_heads =
            pl_audit_publisher_start(svc->cfg.pg_dsn, svc->producer, svc->cfg.kafka_topic_audit,
                                     svc->cfg.audit_publish_interval_s, err, sizeof(err));
        if (!svc->audit_heads) {
            pl_error("audit heads: %s", err);
            return -1;
        }
    }
    svc->routes = calloc(nroutes + SERVICE_NOPS, sizeof(*svc->routes));
    if (!svc->routes) {
        pl_error("out of memory");
        return -1;
    }
    if (nroutes)
        memcpy(svc->routes, routes, nroutes * sizeof(*routes));
    memcpy(svc->routes + nroutes, service_ops_routes, sizeof(service_ops_routes));
    const struct pl_http_limits limits = {svc->cfg.http_per_ip_limit, svc->cfg.http_max_connections,
                                          svc->cfg.http_timeout_s, svc->cfg.http_max_header_bytes};
    svc->http =
        pl_http_server_start_limited(svc->cfg.http_bind, svc->cfg.http_port, svc->cfg.http_threads,
                                     (size_t)svc->cfg.http_max_body_bytes, &limits, svc->routes,
                                     nroutes + SERVICE_NOPS, svc, err, sizeof(err));
    if (!svc->http) {
        pl_error("http: %s", err);
        return -1;
    }
    pl_info("%s listening on http://%s:%d", name, svc->cfg.http_bind,
            pl_http_server_port(svc->http));
    return 0;
}

void pl_service_stop(struct pl_service *svc)
{
    pl_http_server_stop(svc->http);
    svc->http = NULL;
    pl_audit_publisher_stop(svc->audit_heads);
    svc->audit_heads = NULL;
    pl_outbox_relay_stop(svc->relay);
    svc->relay = NULL;
    pl_producer_destroy(svc->producer, 5000);
    svc->producer = NULL;
    pl_pg_pool_destroy(svc->pg);
    svc->pg = NULL;
    free(svc->routes);
    svc->routes = NULL;
    pl_info("%s stopped", svc->name);
}
