/* The routes that run the executor, over HTTP against the stack's api and its pl-llmsim (seed
 * 002): POST /v1/control/execute (validation, roles, plan, tenancy, the gates, the kill
 * switch), approve of an escalation (runs the intended step once; approve racing reject has
 * one winner) and the diff of a remediated output. The project's one rule wants a text no
 * simulated reply contains, so every remediated output fails it: the outcome is known
 * whatever the stack's scenario answers. */
#include "itest.h"
#include "remediate.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *db;
static struct itest_tenant team, other, starter;
static char rule_id[37];

static char *sql1(const char *sql, const char *param)
{
    const char *p[1] = {param};
    return itest_sql(db, sql, 1, p);
}

static void trace_new(const char *trace)
{
    const char *p[3] = {team.id, team.project_id, trace};
    free(itest_sql(db,
                   "INSERT INTO traces (tenant_id, project_id, id, model, input, output, eval,"
                   " latency_ms) VALUES ($1, $2, $3, 'gpt-app', '{\"messages\": [{\"role\":"
                   " \"user\", \"content\": \"question\"}]}', 'wrong answer',"
                   " '{\"never\": {\"passed\": false, \"feedback\": \"missing\"}}', 100)"
                   " RETURNING id",
                   3, p));
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &team);
    itest_tenant_new(db, "team", &other);
    itest_tenant_new(db, "starter", &starter);
    char *v = sql1("INSERT INTO eval_rules (tenant_id, project_id, metric_name, evaluator_type,"
                   " config) SELECT tenant_id, id, 'never', 'contains',"
                   " '{\"value\": \"zzz-no-reply-has-this\"}' FROM projects WHERE id = $1"
                   " RETURNING id",
                   team.project_id);
    snprintf(rule_id, sizeof(rule_id), "%s", v);
    free(v);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static struct itest_response execute(const char *key, const char *project, const char *type,
                                     const char *trace, const char *extra)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"project_id\": \"%s\", \"action_type\": \"%s\", \"trace_id\": \"%s\"%s%s}", project,
             type, trace, extra ? ", " : "", extra ? extra : "");
    return itest_api("POST", "/v1/control/execute", key, body);
}

static void expect_status(struct itest_response r, long want, const char *error_part)
{
    if (r.status != want || (error_part && (!r.body || !strstr(r.body, error_part))))
        fail_msg("got %ld %s, want %ld with \"%s\"", r.status, r.body ? r.body : "", want,
                 error_part ? error_part : "");
    itest_response_free(&r);
}

static json_object *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, name, &v))
        fail_msg("no member %s in %s", name, json_object_to_json_string(o));
    return v;
}

static void test_execute_validation(void **state)
{
    (void)state;
    trace_new("v-1");
    const char *p = team.project_id;
    expect_status(execute(NULL, p, "retry", "v-1", NULL), 401, NULL);
    expect_status(execute(team.member_key, p, "retry", "v-1", NULL), 403, NULL);
    expect_status(execute(starter.owner_key, starter.project_id, "retry", "v-1", NULL), 402, NULL);
    expect_status(itest_api("POST", "/v1/control/execute", team.owner_key, "[1]"), 400, NULL);
    expect_status(itest_api("POST", "/v1/control/execute", team.owner_key,
                            "{\"project_id\": \"x\", \"action_type\": \"retry\"}"),
                  400, NULL);
    expect_status(execute(team.owner_key, p, "retry", "v-1", "\"rule_id\": 7"), 400, "rule_id");
    expect_status(execute(team.owner_key, p, "retry", "v-1", "\"surprise\": 1"), 400, "surprise");
    expect_status(execute(team.owner_key, p, "explode", "v-1", NULL), 422, "action_type");
    expect_status(execute(team.owner_key, p, "fallback_model", "v-1", NULL), 422, "payload.model");
    expect_status(execute(team.owner_key, p, "prompt_modification", "v-1",
                          "\"payload\": {\"append_system\": \"a\", \"version\": 2}"),
                  422, "exactly one");
    expect_status(execute(team.owner_key, p, "retry", "v-missing", NULL), 404, "not found");
    expect_status(execute(team.owner_key, p, "retry", "v-1",
                          "\"rule_id\": \"00000000-0000-0000-0000-000000000000\""),
                  404, "not found");
    /* another tenant's trace does not exist for this one */
    expect_status(execute(other.owner_key, p, "retry", "v-1", NULL), 404, "not found");
    char *n = sql1("SELECT count(*) FROM control_actions WHERE project_id = $1", p);
    assert_string_equal(n, "0");
    free(n);
}

