/* Helpers for integration tests against the running local stack (scripts/stack up): real
 * HTTP over loopback, the real PostgreSQL and the real (mock-cluster) Kafka broker. */
#ifndef PL_ITEST_H
#define PL_ITEST_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/** @brief Reads a required environment variable (fails the test when missing). */
const char *itest_env(const char *name);

struct itest_response {
    long status;
    char *body;        /* NUL-terminated, owned */
    char *headers;     /* the response's header lines as received, owned */
    json_object *json; /* parsed body or NULL, owned */
};

/** @brief Sends a request to base_url + path with an optional bearer key and JSON body. */
struct itest_response itest_http(const char *base_url, const char *method, const char *path,
                                 const char *key, const char *body);
/** @brief itest_http with further request header lines ("Name: value", NULL-ended). */
struct itest_response itest_http_headers(const char *base_url, const char *method, const char *path,
                                         const char *key, const char *body,
                                         const char *const *headers);

/** @brief The same against $PL_API_URL. */
struct itest_response itest_api(const char *method, const char *path, const char *key,
                                const char *body);
void itest_response_free(struct itest_response *r);

/** @brief A string member of the response JSON, or NULL. */
const char *itest_json_str(const struct itest_response *r, const char *field);

/** @brief A connection to $PL_PG_DSN (or dsn if not NULL); fails the test on error. */
PGconn *itest_pg(const char *dsn);

/** @brief Runs SQL with text parameters and returns the first column of the first row as a
 *         new string ("" when no rows); fails the test on error. */
char *itest_sql(PGconn *conn, const char *sql, int n, const char *const *params);

/** @brief Polls sql (one parameter, param) until its value is want or timeout_ms passes
 *         (at least once); @returns whether it got there. */
bool itest_wait_sql(PGconn *conn, const char *sql, const char *param, const char *want,
                    int timeout_ms);

struct itest_tenant {
    char id[37];
    char project_id[37];
    char owner_key[64], member_key[64], viewer_key[64];
};

/** @brief Creates a tenant on plan with a project and three keys (directly in the DB). */
void itest_tenant_new(PGconn *conn, const char *plan, struct itest_tenant *t);

/** @brief Inserts a deployment in the given status; returns its id (37 bytes). */
void itest_deployment_new(PGconn *conn, const struct itest_tenant *t, const char *status,
                          char id[37]);

/**
 * @brief Reads topic from the beginning to its end and returns the messages whose key is
 *        in keys (n of them), in offset order per partition, as a JSON array of the parsed
 *        values (caller puts it). Polls until the end offsets are reached or deadline_ms.
 */
json_object *itest_kafka_read(const char *topic, const char *const *keys, size_t n,
                              int deadline_ms);

/** @brief Polls until no outbox row with one of keys is unpublished (or timeout_ms). */
bool itest_outbox_drained(PGconn *conn, const char *const *keys, size_t n, int timeout_ms);

/** @brief Starts a program with extra "NAME=value" environment entries (NULL-ended),
 *         its stderr to log_path. Returns the pid. */
pid_t itest_spawn(const char *const *argv, const char *const *env, const char *log_path);

/** @brief Waits for pid up to timeout_ms; returns its wait status or -1 on timeout. */
int itest_wait(pid_t pid, int timeout_ms);

/** @brief Polls url until it answers 200 or timeout_ms passes. */
bool itest_wait_http_ok(const char *url, int timeout_ms);

/** @brief Polls until file contains needle or timeout_ms passes. */
bool itest_wait_file_contains(const char *path, const char *needle, int timeout_ms);

/** @brief Polls until group's committed offsets on every partition of topic reach the
 *         partition's end, or timeout_ms passes. */
bool itest_group_caught_up(const char *group, const char *topic, int timeout_ms);

/**
 * @brief Starts a service binary (e.g. "pl-detector") against the stack with a group of its
 *        own choosing and extra "NAME=value" entries (NULL-ended; may be NULL); stderr to
 *        log (a path buffer of 128 bytes filled in). Waits for /healthz. Returns the pid.
 */
pid_t itest_service_start(const char *bin_name, const char *group, const char *const *extra_env,
                          char log[128]);

/** @brief The base URL ("http://127.0.0.1:PORT") of the service started last. */
const char *itest_service_url(void);

/** @brief SIGTERM and wait (fails the test unless it exits 0 within 10 s). */
void itest_service_stop(pid_t pid);

/** @brief The value of one series (e.g. `name{label="x"}`) of a service's /metrics at url (0
 *         when absent); fails the test unless /metrics answers 200. */
long long itest_metric(const char *url, const char *series);
/**
 * @brief Runs pl-admin with args (NULL-ended, at most 14) and extra environment (may be
 *        NULL), waiting up to timeout_ms. out gets its output (stdout and stderr, trailing
 *        newlines cut). @returns its exit status, or -1 when a signal ended it.
 */
int itest_admin(const char *const *args, const char *const *env, int timeout_ms, char *out,
                size_t outsz);
/** @brief A currently free TCP port on 127.0.0.1. */
int itest_free_port(void);

/** @brief Path of a binary in $PL_BIN_DIR. */
void itest_bin(const char *name, char *buf, size_t bufsz);

/**
 * @brief Starts pl-llmsim with a scenario (JSON text, written to a temporary file) on a free
 *        port; fills base_url ("http://127.0.0.1:PORT/v1", 64 bytes). Returns the pid.
 */
pid_t itest_llmsim_start(const char *scenario_json, char base_url[64]);

/** @brief Stops a process started by itest_llmsim_start (SIGTERM, must exit 0). */
void itest_llmsim_stop(pid_t pid);

/** A registry prompt with a failure cluster over its traces, for differ and harness tests. */
struct itest_cluster {
    char prompt_id[37], version_id[37]; /* the prompt, live version 1 */
    char cluster_id[37], signature[80];
    char prompt_name[64];
};

/**
 * @brief Creates prompt `name` (system prompt `system`, live in production) in t's project,
 *        nfail failing traces (input "question K", output prose, a failed json_valid rule)
 *        in one cluster, and nguard passing traces (input "guard question K", output JSON),
 *        all naming the prompt. Adds an enabled json_valid eval rule to the project.
 */
void itest_cluster_new(PGconn *conn, const struct itest_tenant *t, const char *name,
                       const char *system, int nfail, int nguard, struct itest_cluster *c);

/** @brief A unique topic name for a test ("itest.<what>.<random>", 96 bytes). */
void itest_topic(const char *what, char topic[96]);

/** @brief Produces one message (key, JSON value) to topic; fails the test on error. */
void itest_produce(const char *topic, const char *key, const char *value);

#endif
