/* Helpers for integration tests against the running local stack. */
#include "itest.h"

#include "audit.h"

#include "auth.h"
#include "kafka.h"
#include "registry.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *itest_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("environment %s is not set: run the tests through scripts/test", name);
    return v;
}

struct itest_buf {
    char *data;
    size_t len;
};

static size_t itest_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct itest_buf *b = userdata;
    size_t n = size * nmemb;
    char *nd = realloc(b->data, b->len + n + 1);
    if (!nd)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->data = nd;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

struct itest_response itest_http(const char *base_url, const char *method, const char *path,
                                 const char *key, const char *body)
{
    return itest_http_headers(base_url, method, path, key, body, NULL);
}

struct itest_response itest_http_headers(const char *base_url, const char *method, const char *path,
                                         const char *key, const char *body,
                                         const char *const *headers)
{
    struct itest_response r = {0};
    struct itest_buf b = {0}, hb = {0};
    char url[2048], auth[128];
    snprintf(url, sizeof(url), "%s%s", base_url, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = NULL;
    if (key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    for (const char *const *x = headers; x && *x; x++)
        h = curl_slist_append(h, *x);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, itest_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, itest_write);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hb);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.body = b.data ? b.data : strdup("");
    r.headers = hb.data ? hb.data : strdup("");
    r.json = json_tokener_parse(r.body);
    return r;
}

struct itest_response itest_api(const char *method, const char *path, const char *key,
                                const char *body)
{
    return itest_http(itest_env("PL_API_URL"), method, path, key, body);
}

void itest_response_free(struct itest_response *r)
{
    free(r->body);
    free(r->headers);
    json_object_put(r->json);
    memset(r, 0, sizeof(*r));
}

