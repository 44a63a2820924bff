/* pl-abharness against the stack's PostgreSQL and broker and a pl-llmsim of its own: a
 * candidate that fixes the cluster passes, one that breaks the guardrail traces fails with
 * that reason, autoship ships through the registry, and a harness killed mid-replay is
 * resumed after its restart with one decision and one event. Each test uses its own
 * deployments topic, so the stack's harness never sees these deployments.
 *
 * The guardrail gate is a non-inferiority test (common/ab_decide.h): with the default margin
 * 0.03 at alpha 0.05, guardrail items that pass under both prompts show it from 90 items on
 * (z = sqrt(n 0.03 / 0.97) > 1.645), so the tests on the defaults have 100 of them. */
#include "deploy.h"
#include "itest.h"
#include "util.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

/* The simulated application model: JSON when the system prompt asks for it; guardrail
 * questions ("guard ...") are answered in JSON except under a prompt that breaks them. */
static const char scenario_fmt[] =
    "{\"seed\": 3, \"latency_ms\": %d, \"rules\": ["
    "{\"name\": \"guard-broken\", \"match\": {\"system\": \"BREAKS-GUARDRAIL\", \"user\": "
    "\"^guard\"}, \"reply\": \"a prose answer\"},"
    "{\"name\": \"guard-ok\", \"match\": {\"user\": \"^guard\"}, \"reply\": \"{\\\"ok\\\": "
    "true}\"},"
    "{\"name\": \"json\", \"match\": {\"system\": \"valid JSON\"}, \"reply\": \"{\\\"answer\\\": "
    "1}\"}],"
    "\"default_reply\": \"a prose answer\"}";

struct ab_env {
    PGconn *conn;
    struct itest_tenant t;
    struct itest_cluster c;
    pid_t sim;
    char llm_url[64], topic[96], group[64], id[37];
    char env[4][160];
    const char *envp[6];
};

/* 30 failing cluster traces and nguard passing traces of the same prompt. */
static void ab_env_new(struct ab_env *e, int latency_ms, bool autoship, int nguard)
{
    memset(e, 0, sizeof(*e));
    e->conn = itest_pg(NULL);
    itest_tenant_new(e->conn, "team", &e->t);
    itest_cluster_new(e->conn, &e->t, "support", "You are a bot.", 30, nguard, &e->c);
    const char *p[2] = {e->t.project_id, autoship ? "true" : "false"};
    free(itest_sql(e->conn,
                   "UPDATE projects SET prompt_autoship_enabled = $2::boolean WHERE id = $1"
                   " RETURNING id",
                   2, p));
    char scenario[1024];
    snprintf(scenario, sizeof(scenario), scenario_fmt, latency_ms);
    e->sim = itest_llmsim_start(scenario, e->llm_url);
    itest_topic("deployments", e->topic);
    snprintf(e->group, sizeof(e->group), "itest-ab-%s", e->topic + 18);
    snprintf(e->env[0], sizeof(e->env[0]), "PL_LLM_BASE_URL=%s", e->llm_url);
    snprintf(e->env[1], sizeof(e->env[1]), "PL_KAFKA_TOPIC_DEPLOYMENTS=%s", e->topic);
    snprintf(e->env[2], sizeof(e->env[2]), "PL_LLM_MAX_CONCURRENCY=4");
    snprintf(e->env[3], sizeof(e->env[3]), "PL_LLM_BACKOFF_MS=10");
    for (int i = 0; i < 4; i++)
        e->envp[i] = e->env[i];
    e->envp[4] = NULL;
}

static void ab_env_free(struct ab_env *e)
{
    itest_llmsim_stop(e->sim);
    PQfinish(e->conn);
}

/* The differ's part: a proposed deployment (and its event on the test's topic). */
static void ab_propose(struct ab_env *e, const char *candidate)
{
    struct pl_deploy_proposal prop = {
        .tenant_id = e->t.id,
        .project_id = e->t.project_id,
        .cluster_signature = e->c.signature,
        .cluster_id = e->c.cluster_id,
        .prompt_id = e->c.prompt_id,
        .base_version_id = e->c.version_id,
        .current_prompt = "You are a bot.",
        .proposed_prompt = candidate,
        .rationale = "test",
        .shown_trace_ids = "{}",
        .events_topic = e->topic,
    };
    struct pl_pg_error err;
    assert_int_equal(pl_deploy_create(e->conn, &prop, e->id, &err), PL_TRANSITION_OK);
}

