/* Unit tests for configuration: defaults, typed setters, libconfig files, environment
 * overrides and the --config flag. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* Unsets every PL_* variable, so the tests start clean whatever the caller's environment
 * holds (the test suite runs with the local stack's PL_* exports). */
static void clear_env(void)
{
    char names[128][128];
    int n = 0;
    for (char **e = environ; *e && n < 128; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "PL_", 3) == 0 && eq && (size_t)(eq - *e) < sizeof(names[0])) {
            memcpy(names[n], *e, (size_t)(eq - *e));
            names[n++][eq - *e] = '\0';
        }
    }
    for (int i = 0; i < n; i++)
        unsetenv(names[i]);
}

static int group_setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

/* Writes content to a new temporary file; path receives its name. */
static void write_temp(const char *content, char *path, size_t pathsz)
{
    snprintf(path, pathsz, "/tmp/pl_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- defaults ---------------------------------------------------------------------------- */

static void test_defaults_api(void **state)
{
    (void)state;
    struct pl_config cfg;
    memset(&cfg, 0xAB, sizeof(cfg)); /* defaults must not depend on what was there */
    pl_config_defaults(&cfg, "api");
    assert_int_equal(cfg.http_port, 8080);
    assert_string_equal(cfg.kafka_group_id, "");
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.http_bind, "127.0.0.1");
    assert_int_equal(cfg.http_threads, 16); /* the api blocks on DB and broker acks */
    assert_int_equal(cfg.http_max_body_bytes, 1024 * 1024);
    assert_string_equal(cfg.pg_dsn, "postgresql:///promptloop");
    assert_int_equal(cfg.pg_pool_size, 16);
    assert_string_equal(cfg.kafka_brokers, "127.0.0.1:9092");
    assert_int_equal(cfg.kafka_session_timeout_ms, 10000);
    assert_string_equal(cfg.kafka_topic_traces, "pl.traces");
    assert_string_equal(cfg.kafka_topic_clusters, "pl.clusters");
    assert_string_equal(cfg.kafka_topic_deployments, "pl.deployments");
    assert_string_equal(cfg.kafka_topic_dlq, "pl.dlq");
    assert_true(cfg.outbox_relay);
    assert_int_equal(cfg.outbox_poll_ms, 100);
    assert_int_equal(cfg.outbox_batch, 100);
}

static void test_defaults_workers(void **state)
{
    (void)state;
    static const struct {
        const char *service;
        int port;
        const char *group;
    } want[] = {
        {"detector", 9101, "pl-detector"},
        {"differ", 9102, "pl-differ"},
        {"abharness", 9103, "pl-abharness"},
        {"monitor", 9104, "pl-monitor"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct pl_config cfg;
        memset(&cfg, 0x5A, sizeof(cfg));
        pl_config_defaults(&cfg, want[i].service);
        assert_int_equal(cfg.http_port, want[i].port);
        assert_string_equal(cfg.kafka_group_id, want[i].group);
        assert_string_equal(cfg.log_level, "info");
    }
    /* An unknown service gets no fixed port (any free port). */
    struct pl_config cfg;
    pl_config_defaults(&cfg, "tool");
    assert_int_equal(cfg.http_port, 0);
    assert_string_equal(cfg.kafka_group_id, "pl-tool");
}

/* ---- pl_config_set ----------------------------------------------------------------------- */

static void test_set_string(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    assert_int_equal(pl_config_set(&cfg, "log", "level", "debug", err, sizeof(err)), 0);
    assert_string_equal(cfg.log_level, "debug");
    assert_int_equal(pl_config_set(&cfg, "kafka", "brokers", "a:1,b:2", err, sizeof(err)), 0);
    assert_string_equal(cfg.kafka_brokers, "a:1,b:2");
    /* group_id may be empty (the api has none); other strings may not. */
    assert_int_equal(pl_config_set(&cfg, "kafka", "group_id", "", err, sizeof(err)), 0);
    assert_string_equal(cfg.kafka_group_id, "");
    assert_int_equal(pl_config_set(&cfg, "pg", "dsn", "", err, sizeof(err)), -1);
    assert_contains(err, "pg.dsn");
    assert_contains(err, "empty");
    assert_string_equal(cfg.pg_dsn, "postgresql:///promptloop");
}

static void test_set_string_length(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    /* http_bind holds 63 characters plus the NUL. */
    char fits[64], too_long[65];
    memset(fits, 'a', 63);
    fits[63] = '\0';
    memset(too_long, 'b', 64);
    too_long[64] = '\0';
    assert_int_equal(pl_config_set(&cfg, "http", "bind", fits, err, sizeof(err)), 0);
    assert_string_equal(cfg.http_bind, fits);
    assert_int_equal(pl_config_set(&cfg, "http", "bind", too_long, err, sizeof(err)), -1);
    assert_contains(err, "http.bind");
    assert_contains(err, "63");
    assert_string_equal(cfg.http_bind, fits); /* unchanged */
}

static void test_set_choice(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    const char *ok[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(pl_config_set(&cfg, "log", "level", ok[i], err, sizeof(err)), 0);
        assert_string_equal(cfg.log_level, ok[i]);
    }
    const char *bad[] = {"verbose", "DEBUG",     "Info", "warning",
                         "err",     "info|warn", "debu", "info "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (pl_config_set(&cfg, "log", "level", bad[i], err, sizeof(err)) != -1)
            fail_msg("log.level \"%s\" accepted", bad[i]);
        assert_contains(err, "log.level");
        assert_string_equal(cfg.log_level, "error");
    }
    assert_int_equal(pl_config_set(&cfg, "log", "level", "", err, sizeof(err)), -1);
    assert_contains(err, "log.level");
}

static void test_set_int(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    assert_int_equal(pl_config_set(&cfg, "http", "port", "0", err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 0);
    assert_int_equal(pl_config_set(&cfg, "http", "port", "65535", err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 65535);
    assert_int_equal(pl_config_set(&cfg, "http", "port", "9000", err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 9000);

    assert_int_equal(pl_config_set(&cfg, "http", "port", "70000", err, sizeof(err)), -1);
    assert_contains(err, "http.port");
    assert_contains(err, "70000");
    assert_contains(err, "out of range");
    assert_int_equal(pl_config_set(&cfg, "http", "port", "65536", err, sizeof(err)), -1);
    assert_int_equal(pl_config_set(&cfg, "http", "port", "-1", err, sizeof(err)), -1);
    assert_contains(err, "http.port");

    const char *not_int[] = {"12x", " 5", "5 ", "", "abc", "1.5", "0x50", "99999999999999999999",
                             "+"};
    for (size_t i = 0; i < sizeof(not_int) / sizeof(not_int[0]); i++) {
        err[0] = '\0';
        if (pl_config_set(&cfg, "http", "port", not_int[i], err, sizeof(err)) != -1)
            fail_msg("http.port \"%s\" accepted", not_int[i]);
        assert_contains(err, "http.port");
    }
    assert_int_equal(pl_config_set(&cfg, "http", "port", "12x", err, sizeof(err)), -1);
    assert_string_equal(err, "http.port: \"12x\" is not an integer");
    assert_int_equal(cfg.http_port, 9000); /* failures leave the value alone */

    /* Other ranges from the table. */
    assert_int_equal(pl_config_set(&cfg, "http", "threads", "0", err, sizeof(err)), -1);
    assert_contains(err, "http.threads");
    assert_int_equal(pl_config_set(&cfg, "http", "threads", "64", err, sizeof(err)), 0);
    assert_int_equal(cfg.http_threads, 64);
    assert_int_equal(pl_config_set(&cfg, "http", "threads", "65", err, sizeof(err)), -1);
    assert_int_equal(pl_config_set(&cfg, "http", "max_body_bytes", "1023", err, sizeof(err)), -1);
    assert_contains(err, "http.max_body_bytes");
    assert_int_equal(pl_config_set(&cfg, "http", "max_body_bytes", "1024", err, sizeof(err)), 0);
    assert_int_equal(cfg.http_max_body_bytes, 1024);
    assert_int_equal(pl_config_set(&cfg, "kafka", "session_timeout_ms", "999", err, sizeof(err)),
                     -1);
    assert_int_equal(pl_config_set(&cfg, "kafka", "session_timeout_ms", "6000", err, sizeof(err)),
                     0);
    assert_int_equal(cfg.kafka_session_timeout_ms, 6000);
    assert_int_equal(pl_config_set(&cfg, "outbox", "batch", "10001", err, sizeof(err)), -1);
    assert_contains(err, "outbox.batch");
}

static void test_set_bool(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    const char *f[] = {"false", "0", "no"};
    const char *t[] = {"true", "1", "yes"};
    for (size_t i = 0; i < 3; i++) {
        cfg.outbox_relay = true;
        assert_int_equal(pl_config_set(&cfg, "outbox", "relay", f[i], err, sizeof(err)), 0);
        assert_false(cfg.outbox_relay);
        assert_int_equal(pl_config_set(&cfg, "outbox", "relay", t[i], err, sizeof(err)), 0);
        assert_true(cfg.outbox_relay);
    }
    const char *bad[] = {"maybe", "", "2", "TRUE", "on", "y", " true"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (pl_config_set(&cfg, "outbox", "relay", bad[i], err, sizeof(err)) != -1)
            fail_msg("outbox.relay \"%s\" accepted", bad[i]);
        assert_contains(err, "outbox.relay");
        assert_true(cfg.outbox_relay);
    }
}

static void test_set_unknown(void **state)
{
    (void)state;
    struct pl_config cfg, before;
    char err[256] = "";
    pl_config_defaults(&cfg, "api");
    memcpy(&before, &cfg, sizeof(cfg));
    assert_int_equal(pl_config_set(&cfg, "http", "prot", "80", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown setting http.prot");
    assert_int_equal(pl_config_set(&cfg, "nosuch", "port", "80", err, sizeof(err)), -1);
    assert_contains(err, "nosuch.port");
    assert_int_equal(pl_config_set(&cfg, "HTTP", "port", "80", err, sizeof(err)), -1);
    assert_contains(err, "HTTP.port");
    assert_int_equal(pl_config_set(&cfg, "http", "", "80", err, sizeof(err)), -1);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

/* ---- pl_config_load: files --------------------------------------------------------------- */

static void test_load_valid_file(void **state)
{
    (void)state;
    char path[64];
    write_temp("# a comment\n"
               "log = { level = \"debug\"; };\n"
               "http:\n"
               "{\n"
               "  bind = \"0.0.0.0\";\n"
               "  port = 9000;\n"
               "  threads = 8;\n"
               "  max_body_bytes = 2048L;\n" /* 64-bit literal is still an integer */
               "};\n"
               "pg = { dsn = \"postgresql://u@db/pl\"; pool_size = 2; };\n"
               "kafka = { group_id = \"g1\"; topic_dlq = \"x.dlq\"; session_timeout_ms = 6000; };\n"
               "outbox = { relay = false; poll_ms = 50; batch = 7; };\n",
               path, sizeof(path));
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "detector");
    int rc = pl_config_load(&cfg, path, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("load failed: %s", err);
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.http_bind, "0.0.0.0");
    assert_int_equal(cfg.http_port, 9000);
    assert_int_equal(cfg.http_threads, 8);
    assert_int_equal(cfg.http_max_body_bytes, 2048);
    assert_string_equal(cfg.pg_dsn, "postgresql://u@db/pl");
    assert_int_equal(cfg.pg_pool_size, 2);
    assert_string_equal(cfg.kafka_group_id, "g1");
    assert_string_equal(cfg.kafka_topic_dlq, "x.dlq");
    assert_int_equal(cfg.kafka_session_timeout_ms, 6000);
    assert_false(cfg.outbox_relay);
    assert_int_equal(cfg.outbox_poll_ms, 50);
    assert_int_equal(cfg.outbox_batch, 7);
    /* Settings the file does not mention keep their defaults. */
    assert_string_equal(cfg.kafka_brokers, "127.0.0.1:9092");
    assert_string_equal(cfg.kafka_topic_traces, "pl.traces");
}

static void test_load_empty_file_and_null_path(void **state)
{
    (void)state;
    char path[64];
    write_temp("", path, sizeof(path));
    struct pl_config cfg, want;
    char err[512] = "";
    pl_config_defaults(&cfg, "api");
    memcpy(&want, &cfg, sizeof(cfg));
    int rc = pl_config_load(&cfg, path, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, 0);
    assert_memory_equal(&cfg, &want, sizeof(cfg));
    assert_int_equal(pl_config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_memory_equal(&cfg, &want, sizeof(cfg));
}

/* Loads content and expects failure with every needle in the message; the message must start
 * with "<path>:<line>:" when line > 0. */
static void expect_load_error(const char *content, int line, const char *needle1,
                              const char *needle2)
{
    char path[64];
    write_temp(content, path, sizeof(path));
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "api");
    int rc = pl_config_load(&cfg, path, err, sizeof(err));
    unlink(path);
    if (rc != -1)
        fail_msg("loading accepted:\n%s", content);
    if (line > 0) {
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s:%d:", path, line);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
            fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
    } else {
        assert_contains(err, path);
    }
    if (needle1)
        assert_contains(err, needle1);
    if (needle2)
        assert_contains(err, needle2);
}

static void test_load_unknown_section(void **state)
{
    (void)state;
    expect_load_error("http = { port = 1; };\n"
                      "\n"
                      "bogus = { a = 1; };\n",
                      3, "unknown section", "bogus");
    /* A known section name that is not a group is not a section either. */
    expect_load_error("log = { level = \"info\"; };\nhttp = 5;\n", 2, "http", NULL);
}

static void test_load_unknown_key(void **state)
{
    (void)state;
    expect_load_error("http = {\n"
                      "  port = 1;\n"
                      "  prot = 2;\n"
                      "};\n",
                      3, "unknown setting http.prot", NULL);
    /* A key that exists in another section is still unknown here. */
    expect_load_error("\nlog = {\n  port = 1;\n};\n", 3, "log.port", NULL);
}

static void test_load_wrong_type(void **state)
{
    (void)state;
    expect_load_error("http = {\n  port = \"80\";\n};\n", 2, "http.port", "must be an integer");
    expect_load_error("http = { port = 80.0; };\n", 1, "http.port", "must be an integer");
    expect_load_error("http = { port = true; };\n", 1, "http.port", NULL);
    expect_load_error("log = { level = 5; };\n", 1, "log.level", "must be a string");
    expect_load_error("outbox = { relay = 1; };\n", 1, "outbox.relay", "must be a boolean");
    expect_load_error("outbox = { relay = \"true\"; };\n", 1, "outbox.relay", "must be a boolean");
    expect_load_error("kafka = { brokers = [\"a\", \"b\"]; };\n", 1, "kafka.brokers", NULL);
    expect_load_error("http = { port = { x = 1; }; };\n", 1, "http.port", NULL);
}

static void test_load_bad_values(void **state)
{
    (void)state;
    expect_load_error("\n\nhttp = { port = 70000; };\n", 3, "http.port", "out of range");
    expect_load_error("http = { port = 99999999999L; };\n", 1, "http.port", "out of range");
    expect_load_error("log = {\n level = \"loud\";\n};\n", 2, "log.level", "loud");
    expect_load_error("pg = { dsn = \"\"; };\n", 1, "pg.dsn", NULL);
    /* libconfig 1.5 wraps this literal to 8296; the loader notices and refuses it. */
    expect_load_error("http = { port = 4294975592; };\n", 1, "http.port", "out of range");
    expect_load_error("http = {\n  threads = -4294967295;\n};\n", 2, "http.threads",
                      "out of range");
    /* the literal is found after its name and '=', its value maybe on the next line */
    expect_load_error("http = { threads =\n  4294967298; };\n", 1, "http.threads", "out of range");
}

/* The wrapped-literal check reads the setting's own literal: not the name inside a string,
 * not a comment, and not the end of the line when the value is on the next one. */
static void test_load_literals_found_where_they_are(void **state)
{
    (void)state;
    char path[64];
    write_temp("pg = { dsn = \"pool_size = 9\"; pool_size = 4; };\n"
               "http = { port =\n  08081; threads = /* many */ 12; };\n",
               path, sizeof(path));
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "api");
    int rc = pl_config_load(&cfg, path, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("a valid file refused: %s", err);
    assert_int_equal(cfg.pg_pool_size, 4);
    assert_int_equal(cfg.http_port, 8081);
    assert_int_equal(cfg.http_threads, 12);
    assert_string_equal(cfg.pg_dsn, "pool_size = 9");
}

static void test_load_syntax_error(void **state)
{
    (void)state;
    expect_load_error("http = {\n  port = ;\n};\n", 2, NULL, NULL);
    expect_load_error("log = { level = \"info\" }\nhttp = { port = 1 \n", 0, NULL, NULL);
    expect_load_error("http = { port = 1; };\nhttp = { port = 2; };\n", 0, NULL, NULL);
}

static void test_load_missing_file(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "api");
    const char *path = "/nonexistent/dir/pl.conf";
    assert_int_equal(pl_config_load(&cfg, path, err, sizeof(err)), -1);
    assert_contains(err, path);
    assert_contains(err, "cannot read");
}

/* ---- environment ------------------------------------------------------------------------- */

static void test_env_overrides_file(void **state)
{
    (void)state;
    char path[64];
    write_temp("http = { port = 9000; bind = \"10.0.0.1\"; };\n"
               "log = { level = \"debug\"; };\n"
               "kafka = { group_id = \"from-file\"; };\n"
               "outbox = { relay = true; };\n",
               path, sizeof(path));
    setenv("PL_HTTP_PORT", "9200", 1);
    setenv("PL_LOG_LEVEL", "warn", 1);
    setenv("PL_KAFKA_GROUP_ID", "", 1);
    setenv("PL_OUTBOX_RELAY", "no", 1);
    setenv("PL_KAFKA_TOPIC_TRACES", "t.env", 1);
    setenv("PL_HTTP_MAX_BODY_BYTES", "4096", 1);
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "detector");
    int rc = pl_config_load(&cfg, path, err, sizeof(err));
    unlink(path);
    clear_env();
    if (rc != 0)
        fail_msg("load failed: %s", err);
    assert_int_equal(cfg.http_port, 9200);
    assert_string_equal(cfg.log_level, "warn");
    assert_string_equal(cfg.kafka_group_id, "");
    assert_false(cfg.outbox_relay);
    assert_string_equal(cfg.kafka_topic_traces, "t.env");
    assert_int_equal(cfg.http_max_body_bytes, 4096);
    /* The file still applies where the environment is silent. */
    assert_string_equal(cfg.http_bind, "10.0.0.1");
}

static void test_env_without_file(void **state)
{
    (void)state;
    setenv("PL_PG_POOL_SIZE", "9", 1);
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "detector");
    int rc = pl_config_load(&cfg, NULL, err, sizeof(err));
    clear_env();
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.pg_pool_size, 9);
    /* Unset again: back to the default on a fresh load. */
    pl_config_defaults(&cfg, "detector");
    assert_int_equal(pl_config_load(&cfg, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg.pg_pool_size, 4);
}

static void test_env_bad_value(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[512] = "";
    const char *bad[] = {"abc", "70000", "", " 80", "80 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("PL_HTTP_PORT", bad[i], 1);
        pl_config_defaults(&cfg, "api");
        err[0] = '\0';
        int rc = pl_config_load(&cfg, NULL, err, sizeof(err));
        unsetenv("PL_HTTP_PORT");
        if (rc != -1)
            fail_msg("PL_HTTP_PORT=\"%s\" accepted", bad[i]);
        assert_contains(err, "PL_HTTP_PORT");
        assert_contains(err, "http.port");
    }
    setenv("PL_OUTBOX_RELAY", "sometimes", 1);
    pl_config_defaults(&cfg, "api");
    assert_int_equal(pl_config_load(&cfg, NULL, err, sizeof(err)), -1);
    unsetenv("PL_OUTBOX_RELAY");
    assert_contains(err, "PL_OUTBOX_RELAY");
    setenv("PL_LOG_LEVEL", "trace", 1);
    assert_int_equal(pl_config_load(&cfg, NULL, err, sizeof(err)), -1);
    unsetenv("PL_LOG_LEVEL");
    assert_contains(err, "PL_LOG_LEVEL");
}

static void test_env_lowercase_ignored(void **state)
{
    (void)state;
    /* Only the upper-case PL_<SECTION>_<KEY> form is read. */
    setenv("pl_http_port", "1234", 1);
    struct pl_config cfg;
    char err[512] = "";
    pl_config_defaults(&cfg, "api");
    int rc = pl_config_load(&cfg, NULL, err, sizeof(err));
    unsetenv("pl_http_port");
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.http_port, 8080);
}

/* ---- pl_config_from_args ----------------------------------------------------------------- */

static void test_args_config(void **state)
{
    (void)state;
    char path[64];
    write_temp("http = { port = 7777; };\n", path, sizeof(path));
    char *argv[] = {"pl-detector", "--config", path, NULL};
    struct pl_config cfg;
    memset(&cfg, 0x11, sizeof(cfg));
    char err[512] = "";
    int rc = pl_config_from_args(&cfg, "detector", 3, argv, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("from_args failed: %s", err);
    assert_int_equal(cfg.http_port, 7777);
    /* The service's defaults are applied underneath the file. */
    assert_string_equal(cfg.kafka_group_id, "pl-detector");
    assert_string_equal(cfg.log_level, "info");
}

static void test_args_none(void **state)
{
    (void)state;
    char *argv[] = {"pl-monitor", NULL};
    struct pl_config cfg;
    char err[512] = "";
    assert_int_equal(pl_config_from_args(&cfg, "monitor", 1, argv, err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 9104);
    assert_string_equal(cfg.kafka_group_id, "pl-monitor");
    /* The environment applies without a file too. */
    setenv("PL_HTTP_PORT", "1", 1);
    int rc = pl_config_from_args(&cfg, "monitor", 1, argv, err, sizeof(err));
    unsetenv("PL_HTTP_PORT");
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.http_port, 1);
}

static void test_args_unexpected(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[512] = "";
    char *argv1[] = {"pl-api", "--verbose", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 2, argv1, err, sizeof(err)), -1);
    assert_contains(err, "--verbose");
    assert_contains(err, "usage");

    char *argv2[] = {"pl-api", "config.cfg", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 2, argv2, err, sizeof(err)), -1);
    assert_contains(err, "config.cfg");

    char *argv3[] = {"pl-api", "--config", "/tmp/a.cfg", "extra", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 4, argv3, err, sizeof(err)), -1);
    assert_contains(err, "extra");

    char *argv4[] = {"pl-api", "--config=/tmp/a.cfg", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 2, argv4, err, sizeof(err)), -1);
}

