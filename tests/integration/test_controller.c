/* pl-controller against the stack's PostgreSQL and broker and a pl-llmsim of its own (seed
 * 002): the two worked examples step for step, a passing remediation ending the loop, dry
 * runs and rollouts, the kill switch keeping steps pending and resuming them, a failing LLM,
 * a replay that changes nothing and calls no LLM, a controller killed mid-loop, and the HITL
 * timeout. Each test has its own failures topic, consumer group and controller.
 *
 * The simulated application model answers "OK ..." to the fallback model gpt-fixed and to a
 * system prompt containing BE-CORRECT, and "wrong answer" otherwise; the project's one rule
 * wants "OK" in the output, so only those two remediations pass. */
#include "control.h"
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

static const char scenario_fmt[] =
    "{\"seed\": 1, \"latency_ms\": %d, \"faults\": {\"http_500\": %s}, \"rules\": ["
    "{\"name\": \"fixed-model\", \"match\": {\"model\": \"^gpt-fixed$\"},"
    " \"reply\": \"OK from the fallback\"},"
    "{\"name\": \"fixed-prompt\", \"match\": {\"system\": \"BE-CORRECT\"},"
    " \"reply\": \"OK under the new prompt\"}],"
    " \"default_reply\": \"wrong answer\"}";

struct ctl_env {
    PGconn *conn;
    struct itest_tenant t;
    pid_t sim, controller;
    char llm_url[64], topic[96], group[64], log[128];
    char env[6][160];
    const char *envp[8];
};

static char *q1(struct ctl_env *e, const char *sql, const char *param)
{
    const char *p[2] = {param, e->t.project_id};
    return itest_sql(e->conn, sql, 2, p);
}

static void ctl_env_new(struct ctl_env *e, int latency_ms, const char *fault_rate)
{
    memset(e, 0, sizeof(*e));
    e->conn = itest_pg(NULL);
    itest_tenant_new(e->conn, "team", &e->t);
    const char *p[1] = {e->t.project_id};
    free(itest_sql(e->conn,
                   "INSERT INTO eval_rules (tenant_id, project_id, metric_name, evaluator_type,"
                   " config) SELECT tenant_id, id, 'says_ok', 'contains', '{\"value\": \"OK\"}'"
                   " FROM projects WHERE id = $1 RETURNING id",
                   1, p));
    char scenario[1024];
    snprintf(scenario, sizeof(scenario), scenario_fmt, latency_ms, fault_rate);
    e->sim = itest_llmsim_start(scenario, e->llm_url);
    itest_topic("failures", e->topic);
    snprintf(e->group, sizeof(e->group), "itest-ctl-%s", e->topic + 15);
    snprintf(e->env[0], sizeof(e->env[0]), "PL_LLM_BASE_URL=%s", e->llm_url);
    snprintf(e->env[1], sizeof(e->env[1]), "PL_KAFKA_TOPIC_FAILURES=%s", e->topic);
    snprintf(e->env[2], sizeof(e->env[2]), "PL_LLM_BACKOFF_MS=10");
    snprintf(e->env[3], sizeof(e->env[3]), "PL_LLM_MAX_ATTEMPTS=2");
    snprintf(e->env[4], sizeof(e->env[4]), "PL_CONTROLLER_SWEEP_INTERVAL_MS=100");
    for (int i = 0; i < 5; i++)
        e->envp[i] = e->env[i];
    e->envp[5] = NULL;
    e->controller = itest_service_start("pl-controller", e->group, e->envp, e->log);
}

static void ctl_env_free(struct ctl_env *e)
{
    if (e->controller > 0)
        itest_service_stop(e->controller);
    itest_llmsim_stop(e->sim);
    PQfinish(e->conn);
}

/* A stored trace of the project that failed the says_ok rule. */
static void ctl_trace(struct ctl_env *e, const char *trace_id)
{
    const char *p[3] = {e->t.id, e->t.project_id, trace_id};
    free(itest_sql(e->conn,
                   "INSERT INTO traces (tenant_id, project_id, id, model, input, output, eval)"
                   " VALUES ($1, $2, $3, 'gpt-app', '{\"messages\": [{\"role\": \"system\","
                   " \"content\": \"You are a bot.\"}, {\"role\": \"user\", \"content\":"
                   " \"question\"}]}', 'wrong answer',"
                   " '{\"says_ok\": {\"passed\": false, \"feedback\": \"no OK\"}}') RETURNING id",
                   3, p));
}

