/* pl-devkafka: an embedded Kafka-protocol broker for development and tests, built on
 * librdkafka's mock cluster. It keeps data in memory only: never for production.
 *
 * Prints the bootstrap address as its first stdout line, creates promptloop's topics and
 * runs until SIGTERM/SIGINT. With --control-port it also serves a small HTTP control API
 * for tests: POST /brokers/{id}/down and /brokers/{id}/up (outages), and
 * POST /topics/{name}/partitions/{n} (a topic with n partitions: the mock cluster has no
 * CreateTopics, and a topic it creates on first mention gets its default of 4). */
#include "http.h"
#include "log.h"
#include "util.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t devkafka_running = 1;

static void devkafka_on_signal(int sig)
{
    (void)sig;
    devkafka_running = 0;
}

static const struct {
    const char *name;
    int partitions;
} devkafka_topics[] = {
    {"pl.traces", 8},  {"pl.clusters", 4}, {"pl.deployments", 4}, {"pl.dlq", 1},
    {"pl.actions", 4}, {"pl.failures", 4}, {"pl.audit", 1},
};

static void devkafka_broker_set(struct pl_http_request *req, struct pl_http_response *res, bool up)
{
    rd_kafka_mock_cluster_t *mc = req->user;
    long long id;
    if (pl_parse_ll(req->params[0], &id) != 0 || id < 1 || id > 64) {
        pl_http_error(res, 400, "broker id must be a small positive integer");
        return;
    }
    rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(mc, (int32_t)id)
                               : rd_kafka_mock_broker_set_down(mc, (int32_t)id);
    if (e) {
        pl_http_error(res, 404, "broker %lld: %s", id, rd_kafka_err2str(e));
        return;
    }
    pl_info("broker %lld is now %s", id, up ? "up" : "down");
    pl_http_json_text(res, 200, up ? "{\"state\":\"up\"}" : "{\"state\":\"down\"}", up ? 14 : 16);
}

static void devkafka_broker_down(struct pl_http_request *req, struct pl_http_response *res)
{
    devkafka_broker_set(req, res, false);
}

static void devkafka_broker_up(struct pl_http_request *req, struct pl_http_response *res)
{
    devkafka_broker_set(req, res, true);
}

static void devkafka_topic_create(struct pl_http_request *req, struct pl_http_response *res)
{
    rd_kafka_mock_cluster_t *mc = req->user;
    const char *name = req->params[0];
    long long n;
    if (pl_parse_ll(req->params[1], &n) != 0 || n < 1 || n > 1000) {
        pl_http_error(res, 400, "partitions must be between 1 and 1000");
        return;
    }
    size_t len = strlen(name);
    if (len == 0 || len > 249 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._-") != len) {
        pl_http_error(res, 400, "topic names are 1-249 of [a-zA-Z0-9._-]");
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, (int)n, 1);
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        pl_http_error(res, 409, "topic %s exists", name);
        return;
    }
    if (e) {
        pl_http_error(res, 500, "topic %s: %s", name, rd_kafka_err2str(e));
        return;
    }
    pl_info("topic %s created with %lld partitions", name, n);
    pl_http_json_text(res, 201, "{\"created\":true}", 16);
}

static const struct pl_http_route devkafka_routes[] = {
    {"POST", "/brokers/{id}/down", devkafka_broker_down},
    {"POST", "/brokers/{id}/up", devkafka_broker_up},
    {"POST", "/topics/{name}/partitions/{n}", devkafka_topic_create},
};

int main(int argc, char **argv)
{
    int brokers = 1;
    long long control_port = -1;
    for (int i = 1; i < argc; i++) {
        long long v;
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc && pl_parse_ll(argv[++i], &v) == 0 &&
            v >= 1 && v <= 9) {
            brokers = (int)v;
        } else if (strcmp(argv[i], "--control-port") == 0 && i + 1 < argc &&
                   pl_parse_ll(argv[++i], &control_port) == 0 && control_port >= 0 &&
                   control_port <= 65535) {
        } else {
            fprintf(stderr, "usage: %s [--brokers 1-9] [--control-port PORT]\n", argv[0]);
            return 2;
        }
    }
    pl_log_init("devkafka", PL_LOG_INFO);
    struct sigaction sa = {.sa_handler = devkafka_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        pl_error("cannot create the broker host: %s", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        pl_error("cannot create the mock cluster");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (size_t i = 0; i < sizeof(devkafka_topics) / sizeof(devkafka_topics[0]); i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, devkafka_topics[i].name,
                                                           devkafka_topics[i].partitions, 1);
        if (e) {
            pl_error("topic %s: %s", devkafka_topics[i].name, rd_kafka_err2str(e));
            return 1;
        }
    }
    struct pl_http_server *control = NULL;
    if (control_port >= 0) {
        control = pl_http_server_start("127.0.0.1", (int)control_port, 1, 4096, devkafka_routes, 3,
                                       mc, err, sizeof(err));
        if (!control) {
            pl_error("control server: %s", err);
            return 1;
        }
        pl_info("control API on http://127.0.0.1:%d", pl_http_server_port(control));
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    if (control)
        printf("control=http://127.0.0.1:%d\n", pl_http_server_port(control));
    fflush(stdout);
    pl_info("mock Kafka cluster with %d broker(s) at %s (in-memory, development only)", brokers,
            rd_kafka_mock_cluster_bootstraps(mc));
    while (devkafka_running)
        pl_sleep_ms(100);
    pl_info("shutting down");
    pl_http_server_stop(control);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
