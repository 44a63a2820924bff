/* pl-differ against the stack's PostgreSQL and broker and a pl-llmsim of its own: a cluster
 * event becomes one `proposed` deployment with its event; bad LLM replies create nothing;
 * two replicas and a replayed event still create exactly one. Each test uses its own topics,
 * so the stack's differ never sees these events. */
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

/* The proposal the simulated LLM returns; MALFORMED / IDENTICAL in the current prompt (which
 * the meta-prompt quotes) select the bad replies. */
static const char scenario[] =
    "{\"seed\": 1, \"latency_ms\": 5, \"rules\": ["
    "{\"name\": \"malformed\", \"match\": {\"system\": \"You improve the system prompts\","
    " \"user\": \"MALFORMED\"}, \"reply\": \"Sure, here is a better prompt: be nice.\"},"
    "{\"name\": \"identical\", \"match\": {\"system\": \"You improve the system prompts\","
    " \"user\": \"IDENTICAL\"}, \"reply\": \"{\\\"proposed_prompt\\\": \\\"  You are the "
    "IDENTICAL bot.\\\\n\\\", \\\"rationale\\\": \\\"none\\\"}\"},"
    "{\"name\": \"proposal\", \"match\": {\"system\": \"You improve the system prompts\","
    " \"user\": \"error type: rule:json\"}, \"reply\": \"{\\\"diagnosis\\\": \\\"no JSON "
    "instruction\\\", \\\"proposed_prompt\\\": \\\"You are a bot. Reply with one valid JSON "
    "object.\\\", \\\"rationale\\\": \\\"adds the output contract\\\"}\"}]}";

struct differ_env {
    PGconn *conn;
    struct itest_tenant t;
    struct itest_cluster c;
    pid_t sim;
    char llm_url[64], clusters[96], deployments[96], group[64];
    char env[4][160];
    const char *envp[6];
};

static void differ_env_new(struct differ_env *e, const char *system)
{
    memset(e, 0, sizeof(*e));
    e->conn = itest_pg(NULL);
    itest_tenant_new(e->conn, "team", &e->t);
    itest_cluster_new(e->conn, &e->t, "support", system, 12, 4, &e->c);
    e->sim = itest_llmsim_start(scenario, e->llm_url);
    itest_topic("clusters", e->clusters);
    itest_topic("deployments", e->deployments);
    snprintf(e->group, sizeof(e->group), "itest-differ-%s", e->clusters + 15);
    snprintf(e->env[0], sizeof(e->env[0]), "PL_LLM_BASE_URL=%s", e->llm_url);
    snprintf(e->env[1], sizeof(e->env[1]), "PL_KAFKA_TOPIC_CLUSTERS=%s", e->clusters);
    snprintf(e->env[2], sizeof(e->env[2]), "PL_KAFKA_TOPIC_DEPLOYMENTS=%s", e->deployments);
    snprintf(e->env[3], sizeof(e->env[3]), "PL_LLM_BACKOFF_MS=10");
    for (int i = 0; i < 4; i++)
        e->envp[i] = e->env[i];
    e->envp[4] = NULL;
}

static void differ_env_free(struct differ_env *e)
{
    itest_llmsim_stop(e->sim);
    PQfinish(e->conn);
}

static void differ_send_event(const struct differ_env *e, long long event_id)
{
    char ev[512];
    snprintf(
        ev, sizeof(ev),
        "{\"schema_version\":1,\"event_id\":\"%lld\",\"tenant_id\":\"%s\",\"project_id\":\"%s\","
        "\"cluster_id\":\"%s\",\"signature\":\"%s\",\"count\":12}",
        event_id, e->t.id, e->t.project_id, e->c.cluster_id, e->c.signature);
    itest_produce(e->clusters, e->c.signature, ev);
}

static long long differ_event_id(void)
{
    unsigned int r;
    pl_random_bytes(&r, sizeof(r));
    return 1000000000000LL + (long long)(r % 1000000000u);
}

static char *differ_count(const struct differ_env *e)
{
    const char *p[1] = {e->t.project_id};
    return itest_sql(e->conn, "SELECT count(*) FROM prompt_deployments WHERE project_id = $1", 1,
                     p);
}