/* An active policy; returns its id in id (may be NULL). */
static void ctl_policy(struct ctl_env *e, const char *action, const char *params, int priority,
                       int max_retry, int max_cascade, bool dry_run, int rollout, char *id)
{
    char prio[16], retry[16], cascade[16], roll[16];
    snprintf(prio, sizeof(prio), "%d", priority);
    snprintf(retry, sizeof(retry), "%d", max_retry);
    snprintf(cascade, sizeof(cascade), "%d", max_cascade);
    snprintf(roll, sizeof(roll), "%d", rollout);
    const char *p[9] = {e->t.id, e->t.project_id,     action, params, prio, retry,
                        cascade, dry_run ? "t" : "f", roll};
    char *v = itest_sql(e->conn,
                        "INSERT INTO policies (tenant_id, project_id, name, status, trigger_type,"
                        " action_type, action_params, priority, max_retry_depth,"
                        " max_cascade_depth, dry_run, rollout_pct, created_by)"
                        " VALUES ($1, $2, $3 || ' policy', 'active', 'eval_score', $3, $4::jsonb,"
                        " $5::int, $6::int, $7::int, $8::boolean, $9::int, 'itest') RETURNING id",
                        9, p);
    if (id)
        snprintf(id, 37, "%s", v);
    free(v);
}

static void ctl_failure(struct ctl_env *e, const char *trace_id)
{
    char value[512];
    snprintf(value, sizeof(value),
             "{\"schema_version\": 1, \"tenant_id\": \"%s\", \"project_id\": \"%s\","
             " \"trace_id\": \"%s\"}",
             e->t.id, e->t.project_id, trace_id);
    itest_produce(e->topic, trace_id, value);
}

#define CTL_STEPS_SQL                                                                              \
    "SELECT coalesce(string_agg(action_type || ':' || status || coalesce(':' ||"                   \
    " escalation_reason, ''), ',' ORDER BY attempt), '') FROM control_actions"                     \
    " WHERE trace_id = $1 AND project_id = $2 AND status <> 'dry_run'"

/* Polls the trace's live steps ("type:status[:reason]", in attempt order) until want. */
static void ctl_expect_steps(struct ctl_env *e, const char *trace_id, const char *want)
{
    int64_t deadline = pl_now_ms() + 20000;
    char *got = NULL;
    do {
        free(got);
        got = q1(e, CTL_STEPS_SQL, trace_id);
        if (strcmp(got, want) == 0)
            break;
        pl_sleep_ms(50);
    } while (pl_now_ms() < deadline);
    if (strcmp(got, want) != 0)
        fail_msg("trace %s: steps \"%s\", want \"%s\" (log %s)", trace_id, got, want, e->log);
    free(got);
}