/* Three retries through the API run and are scored; the fourth trips the retry gate. */
static void test_execute_gates(void **state)
{
    (void)state;
    trace_new("g-1");
    for (int i = 0; i < 3; i++) {
        char extra[96];
        snprintf(extra, sizeof(extra), "\"rule_id\": \"%s\"", rule_id);
        struct itest_response r = execute(team.owner_key, team.project_id, "retry", "g-1", extra);
        assert_int_equal(r.status, 201);
        assert_string_equal(itest_json_str(&r, "status"), "executed");
        assert_string_equal(itest_json_str(&r, "action_type"), "retry");
        assert_string_equal(itest_json_str(&r, "rule_id"), rule_id);
        assert_true(json_object_is_type(member(r.json, "policy_id"), json_type_null));
        json_object *res = member(r.json, "result");
        assert_false(json_object_get_boolean(member(res, "passed")));
        json_object *ev = json_object_array_get_idx(member(res, "evaluations"), 0);
        assert_string_equal(json_object_get_string(member(ev, "context")), "remediation");
        assert_string_equal(json_object_get_string(member(ev, "eval_rule_id")), rule_id);
        assert_false(json_object_get_boolean(member(member(ev, "original"), "passed")));
        itest_response_free(&r);
    }
    struct itest_response r = execute(team.owner_key, team.project_id, "retry", "g-1", NULL);
    assert_int_equal(r.status, 201);
    assert_string_equal(itest_json_str(&r, "status"), "pending_approval");
    assert_string_equal(itest_json_str(&r, "action_type"), "escalate");
    assert_string_equal(itest_json_str(&r, "escalation_reason"), "retry_threshold_exceeded");
    assert_int_equal(json_object_get_int(member(r.json, "retry_count")), 3);
    assert_true(json_object_get_boolean(member(r.json, "require_approval")));
    itest_response_free(&r);
    char path[160];
    snprintf(path, sizeof(path), "/v1/traces/g-1?project_id=%s", team.project_id);
    r = itest_api("GET", path, team.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_object_get_int(member(r.json, "control_loop_depth")), 3);
    assert_int_equal(json_object_array_length(member(r.json, "remediation_history")), 4);
    itest_response_free(&r);
}

/* The kill switch: execute and approve answer 503 kill_switch_active and change nothing. */
static void test_execute_kill_switch(void **state)
{
    (void)state;
    trace_new("k-1");
    struct itest_response r = execute(team.owner_key, team.project_id, "escalate", "k-1", NULL);
    assert_int_equal(r.status, 201);
    char id[37], path[128];
    snprintf(id, sizeof(id), "%s", itest_json_str(&r, "id"));
    itest_response_free(&r);
    expect_status(itest_api("POST", "/v1/control/killswitch/enable", team.owner_key, NULL), 200,
                  NULL);
    expect_status(execute(team.owner_key, team.project_id, "retry", "k-1", NULL), 503,
                  "kill_switch_active");
    snprintf(path, sizeof(path), "/v1/control/actions/%s/approve", id);
    expect_status(itest_api("POST", path, team.owner_key, NULL), 503, "kill_switch_active");
    expect_status(itest_api("POST", "/v1/control/killswitch/disable", team.owner_key, NULL), 200,
                  NULL);
    char *s = sql1("SELECT string_agg(status, ',') FROM control_actions WHERE trace_id = 'k-1'"
                   " AND project_id = $1",
                   team.project_id);
    assert_string_equal(s, "pending_approval");
    free(s);
    expect_status(itest_api("POST", path, team.owner_key, NULL), 200, "approved_by");
}

/* Approving a retry escalation runs the retry once; the action cannot be approved or
 * rejected again. Its diff compares the remediated output with the trace's. */