const char *itest_json_str(const struct itest_response *r, const char *field)
{
    json_object *v;
    if (!r->json || !json_object_object_get_ex(r->json, field, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static void itest_quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *itest_pg(const char *dsn)
{
    /* tests that append audit entries themselves chain them under the stack's key */
    const char *key = getenv("PL_AUDIT_KEY");
    char err[256];
    if (key && !pl_audit_key_id() && pl_audit_key_set(key, strlen(key), err, sizeof(err)) != 0)
        fail_msg("PL_AUDIT_KEY: %s", err);
    PGconn *c = PQconnectdb(dsn ? dsn : itest_env("PL_PG_DSN"));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("database: %s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, itest_quiet_notice, NULL);
    return c;
}

char *itest_sql(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("SQL failed: %s\n%s", PQresultErrorMessage(res), sql);
    char *v = strdup(st == PGRES_TUPLES_OK && PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return v;
}

static void itest_key_new(PGconn *conn, const char *tenant, const char *role, char *out)
{
    char key[PL_API_KEY_LEN + 1], hash[65], prefix[12];
    assert_int_equal(pl_auth_key_new(key, hash, prefix), 0);
    const char *p[4] = {tenant, role, hash, prefix};
    free(itest_sql(conn,
                   "INSERT INTO api_keys (tenant_id, name, role, key_hash, prefix)"
                   " VALUES ($1, 'itest', $2, $3, $4)",
                   4, p));
    snprintf(out, 64, "%s", key);
}

bool itest_wait_sql(PGconn *conn, const char *sql, const char *param, const char *want,
                    int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    const char *p[1] = {param};
    for (;;) {
        char *v = itest_sql(conn, sql, 1, p);
        bool ok = strcmp(v, want) == 0;
        free(v);
        if (ok)
            return true;
        if (pl_now_ms() >= deadline)
            return false;
        pl_sleep_ms(50);
    }
}

void itest_tenant_new(PGconn *conn, const char *plan, struct itest_tenant *t)
{
    const char *p[1] = {plan};
    char *id = itest_sql(conn,
                         "INSERT INTO tenants (name, plan) VALUES ('itest-' || gen_random_uuid(),"
                         " $1) RETURNING id",
                         1, p);
    snprintf(t->id, sizeof(t->id), "%s", id);
    free(id);
    const char *p2[1] = {t->id};
    char *pid = itest_sql(conn,
                          "WITH p AS (INSERT INTO projects (tenant_id, name) VALUES ($1, 'itest')"
                          "           RETURNING id, tenant_id),"
                          " e AS (INSERT INTO environments (tenant_id, project_id, name)"
                          "       SELECT tenant_id, id, 'production' FROM p)"
                          " SELECT id FROM p",
                          1, p2);
    snprintf(t->project_id, sizeof(t->project_id), "%s", pid);
    free(pid);
    itest_key_new(conn, t->id, "owner", t->owner_key);
    itest_key_new(conn, t->id, "member", t->member_key);
    itest_key_new(conn, t->id, "viewer", t->viewer_key);
}

void itest_deployment_new(PGconn *conn, const struct itest_tenant *t, const char *status,
                          char id[37])
{
    const char *p[3] = {t->id, t->project_id, status};
    char *v = itest_sql(conn,
                        "INSERT INTO prompt_deployments (tenant_id, project_id, cluster_signature,"
                        " status, current_prompt, proposed_prompt, rationale)"
                        " VALUES ($1, $2, 'sha256:' || md5(random()::text), $3,"
                        " 'You are a helpful assistant.', 'You are a helpful assistant."
                        " Answer in JSON.', 'adds a JSON instruction') RETURNING id",
                        3, p);
    snprintf(id, 37, "%s", v);
    free(v);
}

json_object *itest_kafka_read(const char *topic, const char *const *keys, size_t n, int deadline_ms)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", itest_env("PL_KAFKA_BROKERS"), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "itest-reader", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    assert_int_equal(rd_kafka_metadata(rk, 0, rkt, &md, 10000), 0);
    int nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    int64_t *end = calloc((size_t)nparts, sizeof(*end));
    int64_t *next = calloc((size_t)nparts, sizeof(*next));
    for (int p = 0; p < nparts; p++) {
        int64_t lo, hi;
        assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000), 0);
        end[p] = hi;
        next[p] = lo;
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    json_object *out = json_object_new_array();
    int64_t deadline = pl_now_ms() + deadline_ms;
    for (;;) {
        bool done = true;
        for (int p = 0; p < nparts; p++)
            if (next[p] < end[p])
                done = false;
        if (done || pl_now_ms() > deadline)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err) {
            next[m->partition] = m->offset + 1;
            for (size_t i = 0; i < n; i++)
                if (m->key && m->key_len == strlen(keys[i]) &&
                    memcmp(m->key, keys[i], m->key_len) == 0) {
                    char *text = strndup(m->payload, m->len);
                    json_object *v = json_tokener_parse(text);
                    free(text);
                    assert_non_null(v);
                    json_object_array_add(out, v);
                }
        }
        rd_kafka_message_destroy(m);
    }
    free(end);
    free(next);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return out;
}

/* Every child, so that a failed assertion (which skips the test's own cleanup) does not
 * leave processes behind: they are killed when the test program exits. */
static pid_t itest_children[256];
static int itest_nchildren;

static void itest_kill_children(void)
{
    for (int i = 0; i < itest_nchildren; i++)
        if (kill(itest_children[i], 0) == 0 && waitpid(itest_children[i], NULL, WNOHANG) == 0)
            kill(itest_children[i], SIGKILL);
}

pid_t itest_spawn(const char *const *argv, const char *const *env, const char *log_path)
{
    if (itest_nchildren == 0)
        atexit(itest_kill_children);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0 && itest_nchildren < 256)
        itest_children[itest_nchildren++] = pid;
    if (pid == 0) {
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        FILE *f = fopen(log_path, "w");
        if (f) {
            dup2(fileno(f), 2);
            dup2(fileno(f), 1);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int itest_wait(pid_t pid, int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    int status;
    while (pl_now_ms() <= deadline) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        pl_sleep_ms(20);
    }
    return -1;
}

bool itest_wait_http_ok(const char *url, int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    while (pl_now_ms() <= deadline) {
        CURL *c = curl_easy_init();
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (status == 200)
            return true;
        pl_sleep_ms(50);
    }
    return false;
}

bool itest_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    for (;;) { /* at least one look: with timeout 0 the clock may tick before a first test */
        FILE *f = fopen(path, "r");
        if (f) {
            char line[4096];
            bool found = false;
            while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, needle) != NULL;
            fclose(f);
            if (found)
                return true;
        }
        if (pl_now_ms() > deadline)
            return false;
        pl_sleep_ms(50);
    }
}

int itest_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

void itest_bin(const char *name, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/%s", itest_env("PL_BIN_DIR"), name);
}

bool itest_outbox_drained(PGconn *conn, const char *const *keys, size_t n, int timeout_ms)
{
    char arr[8192];
    size_t len = (size_t)snprintf(arr, sizeof(arr), "{");
    for (size_t i = 0; i < n && len < sizeof(arr); i++)
        len += (size_t)snprintf(arr + len, sizeof(arr) - len, "%s%s", i ? "," : "", keys[i]);
    snprintf(arr + len, sizeof(arr) - len, "}");
    const char *p[1] = {arr};
    int64_t deadline = pl_now_ms() + timeout_ms;
    while (pl_now_ms() <= deadline) {
        char *left = itest_sql(conn,
                               "SELECT count(*) FROM outbox WHERE key = ANY($1::text[])"
                               " AND published_at IS NULL",
                               1, p);
        bool drained = strcmp(left, "0") == 0;
        free(left);
        if (drained)
            return true;
        pl_sleep_ms(50);
    }
    return false;
}

bool itest_group_caught_up(const char *group, const char *topic, int timeout_ms)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", itest_env("PL_KAFKA_BROKERS"), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    assert_int_equal(rd_kafka_metadata(rk, 0, rkt, &md, 10000), 0);
    int nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    bool done = false;
    int64_t deadline = pl_now_ms() + timeout_ms;
    while (!done && pl_now_ms() <= deadline) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++)
            rd_kafka_topic_partition_list_add(l, topic, p);
        done = rd_kafka_committed(rk, l, 5000) == 0;
        for (int p = 0; done && p < nparts; p++) {
            int64_t lo, hi;
            done = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 5000) == 0 &&
                   (hi == 0 || l->elems[p].offset >= hi);
        }
        rd_kafka_topic_partition_list_destroy(l);
        if (!done)
            pl_sleep_ms(100);
    }
    rd_kafka_destroy(rk);
    return done;
}

