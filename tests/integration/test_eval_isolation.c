/* Evaluation isolation: one tenant's costly eval rules must not delay another's traces; over-
 * budget traces are flagged, counted and stable on replay; projects have a rule cap. */
#include "itest.h"

#include "kafka.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVIL_RULES  10
#define EVIL_TRACES 15
#define B_TRACES    10

static PGconn *db;
static struct itest_tenant ta, tb;
static char topic[96], group[128], env0[160];
static const char *envp[2];

static void add_rule(const struct itest_tenant *t, const char *metric, const char *type,
                     const char *config)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"%s\",\"evaluator_type\":\"%s\","
             "\"config\":%s}",
             t->project_id, metric, type, config);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t->member_key, body);
    if (r.status != 201)
        fail_msg("create rule %s: %ld %s", metric, r.status, r.body);
    itest_response_free(&r);
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &ta);
    itest_tenant_new(db, "team", &tb);
    /* The repro: rules that backtrack heavily on the output below. */
    for (int i = 0; i < EVIL_RULES; i++) {
        char metric[16];
        snprintf(metric, sizeof(metric), "evil%d", i);
        add_rule(&ta, metric, "regex_match", "{\"pattern\":\"(a|aa)+$\"}");
    }
    /* B has a regex rule too: its costly rules still run while A is over budget. */
    add_rule(&tb, "clean", "regex_absent", "{\"pattern\":\"forbidden\"}");
    itest_topic("evaliso", topic);
    snprintf(group, sizeof(group), "itest-evaliso-%s", topic + 14);
    snprintf(env0, sizeof(env0), "PL_KAFKA_TOPIC_TRACES=%s", topic);
    envp[0] = env0;
    envp[1] = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* Produces n traces "<prefix>-K" of t with output through p, and waits for their acks. */
static void send_traces(struct pl_producer *p, const struct itest_tenant *t, const char *prefix,
                        int n, const char *output)
{
    char now[40];
    pl_now_iso(now, sizeof(now));
    struct pl_kafka_msg *msgs = calloc((size_t)n, sizeof(*msgs));
    char(*ids)[64] = calloc((size_t)n, sizeof(*ids));
    char **evs = calloc((size_t)n, sizeof(char *));
    assert_true(msgs && ids && evs);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s-%d", prefix, i);
        size_t cap = strlen(output) + 512;
        evs[i] = malloc(cap);
        assert_non_null(evs[i]);
        snprintf(evs[i], cap,
                 "{\"schema_version\":1,\"tenant_id\":\"%s\",\"project_id\":\"%s\","
                 "\"received_at\":\"%s\",\"trace\":{\"project_id\":\"%s\",\"id\":\"%s\","
                 "\"output\":\"%s\"}}",
                 t->id, t->project_id, now, t->project_id, ids[i], output);
        msgs[i] = (struct pl_kafka_msg){.topic = topic,
                                        .partition = RD_KAFKA_PARTITION_UA,
                                        .key = ids[i],
                                        .key_len = strlen(ids[i]),
                                        .value = evs[i],
                                        .value_len = strlen(evs[i])};
    }
    if (pl_producer_send_batch(p, msgs, (size_t)n) != 0)
        fail_msg("produce %d traces to %s", n, topic);
    for (int i = 0; i < n; i++)
        free(evs[i]);
    free(evs);
    free(ids);
    free(msgs);
}

