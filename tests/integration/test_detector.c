/* The detector against the real stack: clusters from errors and failed rules, exactly one
 * threshold event, replays that change nothing, a crash between commit and offset commit,
 * and two detectors sharing a group. */
#include "itest.h"

#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static PGconn *db;
static struct itest_tenant t;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    const char *p[1] = {t.project_id};
    free(itest_sql(db, "UPDATE projects SET cluster_min_size = 3 WHERE id = $1", 1, p));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* Everything the detector wrote for the test project, as one comparable string. */
static char *snapshot(void)
{
    const char *p[1] = {t.project_id};
    return itest_sql(
        db,
        "SELECT (SELECT count(*) FROM traces WHERE project_id = $1) || '|' ||"
        " (SELECT coalesce(string_agg(signature || ':' || count || ':' || first_seen || ':' ||"
        "   last_seen || ':' || coalesce(threshold_reached_at::text, '-'), ',' ORDER BY signature),"
        "   '') FROM failure_clusters WHERE project_id = $1) || '|' ||"
        " (SELECT count(*) FROM cluster_members m JOIN failure_clusters c ON c.id = m.cluster_id"
        "   WHERE c.project_id = $1) || '|' ||"
        " (SELECT count(*) FROM outbox WHERE topic = 'pl.clusters' AND payload->>'project_id' = "
        "$1::text)",
        1, p);
}