static long long ctl_requests_at(const char *llm_url)
{
    char base[128];
    snprintf(base, sizeof(base), "%.*s", (int)(strlen(llm_url) - 3), llm_url);
    struct itest_response r = itest_http(base, "GET", "/sim/stats", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_object *n;
    assert_true(json_object_object_get_ex(r.json, "requests", &n));
    long long v = json_object_get_int64(n);
    itest_response_free(&r);
    return v;
}

static long long ctl_sim_requests(struct ctl_env *e)
{
    return ctl_requests_at(e->llm_url);
}

static void ctl_expect(struct ctl_env *e, const char *sql, const char *param, const char *want)
{
    char *v = q1(e, sql, param);
    if (strcmp(v, want) != 0)
        fail_msg("%s\n  (%s): got \"%s\", want \"%s\"", sql, param, v, want);
    free(v);
}

/* Seed 002, first worked example: max_retry_depth 2 → two retries at control_loop_depth 1
 * and 2, then an escalation retry_threshold_exceeded with retry_count 2. A replay of the
 * failure afterwards creates nothing and calls no LLM. */
static void test_retry_depth(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 10, 2, 5, false, 100, NULL);
    ctl_trace(&e, "tr-retry");
    ctl_failure(&e, "tr-retry");
    ctl_expect_steps(&e, "tr-retry",
                     "retry:executed,retry:executed,escalate:pending_approval:"
                     "retry_threshold_exceeded");
    ctl_expect(&e,
               "SELECT retry_count || ',' || require_approval FROM control_actions"
               " WHERE trace_id = $1 AND project_id = $2 AND action_type = 'escalate'",
               "tr-retry", "2,true");
    /* the retries sent the trace's own system prompt and model, and were scored */
    ctl_expect(&e,
               "SELECT string_agg((result ->> 'model') || ':' || (result ->> 'passed') || ':' ||"
               " (result #>> '{evaluations,0,context}') || ':' ||"
               " (result #>> '{evaluations,0,original,passed}'), ',' ORDER BY attempt)"
               " FROM control_actions WHERE trace_id = $1 AND project_id = $2"
               " AND action_type = 'retry'",
               "tr-retry", "gpt-app:false:remediation:false,gpt-app:false:remediation:false");
    /* control_loop_depth after each step: 1, 2, and the escalation does not count */
    ctl_expect(&e,
               "SELECT string_agg(d::text, ',' ORDER BY attempt) FROM (SELECT attempt,"
               " count(*) FILTER (WHERE action_type = 'retry' AND status = 'executed')"
               " OVER (ORDER BY attempt) AS d FROM control_actions WHERE trace_id = $1"
               " AND project_id = $2) x",
               "tr-retry", "1,2,2");
    assert_int_equal(ctl_sim_requests(&e), 2);

    char path[160];
    snprintf(path, sizeof(path), "/v1/traces/tr-retry?project_id=%s", e.t.project_id);
    struct itest_response r = itest_api("GET", path, e.t.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    json_object *v;
    assert_true(json_object_object_get_ex(r.json, "control_loop_depth", &v));
    assert_int_equal(json_object_get_int(v), 2);
    assert_true(json_object_object_get_ex(r.json, "remediation_history", &v));
    assert_int_equal(json_object_array_length(v), 3);
    assert_true(json_object_object_get_ex(r.json, "evaluations", &v));
    assert_int_equal(json_object_array_length(v), 3); /* the fresh one and two remediations */
    itest_response_free(&r);

    /* replay: the same failure again, after the loop ended, and the whole topic from the
     * start by a controller of a new group */
    ctl_failure(&e, "tr-retry");
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    char group2[80], log2[128];
    snprintf(group2, sizeof(group2), "%s-replay", e.group);
    pid_t replayer = itest_service_start("pl-controller", group2, e.envp, log2);
    assert_true(itest_group_caught_up(group2, e.topic, 20000));
    itest_service_stop(replayer);
    ctl_expect_steps(&e, "tr-retry",
                     "retry:executed,retry:executed,escalate:pending_approval:"
                     "retry_threshold_exceeded");
    ctl_expect(&e, "SELECT count(*) FROM control_actions WHERE trace_id = $1 AND project_id = $2",
               "tr-retry", "3");
    assert_int_equal(ctl_sim_requests(&e), 2);
    ctl_env_free(&e);
}

/* Seed 002, second worked example: retry → fallback_model → prompt_modification with
 * max_cascade_depth 2: the third remediation is escalated, cascade_depth_exhausted. */
static void test_cascade_depth(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 10, 3, 2, false, 100, NULL);
    ctl_policy(&e, "fallback_model", "{\"model\": \"gpt-other\"}", 20, 3, 2, false, 100, NULL);
    ctl_policy(&e, "prompt_modification", "{\"append_system\": \"Think twice.\"}", 30, 3, 2, false,
               100, NULL);
    ctl_trace(&e, "tr-cascade");
    ctl_failure(&e, "tr-cascade");
    ctl_expect_steps(&e, "tr-cascade",
                     "retry:executed,fallback_model:executed,escalate:pending_approval:"
                     "cascade_depth_exhausted");
    ctl_expect(&e,
               "SELECT string_agg(result ->> 'model', ',' ORDER BY attempt) FROM control_actions"
               " WHERE trace_id = $1 AND project_id = $2 AND result ? 'model'",
               "tr-cascade", "gpt-app,gpt-other");
    assert_int_equal(ctl_sim_requests(&e), 2);
    ctl_env_free(&e);
}