static void test_cluster_event_proposes_once(void **state)
{
    (void)state;
    struct differ_env e;
    differ_env_new(&e, "You are a bot.");
    char log[128];
    pid_t d = itest_service_start("pl-differ", e.group, e.envp, log);
    long long ev = differ_event_id();
    differ_send_event(&e, ev);
    assert_true(itest_group_caught_up(e.group, e.clusters, 30000));

    const char *p[1] = {e.t.project_id};
    char *row = itest_sql(e.conn,
                          "SELECT status || '|' || current_prompt || '|' || proposed_prompt || '|'"
                          " || rationale || '|' || prompt_id || '|' || base_version_id || '|'"
                          " || cluster_id || '|' || cluster_signature || '|' || source_event_id"
                          " || '|' || cardinality(shown_trace_ids)"
                          " FROM prompt_deployments WHERE project_id = $1",
                          1, p);
    char want[1024];
    snprintf(want, sizeof(want),
             "proposed|You are a bot.|You are a bot. Reply with one valid JSON object.|"
             "Diagnosis: no JSON instruction Edit: adds the output contract|%s|%s|%s|%s|%lld|5",
             e.c.prompt_id, e.c.version_id, e.c.cluster_id, e.c.signature, ev);
    assert_string_equal(row, want);
    free(row);
    /* the shown traces are cluster members */
    char *shown = itest_sql(e.conn,
                            "SELECT count(*) FROM prompt_deployments d, unnest(d.shown_trace_ids) s"
                            " JOIN cluster_members m ON m.trace_id = s"
                            " WHERE d.project_id = $1 AND m.cluster_id = d.cluster_id",
                            1, p);
    assert_string_equal(shown, "5");
    free(shown);
    /* its creation event: from null, actor differ, on the configured topic */
    char *evt = itest_sql(e.conn,
                          "SELECT o.topic || '|' || coalesce(o.payload->>'from', 'null') || '|' ||"
                          " (o.payload->>'to') || '|' || (o.payload->>'actor')"
                          " FROM outbox o JOIN prompt_deployments d ON o.key = d.id::text"
                          " WHERE d.project_id = $1",
                          1, p);
    snprintf(want, sizeof(want), "%s|null|proposed|differ", e.deployments);
    assert_string_equal(evt, want);
    free(evt);

    /* the same event again (a replay): nothing new */
    differ_send_event(&e, ev);
    assert_true(itest_group_caught_up(e.group, e.clusters, 30000));
    char *n = differ_count(&e);
    assert_string_equal(n, "1");
    free(n);
    itest_service_stop(d);
    differ_env_free(&e);
}

static void test_bad_replies_create_nothing(void **state)
{
    (void)state;
    static const char *const prompts[] = {"You are the MALFORMED bot.",
                                          "You are the IDENTICAL bot."};
    static const char *const reasons[] = {"reply is not a JSON object",
                                          "proposed_prompt is identical to the current prompt"};
    for (int i = 0; i < 2; i++) {
        struct differ_env e;
        differ_env_new(&e, prompts[i]);
        char log[128];
        pid_t d = itest_service_start("pl-differ", e.group, e.envp, log);
        differ_send_event(&e, differ_event_id());
        assert_true(itest_group_caught_up(e.group, e.clusters, 30000));
        assert_true(itest_wait_file_contains(log, "no usable proposal after 3 attempts", 5000));
        assert_true(itest_wait_file_contains(log, reasons[i], 1000));
        char *n = differ_count(&e);
        assert_string_equal(n, "0");
        free(n);
        itest_service_stop(d);
        differ_env_free(&e);
    }
}

static void test_two_replicas_and_replays_make_one_deployment(void **state)
{
    (void)state;
    struct differ_env e;
    differ_env_new(&e, "You are a bot.");
    char log1[128], log2[128];
    pid_t a = itest_service_start("pl-differ", e.group, e.envp, log1);
    pid_t b = itest_service_start("pl-differ", e.group, e.envp, log2);
    long long ev = differ_event_id();
    /* the event twice (a replay) and a second crossing event for the same cluster */
    differ_send_event(&e, ev);
    differ_send_event(&e, ev);
    differ_send_event(&e, ev + 1);
    assert_true(itest_group_caught_up(e.group, e.clusters, 40000));
    char *n = differ_count(&e);
    assert_string_equal(n, "1");
    free(n);
    const char *p[1] = {e.t.project_id};
    char *events = itest_sql(e.conn,
                             "SELECT count(*) FROM outbox o JOIN prompt_deployments d"
                             " ON o.key = d.id::text WHERE d.project_id = $1",
                             1, p);
    assert_string_equal(events, "1");
    free(events);
    itest_service_stop(a);
    itest_service_stop(b);
    differ_env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_event_proposes_once),
        cmocka_unit_test(test_bad_replies_create_nothing),
        cmocka_unit_test(test_two_replicas_and_replays_make_one_deployment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