static char itest_last_service_url[64];

const char *itest_service_url(void)
{
    return itest_last_service_url;
}

pid_t itest_service_start(const char *bin_name, const char *group, const char *const *extra_env,
                          char log[128])
{
    static char env[16][640];
    int port = itest_free_port();
    snprintf(itest_last_service_url, sizeof(itest_last_service_url), "http://127.0.0.1:%d", port);
    snprintf(log, 128, "/tmp/pl-itest-%s-%d-%d.log", bin_name, (int)getpid(), port);
    int n = 0;
    snprintf(env[n++], sizeof(env[0]), "PL_PG_DSN=%s", itest_env("PL_PG_DSN"));
    snprintf(env[n++], sizeof(env[0]), "PL_KAFKA_BROKERS=%s", itest_env("PL_KAFKA_BROKERS"));
    snprintf(env[n++], sizeof(env[0]), "PL_HTTP_PORT=%d", port);
    snprintf(env[n++], sizeof(env[0]), "PL_KAFKA_GROUP_ID=%s", group);
    snprintf(env[n++], sizeof(env[0]), "PL_KAFKA_SESSION_TIMEOUT_MS=6000");
    snprintf(env[n++], sizeof(env[0]), "PL_FAILPOINT=");
    for (const char *const *e = extra_env; e && *e && n < 15; e++)
        snprintf(env[n++], sizeof(env[0]), "%s", *e);
    const char *envp[17];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char bin[512];
    itest_bin(bin_name, bin, sizeof(bin));
    const char *argv[] = {bin, NULL};
    pid_t pid = itest_spawn(argv, envp, log);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    if (!itest_wait_http_ok(url, 20000))
        fail_msg("%s did not start (see %s)", bin_name, log);
    return pid;
}

void itest_service_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int st = itest_wait(pid, 10000);
    if (st == -1) {
        kill(pid, SIGKILL);
        itest_wait(pid, 5000);
        fail_msg("service %d did not stop within 10 s of SIGTERM", (int)pid);
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

pid_t itest_llmsim_start(const char *scenario_json, char base_url[64])
{
    char path[] = "/tmp/pl-itest-scenario-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(scenario_json);
    assert_int_equal(write(fd, scenario_json, len), (ssize_t)len);
    close(fd);
    int port = itest_free_port();
    char bin[512], port_s[16], log[128];
    itest_bin("pl-llmsim", bin, sizeof(bin));
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(log, sizeof(log), "/tmp/pl-itest-llmsim-%d-%d.log", (int)getpid(), port);
    const char *argv[] = {bin, "--scenario", path, "--port", port_s, NULL};
    pid_t pid = itest_spawn(argv, NULL, log);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    if (!itest_wait_http_ok(url, 10000))
        fail_msg("pl-llmsim did not start (see %s)", log);
    snprintf(base_url, 64, "http://127.0.0.1:%d/v1", port);
    return pid;
}

void itest_llmsim_stop(pid_t pid)
{
    itest_service_stop(pid);
}

void itest_topic(const char *what, char topic[96])
{
    unsigned char rnd[6];
    pl_random_bytes(rnd, sizeof(rnd));
    snprintf(topic, 96, "itest.%s.%02x%02x%02x%02x%02x%02x", what, rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    /* Create it now (the broker auto-creates on a metadata request naming it): a consumer
     * that subscribes before its topic exists may not fetch what is produced later
     * (seen with librdkafka 2.0.2 on the mock cluster). */
    char err[256];
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);
    assert_true(pl_kafka_partition_count(pl_producer_handle(p), topic, 10000) > 0);
    pl_producer_destroy(p, 1000);
}

void itest_produce(const char *topic, const char *key, const char *value)
{
    char err[256];
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);
    struct pl_kafka_msg m = {.topic = topic,
                             .partition = RD_KAFKA_PARTITION_UA,
                             .key = key,
                             .key_len = strlen(key),
                             .value = value,
                             .value_len = strlen(value)};
    if (pl_producer_send(p, &m, err, sizeof(err)) != 0)
        fail_msg("produce to %s: %s", topic, err);
    pl_producer_destroy(p, 5000);
}