/* The error texts vary their numbers through a caller-given format. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void ingest_batch(const char *prefix, int n, const char *error_fmt, const char *output)
{
    size_t cap = (size_t)n * 512 + 64;
    char *body = malloc(cap);
    size_t len = (size_t)snprintf(body, cap, "{\"traces\":[");
    for (int i = 0; i < n; i++) {
        char error[256] = "";
        if (error_fmt)
            snprintf(error, sizeof(error), error_fmt, 100 + i * 37, i);
        len +=
            (size_t)snprintf(body + len, cap - len,
                             "%s{\"project_id\":\"%s\",\"id\":\"%s-%d\",\"output\":\"%s\"%s%s%s}",
                             i ? "," : "", t.project_id, prefix, i, output,
                             error_fmt ? ",\"error\":\"" : "", error, error_fmt ? "\"" : "");
    }
    snprintf(body + len, cap - len, "]}");
    struct itest_response r = itest_api("POST", "/v1/ingest/batch", t.member_key, body);
    if (r.status != 201)
        fail_msg("ingest: %ld %s", r.status, r.body);
    itest_response_free(&r);
    free(body);
}

static void wait_traces(int want)
{
    const char *p[1] = {t.project_id};
    int64_t deadline = pl_now_ms() + 30000;
    char *n = NULL;
    do {
        free(n);
        n = itest_sql(db, "SELECT count(*) FROM traces WHERE project_id = $1", 1, p);
        if (strtol(n, NULL, 10) >= want)
            break;
        pl_sleep_ms(100);
    } while (pl_now_ms() < deadline);
    if (strtol(n, NULL, 10) != want)
        fail_msg("expected %d traces stored, have %s", want, n);
    free(n);
}

static json_object *clusters(void)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s", t.project_id);
    struct itest_response r = itest_api("GET", path, t.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    json_object *c = json_object_get(json_object_object_get(r.json, "clusters"));
    itest_response_free(&r);
    return c;
}

static json_object *cluster_of_type(json_object *cs, const char *error_type, const char *needle)
{
    for (size_t i = 0; i < json_object_array_length(cs); i++) {
        json_object *c = json_object_array_get_idx(cs, i);
        if (strcmp(json_object_get_string(json_object_object_get(c, "error_type")), error_type) ==
                0 &&
            (!needle ||
             strstr(json_object_get_string(json_object_object_get(c, "error_message")), needle)))
            return c;
    }
    return NULL;
}

static void test_clusters_and_threshold(void **state)
{
    (void)state;
    char body[512];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"json_output\","
             "\"evaluator_type\":\"json_valid\",\"config\":{}}",
             t.project_id);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    if (r.status != 201)
        fail_msg("eval rule: %ld %s", r.status, r.body);
    itest_response_free(&r);

    ingest_batch("timeout", 5, "Timeout after %d ms calling https://api.example.com/v1/items/%d",
                 "{}");
    ingest_batch("keyerr", 2, "KeyError: user_%d not found in shard %d", "{}");
    ingest_batch("prose", 4, NULL, "Sure! Here is the answer.");
    ingest_batch("fine", 3, NULL, "{\\\"ok\\\":true}");
    wait_traces(14);

    json_object *cs = clusters();
    json_object *timeout = cluster_of_type(cs, "error", "Timeout");
    json_object *keyerr = cluster_of_type(cs, "error", "KeyError");
    json_object *rule = cluster_of_type(cs, "rule:json_output", NULL);
    assert_non_null(timeout);
    assert_non_null(keyerr);
    assert_non_null(rule);
    assert_int_equal(json_object_array_length(cs), 3); /* the passing traces made none */
    assert_int_equal(json_object_get_int(json_object_object_get(timeout, "count")), 5);
    assert_int_equal(json_object_get_int(json_object_object_get(keyerr, "count")), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(rule, "count")), 4);
    const char *sig = json_object_get_string(json_object_object_get(timeout, "signature"));
    assert_int_equal(strncmp(sig, "sha256:", 7), 0);
    assert_int_equal(strlen(sig), 7 + 64);
    assert_true(json_object_array_length(json_object_object_get(timeout, "sample_ids")) >= 1);

    /* the two clusters at or over 3 announced themselves once each; the small one did not */
    const char *keys[3] = {sig, json_object_get_string(json_object_object_get(rule, "signature")),
                           json_object_get_string(json_object_object_get(keyerr, "signature"))};
    assert_true(itest_outbox_drained(db, keys, 3, 20000));
    json_object *events = itest_kafka_read("pl.clusters", keys, 3, 20000);
    assert_int_equal(json_object_array_length(events), 2);
    for (size_t i = 0; i < 2; i++) {
        json_object *e = json_object_array_get_idx(events, i);
        assert_string_equal(json_object_get_string(json_object_object_get(e, "project_id")),
                            t.project_id);
        assert_true(json_object_get_int(json_object_object_get(e, "count")) >= 3);
        assert_true(pl_uuid_valid(json_object_get_string(json_object_object_get(e, "cluster_id"))));
    }
    json_object_put(events);

    /* the API filters: another tenant sees none of it; a time window in the past is empty */
    struct itest_tenant o;
    itest_tenant_new(db, "team", &o);
    r = itest_api("GET", "/v1/failures/clusters", o.viewer_key, NULL);
    assert_string_equal(r.body, "{\"clusters\":[],\"next_offset\":null}");
    itest_response_free(&r);
    char path[256];
    snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s&to=2001-01-01T00:00:00Z",
             t.project_id);
    r = itest_api("GET", path, t.viewer_key, NULL);
    assert_string_equal(r.body, "{\"clusters\":[],\"next_offset\":null}");
    itest_response_free(&r);
    r = itest_api("GET", "/v1/failures/clusters?from=yesterday", t.viewer_key, NULL);
    assert_int_equal(r.status, 400);
    itest_response_free(&r);
    json_object_put(cs);
}