static void test_args_config_missing_value(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[512] = "";
    char *argv[] = {"pl-api", "--config", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 2, argv, err, sizeof(err)), -1);
    assert_contains(err, "--config");
}

static void test_args_config_bad_file(void **state)
{
    (void)state;
    struct pl_config cfg;
    char err[512] = "";
    char *argv[] = {"pl-api", "--config", "/nonexistent/pl.cfg", NULL};
    assert_int_equal(pl_config_from_args(&cfg, "api", 3, argv, err, sizeof(err)), -1);
    assert_contains(err, "/nonexistent/pl.cfg");

    char path[64];
    write_temp("http = { port = \"80\"; };\n", path, sizeof(path));
    char *argv2[] = {"pl-api", "--config", path, NULL};
    int rc = pl_config_from_args(&cfg, "api", 3, argv2, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, -1);
    assert_contains(err, "http.port");
}

#define T(f) cmocka_unit_test_teardown(f, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults_api),
        T(test_defaults_workers),
        T(test_set_string),
        T(test_set_string_length),
        T(test_set_choice),
        T(test_set_int),
        T(test_set_bool),
        T(test_set_unknown),
        T(test_load_valid_file),
        T(test_load_empty_file_and_null_path),
        T(test_load_unknown_section),
        T(test_load_unknown_key),
        T(test_load_wrong_type),
        T(test_load_bad_values),
        T(test_load_literals_found_where_they_are),
        T(test_load_syntax_error),
        T(test_load_missing_file),
        T(test_env_overrides_file),
        T(test_env_without_file),
        T(test_env_bad_value),
        T(test_env_lowercase_ignored),
        T(test_args_config),
        T(test_args_none),
        T(test_args_unexpected),
        T(test_args_config_missing_value),
        T(test_args_config_bad_file),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