void itest_cluster_new(PGconn *conn, const struct itest_tenant *t, const char *name,
                       const char *system, int nfail, int nguard, struct itest_cluster *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->prompt_name, sizeof(c->prompt_name), "%s", name);
    json_object *m = json_object_new_object(), *msgs = json_object_new_array(),
                *sys = json_object_new_object();
    json_object_object_add(sys, "role", json_object_new_string("system"));
    json_object_object_add(sys, "content", json_object_new_string(system));
    json_object_array_add(msgs, sys);
    json_object_object_add(m, "messages", msgs);
    struct pl_pg_error err;
    int r =
        pl_registry_create_prompt(conn, t->id, t->project_id, name, json_object_to_json_string(m),
                                  "itest", c->prompt_id, c->version_id, &err);
    json_object_put(m);
    if (r != 1)
        fail_msg("create prompt: %s", err.message);
    const char *pr[2] = {t->id, t->project_id};
    free(itest_sql(conn,
                   "INSERT INTO eval_rules (tenant_id, project_id, metric_name, evaluator_type,"
                   " config) VALUES ($1, $2, 'json', 'json_valid', '{}') RETURNING id",
                   2, pr));
    unsigned char rnd[8];
    pl_random_bytes(rnd, sizeof(rnd));
    snprintf(c->signature, sizeof(c->signature), "sha256:itest%02x%02x%02x%02x%02x%02x%02x%02x",
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    const char *pc[3] = {t->id, t->project_id, c->signature};
    char *id = itest_sql(conn,
                         "INSERT INTO failure_clusters (tenant_id, project_id, signature, template,"
                         " error_type, count, first_seen, last_seen, grouping_version)"
                         " VALUES ($1, $2, $3, 'output is not valid JSON: <*>', 'rule:json', 0,"
                         " now(), now(), 1) RETURNING id",
                         3, pc);
    snprintf(c->cluster_id, sizeof(c->cluster_id), "%s", id);
    free(id);
    char nf[16], ng[16];
    snprintf(nf, sizeof(nf), "%d", nfail);
    snprintf(ng, sizeof(ng), "%d", nguard);
    const char *pt[6] = {t->id, t->project_id, name, c->cluster_id, nf, ng};
    free(itest_sql(
        conn,
        "WITH f AS (INSERT INTO traces (tenant_id, project_id, id, prompt_name, prompt_version,"
        "   input, output, eval, model)"
        "  SELECT $1, $2, $4 || '-fail-' || k, $3, '1',"
        "   jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user',"
        "     'content', 'question ' || k))),"
        "   'Here is a prose answer ' || k,"
        "   '{\"json\": {\"passed\": false, \"feedback\": \"output is not valid JSON\"}}',"
        "   'gpt-4o-mini' FROM generate_series(1, $5::int) k RETURNING id),"
        " m AS (INSERT INTO cluster_members (cluster_id, trace_id, tenant_id)"
        "  SELECT $4::uuid, id, $1 FROM f RETURNING 1),"
        " g AS (INSERT INTO traces (tenant_id, project_id, id, prompt_name, prompt_version,"
        "   input, output, eval, model)"
        "  SELECT $1, $2, $4 || '-guard-' || k, $3, '1',"
        "   jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user',"
        "     'content', 'guard question ' || k))),"
        "   '{\"answer\": 1}', '{\"json\": {\"passed\": true, \"feedback\": \"\"}}',"
        "   'gpt-4o-mini' FROM generate_series(1, $6::int) k RETURNING 1)"
        " UPDATE failure_clusters SET count = (SELECT count(*) FROM m)" /* g runs anyway */
        " WHERE id = $4::uuid RETURNING count",
        6, pt));
}

long long itest_metric(const char *url, const char *series)
{
    struct itest_response r = itest_http(url, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    long long v = 0;
    size_t len = strlen(series);
    for (const char *line = r.body; line && *line;) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            v = strtoll(line + len + 1, NULL, 10);
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    itest_response_free(&r);
    return v;
}

int itest_admin(const char *const *args, const char *const *env, int timeout_ms, char *out,
                size_t outsz)
{
    char bin[512], log[128];
    itest_bin("pl-admin", bin, sizeof(bin));
    snprintf(log, sizeof(log), "/tmp/pl-itest-admin-%d.out", (int)getpid());
    const char *argv[16] = {bin};
    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    pid_t pid = itest_spawn(argv, env, log);
    int st = itest_wait(pid, timeout_ms);
    assert_true(st != -1);
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(out, 1, outsz - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    unlink(log);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