static void test_approve_and_diff(void **state)
{
    (void)state;
    trace_new("a-1");
    struct itest_response r;
    for (int i = 0; i < 4; i++) {
        r = execute(team.owner_key, team.project_id, "retry", "a-1", NULL);
        assert_int_equal(r.status, 201);
        if (i < 3)
            itest_response_free(&r);
    }
    char id[37], path[160];
    snprintf(id, sizeof(id), "%s", itest_json_str(&r, "id"));
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/diff", id);
    expect_status(itest_api("GET", path, team.viewer_key, NULL), 202, "pending_approval");

    snprintf(path, sizeof(path), "/v1/control/actions/%s/approve", id);
    expect_status(itest_api("POST", path, team.member_key, NULL), 403, NULL);
    r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "executed");
    json_object *res = member(r.json, "result");
    const char *output = json_object_get_string(member(res, "output"));
    long long latency = json_object_get_int64(member(res, "latency_ms"));
    long long want_tokens = pl_remediation_tokens(output) - pl_remediation_tokens("wrong answer");
    assert_true(strncmp(json_object_get_string(member(res, "approved_by")), "key:", 4) == 0);
    itest_response_free(&r);
    expect_status(itest_api("POST", path, team.owner_key, NULL), 409, "executed");
    snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", id);
    expect_status(itest_api("POST", path, team.owner_key, NULL), 409, "executed");

    snprintf(path, sizeof(path), "/v1/control/actions/%s/diff", id);
    r = itest_api("GET", path, team.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_object_get_int64(member(r.json, "token_length_delta")), want_tokens);
    assert_int_equal(json_object_get_int64(member(r.json, "latency_delta_ms")), latency - 100);
    json_object *d = json_object_array_get_idx(member(r.json, "score_deltas"), 0);
    assert_string_equal(json_object_get_string(member(d, "eval_rule_id")), rule_id);
    assert_string_equal(json_object_get_string(member(d, "rule_name")), "never");
    assert_true(json_object_get_double(member(d, "original_score")) == 0.0);
    assert_true(json_object_get_double(member(d, "remediated_score")) == 0.0);
    assert_true(json_object_get_double(member(d, "delta")) == 0.0);
    itest_response_free(&r);
    /* another tenant's action is not found; an unknown one neither */
    expect_status(itest_api("GET", path, other.viewer_key, NULL), 404, NULL);
    expect_status(itest_api("GET", "/v1/control/actions/00000000-0000-0000-0000-000000000000/diff",
                            team.viewer_key, NULL),
                  404, NULL);
    /* an escalation approved without a remediation has no output to compare */
    trace_new("a-2");
    r = execute(team.owner_key, team.project_id, "escalate", "a-2", NULL);
    snprintf(id, sizeof(id), "%s", itest_json_str(&r, "id"));
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/approve", id);
    expect_status(itest_api("POST", path, team.owner_key, NULL), 200, NULL);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/diff", id);
    expect_status(itest_api("GET", path, team.viewer_key, NULL), 409, "no remediated output");
}

struct racer {
    char path[160];
    const char *body;
    pthread_barrier_t *start;
    long status;
};

static void *race_once(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    struct itest_response res = itest_api("POST", r->path, team.owner_key, r->body);
    r->status = res.status;
    itest_response_free(&res);
    return NULL;
}

/* Approve racing reject on the same escalation, 5 times: exactly one 200, the other 409. */
static void test_approve_reject_race(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++) {
        char trace[32];
        snprintf(trace, sizeof(trace), "race-%d", round);
        trace_new(trace);
        struct itest_response r = execute(team.owner_key, team.project_id, "escalate", trace, NULL);
        assert_int_equal(r.status, 201);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct racer rs[2] = {{.body = NULL, .start = &start},
                              {.body = "{\"reason\": \"race\"}", .start = &start}};
        snprintf(rs[0].path, sizeof(rs[0].path), "/v1/control/actions/%s/approve",
                 itest_json_str(&r, "id"));
        snprintf(rs[1].path, sizeof(rs[1].path), "/v1/control/actions/%s/reject",
                 itest_json_str(&r, "id"));
        itest_response_free(&r);
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, race_once, &rs[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        if (!((rs[0].status == 200 && rs[1].status == 409) ||
              (rs[0].status == 409 && rs[1].status == 200)))
            fail_msg("round %d: approve %ld, reject %ld", round, rs[0].status, rs[1].status);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_execute_validation),  cmocka_unit_test(test_execute_gates),
        cmocka_unit_test(test_execute_kill_switch), cmocka_unit_test(test_approve_and_diff),
        cmocka_unit_test(test_approve_reject_race),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
