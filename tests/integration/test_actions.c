/* Control-loop actions against the stack's PostgreSQL (common/action.c): a creation is keyed on
 * (trace, policy, attempt), so a replayed step creates nothing; every status change is a
 * compare-and-set with one pl.actions outbox event and one audit entry; approve racing reject
 * on an escalation has exactly one winner; moves the table does not allow change nothing. */
#include "action.h"
#include "control.h"
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC "pl.actions"

static PGconn *db;
static struct itest_tenant team;
static char policy_id[37];

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &team);
    const char *p[2] = {team.id, team.project_id};
    char *id = itest_sql(db,
                         "INSERT INTO policies (tenant_id, project_id, name, trigger_type,"
                         " action_type, status, max_retry_depth, created_by)"
                         " VALUES ($1, $2, 'retry twice', 'eval_score', 'retry', 'active', 2,"
                         " 'itest') RETURNING id",
                         2, p);
    snprintf(policy_id, sizeof(policy_id), "%s", id);
    free(id);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static char *sql1(const char *sql, const char *param)
{
    const char *p[1] = {param};
    return itest_sql(db, sql, 1, p);
}

static void expect_sql(const char *sql, const char *param, const char *want)
{
    char *v = sql1(sql, param);
    if (strcmp(v, want) != 0)
        fail_msg("%s\n  with %s: got \"%s\", want \"%s\"", sql, param, v, want);
    free(v);
}

#define EVENTS_SQL                                                                                 \
    "SELECT count(*) || '|' || coalesce(string_agg(payload->>'to', ',' ORDER BY id), '')"          \
    " FROM outbox WHERE topic = 'pl.actions' AND key = $1"
#define AUDIT_SQL "SELECT count(*) FROM audit_log WHERE target = $1"

/* An escalation of `trace` at step `attempt`, as the retry gate would make it. */
static void escalation(const char *trace, int attempt, char id[37])
{
    struct pl_gate_decision g;
    pl_control_gate(PL_ACTION_RETRY, attempt - 1, attempt - 1, 2, 5, &g);
    assert_int_equal(g.kind, PL_ACTION_ESCALATE);
    struct pl_action_new a = {
        .tenant_id = team.id,
        .project_id = team.project_id,
        .trace_id = trace,
        .policy_id = policy_id,
        .attempt = attempt,
        .action_type = pl_action_kind_name(g.kind),
        .status = PL_ACTION_PENDING_APPROVAL,
        .escalation_reason = g.escalation_reason,
        .retry_count = g.retry_count,
        .require_approval = g.require_approval,
        .events_topic = TOPIC,
    };
    struct pl_pg_error err;
    char *row = NULL;
    assert_int_equal(pl_action_create(db, &a, id, &row, &err), PL_TRANSITION_OK);
    assert_non_null(strstr(row, "\"status\":\"pending_approval\""));
    assert_non_null(strstr(row, "\"escalation_reason\":\"retry_threshold_exceeded\""));
    assert_non_null(strstr(row, "\"retry_count\":2"));
    free(row);
}

/* The same step created twice (a replayed failure): one row, one event, one audit entry. */
static void test_create_is_idempotent(void **state)
{
    (void)state;
    struct pl_action_new a = {
        .tenant_id = team.id,
        .project_id = team.project_id,
        .trace_id = "trace-idem",
        .policy_id = policy_id,
        .attempt = 1,
        .action_type = "retry",
        .status = PL_ACTION_EXECUTED,
        .payload_json = "{\"model\":\"gpt-4o-mini\"}",
        .result_json = "{\"passed\":false}",
        .events_topic = TOPIC,
    };
    char id[37], again[37];
    struct pl_pg_error err;
    assert_int_equal(pl_action_create(db, &a, id, NULL, &err), PL_TRANSITION_OK);
    char *row = NULL;
    assert_int_equal(pl_action_create(db, &a, again, &row, &err), PL_TRANSITION_CONFLICT);
    assert_string_equal(again, id);
    assert_non_null(strstr(row, "\"status\":\"executed\""));
    free(row);
    expect_sql("SELECT count(*) FROM control_actions WHERE trace_id = 'trace-idem'"
               " AND project_id = $1",
               team.project_id, "1");
    expect_sql(EVENTS_SQL, id, "1|executed");
    expect_sql(AUDIT_SQL, id, "1");
    expect_sql("SELECT executed_at IS NOT NULL FROM control_actions WHERE id = $1", id, "t");
    /* the next step of the same policy is a new row */
    a.attempt = 2;
    assert_int_equal(pl_action_create(db, &a, again, NULL, &err), PL_TRANSITION_OK);
    assert_string_not_equal(again, id);
}

