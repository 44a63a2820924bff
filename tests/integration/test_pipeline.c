/* End to end through the stack's own services and its pl-llmsim (config/llmsim/demo.json):
 * pl-loadgen plays an application whose prompt lacks a JSON instruction → api → Kafka →
 * detector (cluster) → differ (proposal) → abharness (A/B, autoship) → version 2 live. */
#include "itest.h"
#include "registry.h"
#include "util.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

static void test_failing_json_answers_end_in_a_shipped_fix(void **state)
{
    (void)state;
    PGconn *conn = itest_pg(NULL);
    struct itest_tenant t;
    itest_tenant_new(conn, "team", &t);
    const char manifest[] = "{\"messages\":[{\"role\":\"system\",\"content\":\"You are the support "
                            "assistant of an online shop. Answer briefly.\"}]}";
    char prompt_id[37], v1[37];
    struct pl_pg_error err;
    assert_int_equal(pl_registry_create_prompt(conn, t.id, t.project_id, "support-chat", manifest,
                                               "itest", prompt_id, v1, &err),
                     1);
    char body[256];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"json\",\"evaluator_type\":\"json_valid\"}",
             t.project_id);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/projects/%s", t.project_id);
    r = itest_api("PATCH", path, t.owner_key,
                  "{\"cluster_min_size\":150,\"prompt_autoship_enabled\":true}");
    assert_int_equal(r.status, 200);
    itest_response_free(&r);

    char bin[512], e_key[128], e_tenant[64], e_project[64], log[128];
    itest_bin("pl-loadgen", bin, sizeof(bin));
    snprintf(e_key, sizeof(e_key), "PL_MEMBER_KEY=%s", t.member_key);
    snprintf(e_tenant, sizeof(e_tenant), "PL_TENANT_ID=%s", t.id);
    snprintf(e_project, sizeof(e_project), "PL_PROJECT_ID=%s", t.project_id);
    snprintf(log, sizeof(log), "/tmp/pl-itest-loadgen-%d.log", (int)getpid());
    const char *env[] = {e_key, e_tenant, e_project, NULL};
    /* Half of the answers fail (demo.json): when the cluster reaches 150 failures there are
     * about as many passing traces, enough guardrail items for the A/B's non-inferiority
     * test at its default margin. */
    const char *argv[] = {bin, "--rate", "100", "--requests", "400", NULL};
    pid_t lg = itest_spawn(argv, env, log);
    int st = itest_wait(lg, 60000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(itest_wait_file_contains(log, "400 requests sent, 0 failed, 0 LLM errors", 1000));

    /* poll until the fix is shipped */
    const char *p[1] = {t.project_id};
    int64_t deadline = pl_now_ms() + 60000;
    char *status = NULL;
    while (pl_now_ms() < deadline) {
        free(status);
        status = itest_sql(conn,
                           "SELECT string_agg(status, ',') FROM prompt_deployments"
                           " WHERE project_id = $1",
                           1, p);
        if (strcmp(status, "shipped") == 0 || strcmp(status, "monitoring") == 0)
            break; /* the monitor takes over a shipped deployment at once */
        pl_sleep_ms(100);
    }
    assert_true(strcmp(status, "shipped") == 0 || strcmp(status, "monitoring") == 0);
    free(status);
    char *row =
        itest_sql(conn,
                  "SELECT d.approved_by || '|' || ((d.ab_report->>'correctness_delta')::float8"
                  " > 0) || '|' || v.version || '|' ||"
                  " (v.manifest->'messages'->0->>'content' LIKE '%valid JSON object%')"
                  " FROM prompt_deployments d JOIN prompt_versions v"
                  "   ON v.id = d.shipped_version_id WHERE d.project_id = $1",
                  1, p);
    assert_string_equal(row, "system:autoship|true|2|true");
    free(row);
    /* version 2 is what production serves now */
    const char *pp[1] = {prompt_id};
    char *live = itest_sql(conn,
                           "SELECT v.version FROM environment_deployments d JOIN prompt_versions v"
                           " ON v.id = d.version_id WHERE d.prompt_id = $1 ORDER BY d.seq DESC"
                           " LIMIT 1",
                           1, pp);
    assert_string_equal(live, "2");
    free(live);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failing_json_answers_end_in_a_shipped_fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