static void test_replay_changes_nothing(void **state)
{
    (void)state;
    char *before = snapshot();
    char group[64], log[128];
    snprintf(group, sizeof(group), "itest-replay-%d", (int)getpid());
    /* a new group reads pl.traces from the start: a full replay of every trace */
    pid_t d = itest_service_start("pl-detector", group, NULL, log);
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(d);
    char *after = snapshot();
    assert_string_equal(after, before);
    free(after);

    /* and again after an explicit reset of that group to earliest */
    char admin[512];
    itest_bin("pl-admin", admin, sizeof(admin));
    const char *argv[] = {admin,     "offsets",   "reset", "--group",  group,
                          "--topic", "pl.traces", "--to",  "earliest", NULL};
    pid_t a = itest_spawn(argv, NULL, "/tmp/pl-itest-reset.log");
    int st = itest_wait(a, 30000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    d = itest_service_start("pl-detector", group, NULL, log);
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(d);
    after = snapshot();
    assert_string_equal(after, before);
    free(after);
    free(before);
}

static void test_crash_between_commit_and_offsets(void **state)
{
    (void)state;
    ingest_batch("crash", 4, "ConnectionResetError: peer %d reset stream %d", "{}");
    wait_traces(18);
    char *before = snapshot();
    char group[64], log[128];
    snprintf(group, sizeof(group), "itest-crash-%d", (int)getpid());
    const char *crash[] = {"PL_FAILPOINT=detector_after_commit", NULL};
    pid_t d = itest_service_start("pl-detector", group, crash, log);
    int st = itest_wait(d, 30000);
    assert_true(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* restarted: the uncommitted batch comes again and is recognised as already done */
    d = itest_service_start("pl-detector", group, NULL, log);
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(d);
    char *after = snapshot();
    assert_string_equal(after, before);
    json_object *cs = clusters();
    json_object *c = cluster_of_type(cs, "error", "ConnectionResetError");
    assert_non_null(c);
    assert_int_equal(json_object_get_int(json_object_object_get(c, "count")), 4);
    json_object_put(cs);
    free(before);
    free(after);
}

static void test_two_detectors_one_group(void **state)
{
    (void)state;
    char *before = snapshot();
    char group[64], log1[128], log2[128];
    snprintf(group, sizeof(group), "itest-pair-%d", (int)getpid());
    pid_t a = itest_service_start("pl-detector", group, NULL, log1);
    pid_t b = itest_service_start("pl-detector", group, NULL, log2);
    /* both get a share of the partitions once the group has rebalanced */
    assert_true(itest_wait_file_contains(log2, "partitions assigned", 30000));
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(a);
    itest_service_stop(b);
    char *after = snapshot();
    assert_string_equal(after, before);
    free(before);
    free(after);
}

/* A trace PostgreSQL refuses (the failpoint spoils its row) is dead-lettered with the reason;
 * the rest of its batch is stored and the partition moves on instead of retrying forever. */
static void test_refused_trace_is_dead_lettered(void **state)
{
    (void)state;
    char id[80], body[256];
    snprintf(id, sizeof(id), "%d-%lld-refuse-me", (int)getpid(), (long long)pl_now_ms());
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"id\":\"%s\",\"output\":\"{}\"}",
             t.project_id, id);
    struct itest_response r = itest_api("POST", "/v1/ingest", t.member_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
    ingest_batch("after-refused", 3, NULL, "{}");
    wait_traces(22); /* the stack's detector (no failpoint) stores all of them */
    char *before = snapshot();
    /* a second detector replays the topic from the start with the failpoint armed */
    char group[64], log[128];
    snprintf(group, sizeof(group), "itest-refused-%d", (int)getpid());
    const char *refuse[] = {"PL_FAILPOINT=detector_refused_row", NULL};
    pid_t d = itest_service_start("pl-detector", group, refuse, log);
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(d);
    assert_true(itest_wait_file_contains(log, "PostgreSQL refused trace", 1000));
    char *after = snapshot();
    assert_string_equal(after, before);
    const char *keys[1] = {id};
    json_object *dlq = itest_kafka_read("pl.dlq", keys, 1, 20000);
    bool refused = false;
    for (size_t i = 0; i < json_object_array_length(dlq); i++)
        refused |= strstr(json_object_get_string(
                              json_object_object_get(json_object_array_get_idx(dlq, i), "error")),
                          "PostgreSQL refused the trace") != NULL;
    assert_true(refused);
    json_object_put(dlq);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clusters_and_threshold),
        cmocka_unit_test(test_replay_changes_nothing),
        cmocka_unit_test(test_crash_between_commit_and_offsets),
        cmocka_unit_test(test_two_detectors_one_group),
        cmocka_unit_test(test_refused_trace_is_dead_lettered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