/* Polls the deployment's status until it is `want` (or the deadline passes). */
static bool ab_wait_status(struct ab_env *e, const char *want, int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    const char *p[1] = {e->id};
    while (pl_now_ms() < deadline) {
        char *s = itest_sql(e->conn, "SELECT status FROM prompt_deployments WHERE id = $1", 1, p);
        bool ok = strcmp(s, want) == 0;
        free(s);
        if (ok)
            return true;
        pl_sleep_ms(50);
    }
    return false;
}

static char *ab_field(struct ab_env *e, const char *expr)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT (%s)::text FROM prompt_deployments d WHERE d.id = $1", expr);
    const char *p[1] = {e->id};
    return itest_sql(e->conn, sql, 1, p);
}

static void ab_expect(struct ab_env *e, const char *expr, const char *want)
{
    char *v = ab_field(e, expr);
    if (strcmp(v, want) != 0)
        fail_msg("%s = \"%s\", want \"%s\"", expr, v, want);
    free(v);
}

/* Outbox events of the deployment (to = each status, comma-separated, in order). */
static void ab_expect_events(struct ab_env *e, const char *want)
{
    const char *p[1] = {e->id};
    char *v = itest_sql(e->conn,
                        "SELECT string_agg(payload->>'to', ',' ORDER BY id) FROM outbox"
                        " WHERE key = $1",
                        1, p);
    if (strcmp(v, want) != 0)
        fail_msg("events %s, want %s", v, want);
    free(v);
}

static void test_candidate_that_fixes_the_cluster_passes(void **state)
{
    (void)state;
    struct ab_env e;
    ab_env_new(&e, 5, false, 100);
    char log[128];
    pid_t h = itest_service_start("pl-abharness", e.group, e.envp, log);
    ab_propose(&e, "You are a bot. Reply with one valid JSON object.");
    assert_true(ab_wait_status(&e, "ab_passed", 30000));
    ab_expect(&e, "(d.ab_report->>'correctness_baseline')::float8", "0");
    ab_expect(&e, "(d.ab_report->>'correctness_candidate')::float8", "1");
    ab_expect(&e, "(d.ab_report->>'correctness_delta')::float8", "1");
    ab_expect(&e, "d.ab_report->'sample_size'", "30");
    ab_expect(&e, "d.ab_report->'discordant'->>'candidate_only'", "30");
    ab_expect(&e, "d.ab_report->'discordant'->>'baseline_only'", "0");
    ab_expect(&e, "(d.ab_report->>'mcnemar_p')::float8 < 2e-9", "true"); /* 2 * 0.5^30 */
    /* the guardrail: 100/100 under both prompts, shown non-inferior at the default margin */
    ab_expect(&e, "d.ab_report->'guardrail'->>'sample_size'", "100");
    ab_expect(&e, "(d.ab_report->'guardrail'->>'drop')::float8", "0");
    ab_expect(&e, "d.ab_report->'guardrail'->'discordant'->>'baseline_only'", "0");
    ab_expect(&e, "d.ab_report->'guardrail'->'discordant'->>'candidate_only'", "0");
    ab_expect(&e, "d.ab_report->'guardrail'->>'test'", "non-inferiority, Tango score, one-sided");
    ab_expect(&e, "(d.ab_report->'guardrail'->>'margin')::float8", "0.03");
    ab_expect(&e, "(d.ab_report->'guardrail'->>'alpha')::float8", "0.05");
    ab_expect(&e, "d.ab_report->'guardrail'->>'applied'", "true");
    ab_expect(&e, "d.ab_report->'guardrail'->>'passed'", "true");
    /* z = sqrt(100 * 0.03 / 0.97); bound = -z95^2 / (100 + z95^2) */
    ab_expect(&e, "abs((d.ab_report->'guardrail'->>'z')::float8 - 1.758631) < 1e-5", "true");
    ab_expect(&e, "abs((d.ab_report->'guardrail'->>'lower_bound')::float8 + 0.026343) < 1e-5",
              "true");
    ab_expect(&e, "d.ab_report->'thresholds'->>'min_delta_compared_with'", "point delta");
    ab_expect(&e, "(d.ab_report->'thresholds'->>'false_pass_rate_at_most')::float8", "0.025");
    ab_expect(&e, "(d.ab_report->'thresholds'->>'guardrail_tolerance')::float8", "0.03");
    ab_expect(&e, "(d.ab_report->'rules'->'json'->>'candidate')::float8", "1");
    ab_expect(&e, "(d.ab_report->'tokens'->'candidate'->>'completion')::int > 0", "true");
    ab_expect(&e, "d.ab_report->>'decision'", "ab_passed");
    /* autoship off: it waits for an owner */
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    ab_expect(&e, "d.status", "ab_passed");
    ab_expect_events(&e, "proposed,ab_running,ab_passed");
    itest_service_stop(h);
    ab_env_free(&e);
}