/* A remediation that passes ends the loop; the modified system prompt is what was sent. */
static void test_passing_stops(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 10, 3, 5, false, 100, NULL);
    ctl_policy(&e, "prompt_modification", "{\"append_system\": \"BE-CORRECT\"}", 20, 3, 5, false,
               100, NULL);
    ctl_policy(&e, "fallback_model", "{\"model\": \"gpt-fixed\"}", 30, 3, 5, false, 100, NULL);
    ctl_trace(&e, "tr-pass");
    ctl_failure(&e, "tr-pass");
    ctl_expect_steps(&e, "tr-pass", "retry:executed,prompt_modification:executed");
    ctl_expect(&e,
               "SELECT (result ->> 'passed') || ':' || (result ->> 'output') FROM control_actions"
               " WHERE trace_id = $1 AND project_id = $2 AND action_type = 'prompt_modification'",
               "tr-pass", "true:OK under the new prompt");
    /* nothing follows a pass, also after a redelivery */
    ctl_failure(&e, "tr-pass");
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    ctl_expect_steps(&e, "tr-pass", "retry:executed,prompt_modification:executed");
    assert_int_equal(ctl_sim_requests(&e), 2);
    ctl_env_free(&e);
}

/* A dry-run policy records what it would have done and calls nothing; rollout 0 fires
 * nothing; rollout 50 fires on exactly the traces the stable hash puts below 50. */
static void test_dry_run_and_rollout(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 5, 3, 5, false, 0, NULL); /* rollout 0: never */
    ctl_policy(&e, "fallback_model", "{\"model\": \"gpt-fixed\"}", 10, 3, 5, true, 100, NULL);
    ctl_policy(&e, "escalate", "{}", 20, 3, 5, false, 50, NULL);
    int in_rollout = 0;
    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "tr-roll-%d", i);
        ctl_trace(&e, id);
        in_rollout += pl_control_in_rollout(id, 50);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "tr-roll-%d", i);
        ctl_failure(&e, id);
    }
    assert_true(itest_group_caught_up(e.group, e.topic, 30000));
    char want[16];
    snprintf(want, sizeof(want), "%d", in_rollout);
    ctl_expect(&e,
               "SELECT count(*) FROM control_actions WHERE action_type = $1 AND project_id = $2"
               " AND status = 'pending_approval'",
               "escalate", want);
    assert_in_range(in_rollout, 35, 65); /* about half */
    ctl_expect(&e,
               "SELECT count(*) || ':' || count(DISTINCT trace_id) || ':' || min(attempt)"
               " FROM control_actions WHERE status = $1 AND project_id = $2",
               "dry_run", "100:100:0");
    ctl_expect(&e,
               "SELECT count(*) FROM control_actions WHERE action_type = $1 AND project_id = $2",
               "retry", "0");
    assert_int_equal(ctl_sim_requests(&e), 0);
    ctl_env_free(&e);
}

/* The kill switch keeps the planned step pending and calls nothing; after `disable` the
 * sweeper runs it and the loop goes on to its end, one call per step. */
static void test_kill_switch(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 10, 2, 5, false, 100, NULL);
    static const char *const ids[] = {"tr-kill-a", "tr-kill-b", "tr-kill-c"};
    struct itest_response r =
        itest_api("POST", "/v1/control/killswitch/enable", e.t.owner_key, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    for (int i = 0; i < 3; i++) {
        ctl_trace(&e, ids[i]);
        ctl_failure(&e, ids[i]);
    }
    for (int i = 0; i < 3; i++)
        ctl_expect_steps(&e, ids[i], "retry:pending");
    ctl_failure(&e, ids[0]); /* a redelivery while it waits adds nothing */
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    ctl_expect_steps(&e, ids[0], "retry:pending");
    assert_int_equal(ctl_sim_requests(&e), 0);
    /* Every controller sweeps every tenant's kept steps (one at a time), so the stack's own
     * may run them with its simulator: the calls are counted on both. */
    long long stack_before = ctl_requests_at(itest_env("PL_LLM_BASE_URL"));
    r = itest_api("POST", "/v1/control/killswitch/disable", e.t.owner_key, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    for (int i = 0; i < 3; i++)
        ctl_expect_steps(&e, ids[i],
                         "retry:executed,retry:executed,escalate:pending_approval:"
                         "retry_threshold_exceeded");
    assert_int_equal(
        ctl_sim_requests(&e) + ctl_requests_at(itest_env("PL_LLM_BASE_URL")) - stack_before, 6);
    ctl_env_free(&e);
}

/* An LLM failing past its retries fails the step with the reason, and the step counts. */
static void test_llm_failure(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "1.0");
    ctl_policy(&e, "retry", "{}", 10, 2, 5, false, 100, NULL);
    ctl_trace(&e, "tr-fail");
    ctl_failure(&e, "tr-fail");
    ctl_expect_steps(&e, "tr-fail",
                     "retry:failed,retry:failed,escalate:pending_approval:"
                     "retry_threshold_exceeded");
    ctl_expect(&e,
               "SELECT bool_and(result ->> 'error' LIKE '%500%')::text FROM control_actions"
               " WHERE trace_id = $1 AND project_id = $2 AND action_type = 'retry'",
               "tr-fail", "true");
    ctl_env_free(&e);
}