/* A pending action (kill switch on) is picked up once: the second pick-up loses. */
static void test_pending_picked_up_once(void **state)
{
    (void)state;
    struct pl_action_new a = {.tenant_id = team.id,
                              .project_id = team.project_id,
                              .trace_id = "trace-pending",
                              .policy_id = policy_id,
                              .attempt = 1,
                              .action_type = "retry",
                              .status = PL_ACTION_PENDING,
                              .events_topic = TOPIC};
    char id[37], current[24];
    struct pl_pg_error err;
    assert_int_equal(pl_action_create(db, &a, id, NULL, &err), PL_TRANSITION_OK);
    struct pl_action_change ch = {.tenant_id = team.id,
                                  .action_id = id,
                                  .to = PL_ACTION_EXECUTED,
                                  .actor = PL_ACTION_BY_CONTROLLER,
                                  .result_json = "{\"passed\":true}",
                                  .events_topic = TOPIC};
    assert_int_equal(pl_action_transition(db, &ch, NULL, current, &err), PL_TRANSITION_OK);
    ch.to = PL_ACTION_FAILED;
    assert_int_equal(pl_action_transition(db, &ch, NULL, current, &err), PL_TRANSITION_CONFLICT);
    assert_string_equal(current, "executed");
    expect_sql(EVENTS_SQL, id, "2|pending,executed");
    expect_sql(AUDIT_SQL, id, "2");
    expect_sql("SELECT result->>'passed' FROM control_actions WHERE id = $1", id, "true");
}

/* Moves outside the table change nothing: an executed action is never approved, an owner
 * cannot execute a pending action, another tenant's action is not found. */
static void test_illegal_moves(void **state)
{
    (void)state;
    char id[37], current[24];
    escalation("trace-illegal", 3, id);
    struct pl_pg_error err;
    struct pl_action_change ch = {.tenant_id = team.id,
                                  .action_id = id,
                                  .to = PL_ACTION_DRY_RUN,
                                  .actor = PL_ACTION_BY_CONTROLLER,
                                  .events_topic = TOPIC};
    assert_int_equal(pl_action_transition(db, &ch, NULL, current, &err), PL_TRANSITION_CONFLICT);
    assert_string_equal(current, "pending_approval");
    assert_false(pl_action_allowed(PL_ACTION_PENDING, PL_ACTION_EXECUTED, PL_ACTION_BY_OWNER));
    assert_false(pl_action_allowed(PL_ACTION_EXECUTED, PL_ACTION_FAILED, PL_ACTION_BY_TIMEOUT));
    assert_true(
        pl_action_allowed(PL_ACTION_PENDING_APPROVAL, PL_ACTION_FAILED, PL_ACTION_BY_TIMEOUT));
    struct itest_tenant other;
    itest_tenant_new(db, "team", &other);
    ch.tenant_id = other.id;
    ch.to = PL_ACTION_FAILED;
    ch.actor = PL_ACTION_BY_OWNER;
    assert_int_equal(pl_action_transition(db, &ch, NULL, current, &err), PL_TRANSITION_NOT_FOUND);
    expect_sql(EVENTS_SQL, id, "1|pending_approval");
    expect_sql(AUDIT_SQL, id, "1");
}

struct decider {
    const char *id;
    enum pl_action_status to;
    pthread_barrier_t *start;
    enum pl_transition_result result;
};

static void *decide(void *arg)
{
    struct decider *d = arg;
    PGconn *conn = itest_pg(NULL);
    struct pl_action_change ch = {.tenant_id = team.id,
                                  .action_id = d->id,
                                  .to = d->to,
                                  .actor = PL_ACTION_BY_OWNER,
                                  .actor_id = "key:itest",
                                  .reason = d->to == PL_ACTION_FAILED ? "not now" : NULL,
                                  .events_topic = TOPIC};
    char current[24];
    struct pl_pg_error err;
    pthread_barrier_wait(d->start);
    d->result = pl_action_transition(conn, &ch, NULL, current, &err);
    PQfinish(conn);
    return NULL;
}

/* Approve racing reject on the same escalation, 20 times: exactly one wins, and the action,
 * its events and its audit entries show that one. */
static void test_approve_racing_reject(void **state)
{
    (void)state;
    int approvals = 0;
    for (int round = 0; round < 20; round++) {
        char trace[32], id[37];
        snprintf(trace, sizeof(trace), "trace-race-%d", round);
        escalation(trace, 3, id);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct decider d[2] = {{id, PL_ACTION_EXECUTED, &start, 0},
                               {id, PL_ACTION_FAILED, &start, 0}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, decide, &d[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        bool approved = d[0].result == PL_TRANSITION_OK;
        assert_true(approved != (d[1].result == PL_TRANSITION_OK));
        assert_int_equal(d[approved ? 1 : 0].result, PL_TRANSITION_CONFLICT);
        approvals += approved;
        expect_sql("SELECT status FROM control_actions WHERE id = $1", id,
                   approved ? "executed" : "failed");
        expect_sql(EVENTS_SQL, id,
                   approved ? "2|pending_approval,executed" : "2|pending_approval,failed");
        expect_sql(AUDIT_SQL, id, "2");
        expect_sql("SELECT actor FROM audit_log WHERE target = $1 AND action ="
                   " 'action.transition'",
                   id, "key:itest");
    }
    print_message("approve won %d of 20 races\n", approvals);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_is_idempotent),
        cmocka_unit_test(test_pending_picked_up_once),
        cmocka_unit_test(test_illegal_moves),
        cmocka_unit_test(test_approve_racing_reject),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