static void test_candidate_that_breaks_guardrails_fails(void **state)
{
    (void)state;
    struct ab_env e;
    ab_env_new(&e, 5, true, 100);
    char log[128];
    pid_t h = itest_service_start("pl-abharness", e.group, e.envp, log);
    ab_propose(&e, "BREAKS-GUARDRAIL. You are a bot. Reply with one valid JSON object.");
    assert_true(ab_wait_status(&e, "ab_failed", 30000));
    ab_expect(&e, "(d.ab_report->>'correctness_delta')::float8", "1"); /* it does fix the cluster */
    ab_expect(&e, "(d.ab_report->'guardrail'->>'drop')::float8", "1");
    ab_expect(&e, "d.ab_report->'guardrail'->'discordant'->>'baseline_only'", "100");
    ab_expect(&e, "d.ab_report->'guardrail'->'discordant'->>'candidate_only'", "0");
    ab_expect(&e, "d.ab_report->'guardrail'->>'passed'", "false");
    ab_expect(&e, "(d.ab_report->'guardrail'->>'lower_bound')::float8 < -0.03", "true");
    ab_expect(&e,
              "d.ab_report->>'reason' LIKE 'guardrail not shown non-inferior: 100/100 -> "
              "0/100, delta -1.000, %'",
              "true");
    ab_expect_events(&e, "proposed,ab_running,ab_failed");
    itest_service_stop(h);
    ab_env_free(&e);
}

/* A guardrail of 10 items that all pass under both prompts is no evidence at the default
 * margin (z = sqrt(10 * 0.03 / 0.97) = 0.556): the old point rule let it through, the
 * non-inferiority test does not. */
static void test_too_few_guardrail_items_fail_at_the_default_margin(void **state)
{
    (void)state;
    struct ab_env e;
    ab_env_new(&e, 5, true, 10);
    char log[128];
    pid_t h = itest_service_start("pl-abharness", e.group, e.envp, log);
    ab_propose(&e, "You are a bot. Reply with one valid JSON object.");
    assert_true(ab_wait_status(&e, "ab_failed", 30000));
    ab_expect(&e, "(d.ab_report->'guardrail'->>'drop')::float8", "0");
    ab_expect(&e, "abs((d.ab_report->'guardrail'->>'z')::float8 - 0.556128) < 1e-5", "true");
    ab_expect(&e,
              "d.ab_report->>'reason' LIKE 'guardrail not shown non-inferior: 10/10 -> 10/10, "
              "delta 0.000, %'",
              "true");
    ab_expect_events(&e, "proposed,ab_running,ab_failed");
    itest_service_stop(h);
    ab_env_free(&e);
}