/* A controller killed (SIGKILL) after the loop's first stored step resumes after its restart
 * without calling the LLM again for a stored step: at most one call (the one in flight) is
 * lost, and every step is stored once. */
static void test_kill9_resume(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 300, "0");
    ctl_policy(&e, "retry", "{}", 10, 3, 5, false, 100, NULL);
    ctl_trace(&e, "tr-crash");
    ctl_failure(&e, "tr-crash");
    /* the project's one trace: its first step is stored */
    assert_true(itest_wait_sql(e.conn,
                               "SELECT count(*) FROM control_actions WHERE project_id = $1"
                               " AND status = 'executed'",
                               e.t.project_id, "1", 20000));
    kill(e.controller, SIGKILL);
    assert_true(itest_wait(e.controller, 10000) >= 0);
    e.controller = itest_service_start("pl-controller", e.group, e.envp, e.log);
    ctl_expect_steps(&e, "tr-crash",
                     "retry:executed,retry:executed,retry:executed,escalate:pending_approval:"
                     "retry_threshold_exceeded");
    long long calls = ctl_sim_requests(&e);
    if (calls < 3 || calls > 4)
        fail_msg("%lld LLM calls for 3 stored steps (at most one lost in flight)", calls);
    ctl_env_free(&e);
}

/* A controller that dies after a call returned, before its step is stored (failpoint
 * controller_before_store), repeats exactly that call after its restart, and no other. */
