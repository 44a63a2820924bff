/* Process behaviour of the five services: clean shutdown on SIGTERM (exit 0 within 5 s,
 * group left), and poison messages dead-lettered without blocking the partition. */
#include "itest.h"

#include "kafka.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void sigterm_exits_cleanly(const char *service, bool consumes)
{
    char bin[512], log[256];
    snprintf(bin, sizeof(bin), "%s/pl-%s", itest_env("PL_BIN_DIR"), service);
    snprintf(log, sizeof(log), "/tmp/pl-itest-%s-%d.log", service, (int)getpid());
    static char env[5][600];
    int port = itest_free_port();
    snprintf(env[0], sizeof(env[0]), "PL_PG_DSN=%s", itest_env("PL_PG_DSN"));
    snprintf(env[1], sizeof(env[1]), "PL_KAFKA_BROKERS=%s", itest_env("PL_KAFKA_BROKERS"));
    snprintf(env[2], sizeof(env[2]), "PL_HTTP_PORT=%d", port);
    /* a group of its own, so that joining and leaving is not delayed by other members */
    snprintf(env[3], sizeof(env[3]), "PL_KAFKA_GROUP_ID=itest-%s-%d", service, (int)getpid());
    snprintf(env[4], sizeof(env[4]), "PL_KAFKA_SESSION_TIMEOUT_MS=6000");
    const char *envp[] = {env[0], env[1], env[2], env[3], env[4], NULL};
    const char *argv[] = {bin, NULL};
    pid_t pid = itest_spawn(argv, envp, log);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    assert_true(itest_wait_http_ok(url, 20000));
    if (consumes)
        assert_true(itest_wait_file_contains(log, "partitions assigned", 20000));

    int64_t t0 = pl_now_ms();
    kill(pid, SIGTERM);
    int st = itest_wait(pid, 5000);
    int64_t took = pl_now_ms() - t0;
    if (st == -1) {
        kill(pid, SIGKILL);
        itest_wait(pid, 5000);
        fail_msg("pl-%s did not exit within 5 s of SIGTERM (see %s)", service, log);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("pl-%s exited with status %d (see %s)", service, st, log);
    if (consumes)
        assert_true(itest_wait_file_contains(log, "consumer closed and left its group", 0));
    printf("pl-%s stopped in %lld ms\n", service, (long long)took);
    unlink(log);
}

static void test_sigterm_api(void **state)
{
    (void)state;
    sigterm_exits_cleanly("api", false);
}

static void test_sigterm_detector(void **state)
{
    (void)state;
    sigterm_exits_cleanly("detector", true);
}

static void test_sigterm_differ(void **state)
{
    (void)state;
    sigterm_exits_cleanly("differ", true);
}

static void test_sigterm_abharness(void **state)
{
    (void)state;
    sigterm_exits_cleanly("abharness", true);
}

static void test_sigterm_monitor(void **state)
{
    (void)state;
    sigterm_exits_cleanly("monitor", true);
}

/* The committed offset of group on topic[partition], or -1. */
static int64_t committed_offset(const char *group, const char *topic, int32_t partition)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", itest_env("PL_KAFKA_BROKERS"), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    int64_t off = -1;
    if (rd_kafka_committed(rk, l, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

static void test_poison_message_dead_lettered(void **state)
{
    (void)state;
    char err[256], key[64];
    snprintf(key, sizeof(key), "poison-%d-%lld", (int)getpid(), (long long)pl_now_ms());
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);
    const char *poison = "{\"schema_version\": 1, \"tenant_id\": \"not json";
    struct pl_kafka_msg m = {.topic = "pl.traces",
                             .partition = 5, /* explicit: both on one partition */
                             .key = key,
                             .key_len = strlen(key),
                             .value = poison,
                             .value_len = strlen(poison)};
    assert_int_equal(pl_producer_send(p, &m, err, sizeof(err)), 0);
    /* a well-formed message behind it on the same partition (same key) */
    const char *good =
        "{\"schema_version\":1,\"tenant_id\":\"00000000-0000-0000-0000-000000000001\","
        "\"project_id\":\"00000000-0000-0000-0000-000000000002\",\"trace\":{}}";
    struct pl_kafka_msg g = m;
    char good_key[80];
    snprintf(good_key, sizeof(good_key), "%s-next", key);
    g.key = good_key; /* its own key: only the poison's dead letter is looked for below */
    g.key_len = strlen(good_key);
    g.value = good;
    g.value_len = strlen(good);
    assert_int_equal(pl_producer_send(p, &g, err, sizeof(err)), 0);
    assert_int_equal(g.out_partition, m.out_partition);
    /* valid JSON, but values no SQL cast would take: dead-lettered too, never retried */
    char bad_key[80];
    snprintf(bad_key, sizeof(bad_key), "%s-casts", key);
    const char *bad =
        "{\"schema_version\":1,\"tenant_id\":\"00000000-0000-0000-0000-000000000001\","
        "\"project_id\":\"00000000-0000-0000-0000-000000000002\","
        "\"received_at\":\"2026-13-45T99:00:00Z\",\"trace\":{\"id\":\"x\","
        "\"latency_ms\":\"abc\"}}";
    struct pl_kafka_msg b = g;
    b.key = bad_key;
    b.key_len = strlen(bad_key);
    b.value = bad;
    b.value_len = strlen(bad);
    assert_int_equal(pl_producer_send(p, &b, err, sizeof(err)), 0);
    pl_producer_destroy(p, 5000);

    /* the detector dead-letters the poison and moves on past the good one */
    int64_t deadline = pl_now_ms() + 30000;
    while (committed_offset("pl-detector", "pl.traces", m.out_partition) <= b.out_offset &&
           pl_now_ms() < deadline)
        pl_sleep_ms(100);
    assert_true(committed_offset("pl-detector", "pl.traces", m.out_partition) > b.out_offset);
    const char *bad_keys[1] = {bad_key};
    json_object *casts = itest_kafka_read("pl.dlq", bad_keys, 1, 20000);
    bool from_detector = false;
    for (size_t i = 0; i < json_object_array_length(casts); i++)
        from_detector |= strstr(json_object_get_string(json_object_object_get(
                                    json_object_array_get_idx(casts, i), "error")),
                                "received_at") != NULL;
    assert_true(from_detector);
    json_object_put(casts);

    const char *keys[1] = {key};
    json_object *dlq = itest_kafka_read("pl.dlq", keys, 1, 20000);
    assert_true(json_object_array_length(dlq) >= 1); /* detector and monitor both consume */
    for (size_t i = 0; i < json_object_array_length(dlq); i++) {
        json_object *rec = json_object_array_get_idx(dlq, i);
        assert_string_equal(json_object_get_string(json_object_object_get(rec, "source_topic")),
                            "pl.traces");
        assert_int_equal(json_object_get_int(json_object_object_get(rec, "partition")),
                         m.out_partition);
        assert_int_equal(json_object_get_int64(json_object_object_get(rec, "offset")),
                         m.out_offset);
        assert_non_null(
            strstr(json_object_get_string(json_object_object_get(rec, "error")), "JSON"));
        const char *b64 = json_object_get_string(json_object_object_get(rec, "payload_base64"));
        unsigned char decoded[256];
        int n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)strlen(b64));
        assert_true(n >= (int)strlen(poison));
        assert_memory_equal(decoded, poison, strlen(poison));
    }
    json_object_put(dlq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_api),     cmocka_unit_test(test_sigterm_detector),
        cmocka_unit_test(test_sigterm_differ),  cmocka_unit_test(test_sigterm_abharness),
        cmocka_unit_test(test_sigterm_monitor), cmocka_unit_test(test_poison_message_dead_lettered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