static void test_autoship_ships_through_the_registry(void **state)
{
    (void)state;
    struct ab_env e;
    ab_env_new(&e, 5, true, 100);
    char log[128];
    pid_t h = itest_service_start("pl-abharness", e.group, e.envp, log);
    const char *candidate = "You are a bot. Reply with one valid JSON object.";
    ab_propose(&e, candidate);
    assert_true(ab_wait_status(&e, "shipped", 30000));
    ab_expect(&e, "d.approved_by", "system:autoship");
    ab_expect(&e, "d.shipped_at IS NOT NULL", "true");
    /* version 2 = version 1's manifest with the candidate as system prompt, live in production */
    ab_expect(&e,
              "(SELECT v.version || '|' || (v.manifest->'messages'->0->>'content') || '|' ||"
              " v.created_by FROM prompt_versions v WHERE v.id = d.shipped_version_id)",
              "2|You are a bot. Reply with one valid JSON object.|system:autoship");
    ab_expect(&e,
              "(SELECT ed.version_id = d.shipped_version_id FROM environment_deployments ed"
              " WHERE ed.prompt_id = d.prompt_id ORDER BY ed.seq DESC LIMIT 1)",
              "true");
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    ab_expect_events(&e, "proposed,ab_running,ab_passed,shipped");
    (void)candidate;
    itest_service_stop(h);
    ab_env_free(&e);
}

static void test_killed_mid_replay_is_resumed_and_decided_once(void **state)
{
    (void)state;
    struct ab_env e;
    /* 80 calls, 4 at a time, 300 ms each: ~6 s of replay. 100 guardrail items would make it
     * 20 s, so this project has 10 and a margin they can show: sqrt(10 m / (1 - m)) > 1.645
     * needs m > 0.213. */
    ab_env_new(&e, 300, false, 10);
    const char *p0[1] = {e.t.project_id};
    free(itest_sql(e.conn,
                   "UPDATE projects SET ab_guardrail_tolerance = 0.25 WHERE id = $1 RETURNING id",
                   1, p0));
    char log[128];
    pid_t h = itest_service_start("pl-abharness", e.group, e.envp, log);
    ab_propose(&e, "You are a bot. Reply with one valid JSON object.");
    assert_true(ab_wait_status(&e, "ab_running", 20000));
    /* wait until the replay is under way, then kill -9 */
    char stats_url[96];
    snprintf(stats_url, sizeof(stats_url), "%.*s/sim/stats", (int)(strlen(e.llm_url) - 3),
             e.llm_url);
    int64_t deadline = pl_now_ms() + 10000;
    long requests = 0;
    while (requests < 8 && pl_now_ms() < deadline) {
        struct itest_response r = itest_http(stats_url, "GET", "", NULL, NULL);
        json_object *v;
        if (r.json && json_object_object_get_ex(r.json, "requests", &v))
            requests = (long)json_object_get_int64(v);
        itest_response_free(&r);
        pl_sleep_ms(50);
    }
    assert_true(requests >= 8);
    kill(h, SIGKILL);
    assert_true(itest_wait(h, 5000) >= 0);
    ab_expect(&e, "d.status", "ab_running");

    h = itest_service_start("pl-abharness", e.group, e.envp, log);
    assert_true(ab_wait_status(&e, "ab_passed", 30000));
    ab_expect(&e, "d.ab_report->'guardrail'->>'sample_size'", "10");
    ab_expect(&e, "d.ab_report->'guardrail'->>'passed'", "true");
    assert_true(itest_group_caught_up(e.group, e.topic, 30000));
    ab_expect_events(&e, "proposed,ab_running,ab_passed");
    const char *p[1] = {e.id};
    char *audits = itest_sql(e.conn,
                             "SELECT count(*) FROM audit_log WHERE target = $1"
                             " AND detail->>'to' = 'ab_passed'",
                             1, p);
    assert_string_equal(audits, "1");
    free(audits);
    itest_service_stop(h);
    ab_env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_candidate_that_fixes_the_cluster_passes),
        cmocka_unit_test(test_candidate_that_breaks_guardrails_fails),
        cmocka_unit_test(test_too_few_guardrail_items_fail_at_the_default_margin),
        cmocka_unit_test(test_autoship_ships_through_the_registry),
        cmocka_unit_test(test_killed_mid_replay_is_resumed_and_decided_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