static void test_crash_before_store(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    itest_service_stop(e.controller);
    const char *crash_env[8];
    for (int i = 0; i < 5; i++)
        crash_env[i] = e.envp[i];
    crash_env[5] = "PL_FAILPOINT=controller_before_store";
    crash_env[6] = NULL;
    e.controller = itest_service_start("pl-controller", e.group, crash_env, e.log);
    ctl_policy(&e, "retry", "{}", 10, 2, 5, false, 100, NULL);
    ctl_trace(&e, "tr-fp");
    ctl_failure(&e, "tr-fp");
    int st = itest_wait(e.controller, 20000);
    assert_true(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ctl_expect(&e, "SELECT count(*) FROM control_actions WHERE trace_id = $1 AND project_id = $2",
               "tr-fp", "0");
    assert_int_equal(ctl_sim_requests(&e), 1);
    e.controller = itest_service_start("pl-controller", e.group, e.envp, e.log);
    ctl_expect_steps(&e, "tr-fp",
                     "retry:executed,retry:executed,escalate:pending_approval:"
                     "retry_threshold_exceeded");
    assert_int_equal(ctl_sim_requests(&e), 3); /* two stored steps and the one lost */
    ctl_env_free(&e);
}

/* A person took over: an escalation made through the API ends the automatic loop, and the
 * controller runs nothing on that trace. */
static void test_api_escalation_ends_loop(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    ctl_policy(&e, "retry", "{}", 10, 2, 5, false, 100, NULL);
    ctl_trace(&e, "tr-human");
    char body[256];
    snprintf(body, sizeof(body),
             "{\"project_id\": \"%s\", \"action_type\": \"escalate\", \"trace_id\": \"tr-human\"}",
             e.t.project_id);
    struct itest_response r = itest_api("POST", "/v1/control/execute", e.t.owner_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
    ctl_failure(&e, "tr-human");
    assert_true(itest_group_caught_up(e.group, e.topic, 20000));
    ctl_expect_steps(&e, "tr-human", "escalate:pending_approval");
    assert_int_equal(ctl_sim_requests(&e), 0);
    ctl_env_free(&e);
}

/* An escalation pending longer than the project's hitl_timeout_s is rejected: timeout. */
static void test_hitl_timeout(void **state)
{
    (void)state;
    struct ctl_env e;
    ctl_env_new(&e, 0, "0");
    const char *p[1] = {e.t.project_id};
    free(itest_sql(e.conn, "UPDATE projects SET hitl_timeout_s = 1 WHERE id = $1 RETURNING id", 1,
                   p));
    ctl_policy(&e, "escalate", "{}", 10, 3, 5, false, 100, NULL);
    ctl_trace(&e, "tr-hitl");
    ctl_failure(&e, "tr-hitl");
    ctl_expect_steps(&e, "tr-hitl", "escalate:failed");
    ctl_expect(&e,
               "SELECT (a.result ->> 'reason') || ':' || u.actor FROM control_actions a"
               " JOIN audit_log u ON u.target = a.id::text AND u.action = 'action.transition'"
               " WHERE a.trace_id = $1 AND a.project_id = $2",
               "tr-hitl", "timeout:system:hitl_timeout");
    ctl_env_free(&e);
}

/* The whole path on the stack's own services: failing traces ingested through the api are
 * published once by the detector (pl.failures, through the outbox) and escalated by the
 * stack's controller; ingesting them again publishes nothing more. A project without an
 * active policy publishes nothing. */
static void test_detector_publishes(void **state)
{
    (void)state;
    PGconn *conn = itest_pg(NULL);
    struct itest_tenant t, quiet;
    itest_tenant_new(conn, "team", &t);
    itest_tenant_new(conn, "team", &quiet);
    const char *p[2] = {t.id, t.project_id};
    free(itest_sql(conn,
                   "INSERT INTO policies (tenant_id, project_id, name, status, trigger_type,"
                   " action_type, rollout_pct, dry_run, created_by) VALUES ($1, $2, 'esc',"
                   " 'active', 'eval_score', 'escalate', 100, false, 'itest') RETURNING id",
                   2, p));
    const struct itest_tenant *ts[2] = {&t, &quiet};
    for (int k = 0; k < 2; k++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"traces\": [{\"project_id\": \"%s\", \"id\": \"e2e-0\", \"output\":"
                 " \"x\", \"error\": \"upstream timeout\"}, {\"project_id\": \"%s\", \"id\":"
                 " \"e2e-1\", \"output\": \"x\", \"error\": \"upstream timeout\"}]}",
                 ts[k]->project_id, ts[k]->project_id);
        struct itest_response r = itest_api("POST", "/v1/ingest/batch", ts[k]->member_key, body);
        assert_int_equal(r.status, 201);
        itest_response_free(&r);
    }
    assert_true(itest_wait_sql(conn,
                               "SELECT count(*) FROM control_actions WHERE project_id = $1"
                               " AND status = 'pending_approval'",
                               t.project_id, "2", 30000));
    /* a detector of a new group replays pl.traces from the start */
    char group[64], log[128];
    snprintf(group, sizeof(group), "itest-ctl-replay-%d", (int)getpid());
    pid_t d = itest_service_start("pl-detector", group, NULL, log);
    assert_true(itest_group_caught_up(group, "pl.traces", 60000));
    itest_service_stop(d);
    const char *q[2] = {t.project_id, quiet.project_id};
    char *v = itest_sql(conn,
                        "SELECT (SELECT count(*) FROM control_failures WHERE project_id = $1) ||"
                        " ':' || (SELECT count(*) FROM outbox WHERE topic = 'pl.failures'"
                        "   AND payload ->> 'project_id' = $1::text) || ':' ||"
                        " (SELECT count(*) FROM control_failures WHERE project_id = $2) || ':' ||"
                        " (SELECT count(*) FROM control_actions WHERE project_id = $1)",
                        2, q);
    assert_string_equal(v, "2:2:0:2");
    free(v);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_depth),        cmocka_unit_test(test_cascade_depth),
        cmocka_unit_test(test_passing_stops),      cmocka_unit_test(test_dry_run_and_rollout),
        cmocka_unit_test(test_kill_switch),        cmocka_unit_test(test_llm_failure),
        cmocka_unit_test(test_kill9_resume),       cmocka_unit_test(test_hitl_timeout),
        cmocka_unit_test(test_crash_before_store), cmocka_unit_test(test_api_escalation_ends_loop),
        cmocka_unit_test(test_detector_publishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