static long long count_sql(const char *sql, const char *param)
{
    const char *p[1] = {param};
    char *v = itest_sql(db, sql, 1, p);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

/* Polls until project has want traces; @returns the ms it took, or -1 at the deadline. */
static int64_t wait_stored(const char *project, long long want, int64_t since_ms, int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    do {
        if (count_sql("SELECT count(*) FROM traces WHERE project_id = $1", project) >= want)
            return pl_now_ms() - since_ms;
        pl_sleep_ms(10); /* poll interval */
    } while (pl_now_ms() < deadline);
    return -1;
}

#define FLAGGED_SQL                                                                                \
    "SELECT count(*) FROM traces WHERE project_id = $1 AND jsonb_path_exists(eval, '$.*.skipped')"

static char *eval_snapshot(void)
{
    const char *p[1] = {ta.project_id};
    return itest_sql(db,
                     "SELECT string_agg(id || '=' || eval::text, ';' ORDER BY id) || '|' ||"
                     " (SELECT coalesce(sum(count), 0) FROM failure_clusters WHERE project_id = $1)"
                     " FROM traces WHERE project_id = $1",
                     1, p);
}

static void test_isolation(void **state)
{
    (void)state;
    char log[128], err[256];
    pid_t d = itest_service_start("pl-detector", group, envp, log);
    char url[64];
    snprintf(url, sizeof(url), "%s", itest_service_url());
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);

    /* B alone first: the detector has its partitions, and the baseline latency. */
    int64_t t0 = pl_now_ms();
    send_traces(p, &tb, "warm", B_TRACES, "a fine answer");
    int64_t alone = wait_stored(tb.project_id, B_TRACES, t0, 60000);
    assert_true(alone >= 0);

    /* The repro: A's evil traces, then B's, right after. */
    char *evil = malloc(17 * 176 + 1);
    assert_non_null(evil);
    for (int i = 0; i < 176; i++) {
        memset(evil + i * 17, 'a', 16);
        evil[i * 17 + 16] = '!';
    }
    evil[17 * 176] = '\0';
    send_traces(p, &ta, "evil", EVIL_TRACES, evil);
    t0 = pl_now_ms();
    send_traces(p, &tb, "after", B_TRACES, "another fine answer");
    int64_t behind = wait_stored(tb.project_id, 2 * B_TRACES, t0, 60000);
    print_message("tenant B: %lld ms alone, %lld ms behind tenant A's %d traces x %d rules\n",
                  (long long)alone, (long long)behind, EVIL_TRACES, EVIL_RULES);
    assert_true(behind >= 0);
    if (behind >= 1000)
        fail_msg("tenant B's traces took %lld ms behind tenant A's (limit 1000)",
                 (long long)behind);
    assert_true(wait_stored(ta.project_id, EVIL_TRACES, pl_now_ms(), 60000) >= 0);

    /* A's traces over budget are flagged in their eval... */
    long long flagged = count_sql(FLAGGED_SQL, ta.project_id);
    print_message("tenant A: %lld of %d traces flagged\n", flagged, EVIL_TRACES);
    assert_true(flagged >= EVIL_TRACES - 2);
    assert_int_equal(count_sql(FLAGGED_SQL, tb.project_id), 0);
    /* ... B's regex rule ran on every trace ... */
    assert_int_equal(count_sql("SELECT count(*) FROM traces WHERE project_id = $1"
                               " AND eval->'clean'->>'passed' = 'true'",
                               tb.project_id),
                     2 * B_TRACES);
    /* ... a skipped rule is neither a pass nor a failure: no cluster for it ... */
    assert_int_equal(count_sql("SELECT count(*) FROM failure_clusters WHERE project_id = $1"
                               " AND template LIKE '%not evaluated%'",
                               ta.project_id),
                     0);
    /* ... and counted by the detector, each flagged trace once. */
    long long by_trace =
        itest_metric(url, "pl_detector_eval_budget_exceeded_total{budget=\"trace\"}");
    long long by_tenant =
        itest_metric(url, "pl_detector_eval_budget_exceeded_total{budget=\"tenant\"}");
    assert_int_equal(by_trace + by_tenant, flagged);
    assert_true(itest_metric(url, "pl_detector_eval_rules_skipped_total") > 0);

    /* The API shows the flag on the trace: the skipped rules' evaluations say so. */
    const char *pp[1] = {ta.project_id};
    char *id = itest_sql(db,
                         "SELECT id FROM traces WHERE project_id = $1"
                         " AND jsonb_path_exists(eval, '$.*.skipped') ORDER BY id LIMIT 1",
                         1, pp);
    char path[256];
    snprintf(path, sizeof(path), "/v1/traces/%s?project_id=%s", id, ta.project_id);
    struct itest_response r = itest_api("GET", path, ta.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    json_object *evs = json_object_object_get(r.json, "evaluations");
    int shown = 0;
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        json_object *e = json_object_array_get_idx(evs, i);
        const char *fb = json_object_get_string(json_object_object_get(e, "feedback"));
        if (fb && strstr(fb, "evaluation budget exceeded")) {
            assert_null(json_object_object_get(e, "passed"));
            shown++;
        }
    }
    assert_true(shown > 0);
    itest_response_free(&r);
    free(id);
    free(evil);
    pl_producer_destroy(p, 5000);
    itest_service_stop(d);
}

/* A replay (a new group reads the topic again) keeps the first stored evaluation: the flags,
 * the eval JSON and the clusters do not change. */
static void test_replay_keeps_first_result(void **state)
{
    (void)state;
    char *before = eval_snapshot();
    char log[128], replay_group[160];
    snprintf(replay_group, sizeof(replay_group), "%s-replay", group);
    pid_t d = itest_service_start("pl-detector", replay_group, envp, log);
    assert_true(itest_group_caught_up(replay_group, topic, 60000));
    char *after = eval_snapshot();
    assert_string_equal(before, after);
    itest_service_stop(d);
    free(before);
    free(after);
}

static void test_rule_cap(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char metric[16];
    for (int i = 0; i < 50; i++) { /* eval.max_rules_per_project's default */
        snprintf(metric, sizeof(metric), "m%d", i);
        add_rule(&t, metric, i % 2 ? "error_free" : "max_length", i % 2 ? "{}" : "{\"max\":1000}");
    }
    char body[256];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"one-too-many\","
             "\"evaluator_type\":\"error_free\",\"enabled\":false}",
             t.project_id);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 422);
    const char *e = itest_json_str(&r, "error");
    assert_non_null(e);
    assert_non_null(strstr(e, "50 eval rules"));
    assert_non_null(strstr(e, "eval.max_rules_per_project"));
    itest_response_free(&r);
    const char *p[1] = {t.project_id};
    assert_int_equal(count_sql("SELECT count(*) FROM eval_rules WHERE project_id = $1", p[0]), 50);
    /* Another project is not affected, and a deleted rule makes room. */
    add_rule(&tb, "fine", "error_free", "{}");
    char *id = itest_sql(db, "SELECT id FROM eval_rules WHERE project_id = $1 LIMIT 1", 1, p);
    char path[128];
    snprintf(path, sizeof(path), "/v1/eval-rules/%s", id);
    r = itest_api("DELETE", path, t.owner_key, NULL);
    assert_int_equal(r.status, 204);
    itest_response_free(&r);
    r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_replay_keeps_first_result),
        cmocka_unit_test(test_rule_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
