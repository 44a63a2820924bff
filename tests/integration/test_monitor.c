/* pl-monitor and rollbacks against the stack's PostgreSQL and broker: a regression on live
 * traffic is caught and rolled back (the base version is live again); a stable stream stays
 * monitored; a restart and a replay of pl.traces change nothing; a manual rollback racing the
 * automatic one has exactly one winner; a rollback after something newer shipped is refused.
 * Each monitor test uses its own topics, so the stack's monitor never sees these events. */
#include "deploy.h"
#include "itest.h"
#include "registry.h"
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

struct mon_env {
    PGconn *conn;
    struct itest_tenant t;
    struct itest_cluster c;
    char traces[96], deployments[96], group[64];
    char env[2][160];
    const char *envp[4];
};

static void mon_env_new(struct mon_env *e)
{
    memset(e, 0, sizeof(*e));
    e->conn = itest_pg(NULL);
    itest_tenant_new(e->conn, "team", &e->t);
    itest_cluster_new(e->conn, &e->t, "support", "You are a bot.", 4, 0, &e->c);
    itest_topic("traces", e->traces);
    itest_topic("deployments", e->deployments);
    snprintf(e->group, sizeof(e->group), "itest-mon-%s", e->traces + 13);
    snprintf(e->env[0], sizeof(e->env[0]), "PL_KAFKA_TOPIC_TRACES=%s", e->traces);
    snprintf(e->env[1], sizeof(e->env[1]), "PL_KAFKA_TOPIC_DEPLOYMENTS=%s", e->deployments);
    e->envp[0] = e->env[0];
    e->envp[1] = e->env[1];
    e->envp[2] = NULL;
}

static void mon_move(struct mon_env *e, const char *id, enum pl_deploy_status to,
                     enum pl_deploy_actor actor, const char *report)
{
    struct pl_deploy_change ch = {
        .tenant_id = e->t.id,
        .deployment_id = id,
        .to = to,
        .actor = actor,
        .approved_by = to == PL_DEPLOY_SHIPPED ? "itest-owner" : NULL,
        .ab_report_json = report,
        .events_topic = e->deployments,
        .hook = to == PL_DEPLOY_SHIPPED ? pl_registry_ship_hook : NULL,
        .hook_arg = "itest-owner",
    };
    char current[16];
    struct pl_pg_error err;
    enum pl_transition_result r = pl_deploy_transition(e->conn, &ch, NULL, current, &err);
    if (r != PL_TRANSITION_OK)
        fail_msg("move %s to %s: %d %s %s", id, pl_deploy_status_name(to), r, current, err.message);
}

/* A deployment of the cluster's prompt taken through A/B to shipped: the prompt's live
 * version becomes the next one. The signature suffix keeps several per project apart. */
static void mon_ship(struct mon_env *e, const char *suffix, char id[37])
{
    char sig[96], base[37], env[37];
    snprintf(sig, sizeof(sig), "%s%s", e->c.signature, suffix);
    struct pl_pg_error err;
    assert_int_equal(pl_registry_production_env(e->conn, e->t.id, e->t.project_id, env, &err), 1);
    assert_int_equal(pl_registry_live_version(e->conn, e->t.id, env, e->c.prompt_id, base, &err),
                     1);
    struct pl_deploy_proposal prop = {
        .tenant_id = e->t.id,
        .project_id = e->t.project_id,
        .cluster_signature = sig,
        .cluster_id = e->c.cluster_id,
        .prompt_id = e->c.prompt_id,
        .base_version_id = base,
        .current_prompt = "You are a bot.",
        .proposed_prompt = "You are a bot. Reply with one valid JSON object.",
        .rationale = "test",
        .shown_trace_ids = "{}",
        .events_topic = e->deployments,
    };
    assert_int_equal(pl_deploy_create(e->conn, &prop, id, &err), PL_TRANSITION_OK);
    mon_move(e, id, PL_DEPLOY_AB_RUNNING, PL_ACTOR_ABHARNESS, NULL);
    mon_move(e, id, PL_DEPLOY_AB_PASSED, PL_ACTOR_ABHARNESS,
             "{\"correctness_baseline\":0,\"correctness_candidate\":1,\"correctness_delta\":1,"
             "\"sample_size\":30}");
    mon_move(e, id, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER, NULL);
}

static char *mon_sql1(struct mon_env *e, const char *sql, const char *id)
{
    const char *p[1] = {id};
    return itest_sql(e->conn, sql, 1, p);
}

static bool mon_wait(struct mon_env *e, const char *sql, const char *id, const char *want,
                     int timeout_ms)
{
    int64_t deadline = pl_now_ms() + timeout_ms;
    while (pl_now_ms() < deadline) {
        char *v = mon_sql1(e, sql, id);
        bool ok = strcmp(v, want) == 0;
        free(v);
        if (ok)
            return true;
        pl_sleep_ms(50);
    }
    return false;
}

#define STATUS_SQL "SELECT status FROM prompt_deployments WHERE id = $1"

/* Sends n traces of version `version` of the prompt; trace k passes the json rule unless
 * fails(k). */
static void mon_send(struct mon_env *e, const char *prefix, int from, int n, int version,
                     bool (*fails)(int))
{
    for (int k = from; k < from + n; k++) {
        char id[96], ev[1024];
        snprintf(id, sizeof(id), "%s-%d", prefix, k);
        snprintf(ev, sizeof(ev),
                 "{\"schema_version\":1,\"tenant_id\":\"%s\",\"project_id\":\"%s\","
                 "\"received_at\":\"2026-01-01T00:00:00Z\",\"trace\":{\"project_id\":\"%s\","
                 "\"id\":\"%s\",\"output\":\"%s\",\"prompt\":{\"name\":\"%s\",\"version\":%d}}}",
                 e->t.id, e->t.project_id, e->t.project_id, id,
                 fails(k) ? "a prose answer" : "{\\\"answer\\\": 1}", e->c.prompt_name, version);
        itest_produce(e->traces, id, ev);
    }
}

static bool never(int k)
{
    (void)k;
    return false;
}
static bool every_other(int k)
{
    return k % 2 == 0;
}
static bool one_in_ten(int k)
{
    return k % 10 == 3;
}

static void test_regression_is_rolled_back(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    char log[128], id[37];
    pid_t m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_ship(&e, "", id);
    assert_true(mon_wait(&e, STATUS_SQL, id, "monitoring", 20000));
    mon_send(&e, "ok", 0, 40, 2, never);
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "40", 20000));
    char *v = mon_sql1(&e, STATUS_SQL, id);
    assert_string_equal(v, "monitoring"); /* a perfect stream never alarms */
    free(v);
    mon_send(&e, "bad", 0, 40, 2, every_other); /* the pass rate drops to 0.5 */
    assert_true(mon_wait(&e, STATUS_SQL, id, "rolled_back", 20000));
    v = mon_sql1(&e,
                 "SELECT approved_by || '|' || (rolled_back_at IS NOT NULL) || '|' ||"
                 " (regression_metric < 1) FROM prompt_deployments WHERE id = $1",
                 id);
    assert_string_equal(v, "system:auto_rollback|true|true");
    free(v);
    /* the base version (1) is live again */
    v = mon_sql1(&e,
                 "SELECT v.version FROM environment_deployments d JOIN prompt_versions v"
                 " ON v.id = d.version_id WHERE d.prompt_id = $1 ORDER BY d.seq DESC LIMIT 1",
                 e.c.prompt_id);
    assert_string_equal(v, "1");
    free(v);
    v = mon_sql1(
        &e, "SELECT string_agg(payload->>'to', ',' ORDER BY id) FROM outbox WHERE key = $1", id);
    assert_string_equal(v,
                        "proposed,ab_running,ab_passed,shipped,monitoring,regressed,rolled_back");
    free(v);
    itest_service_stop(m);
    PQfinish(e.conn);
}

static void test_restart_and_replay_change_nothing(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    const char *p[1] = {e.t.project_id};
    free(itest_sql(e.conn,
                   "UPDATE projects SET auto_rollback_enabled = false WHERE id = $1"
                   " RETURNING id",
                   1, p));
    char log[128], id[37];
    pid_t m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_ship(&e, "", id);
    assert_true(mon_wait(&e, STATUS_SQL, id, "monitoring", 20000));
    mon_send(&e, "t", 0, 60, 2, one_in_ten);
    mon_send(&e, "other-version", 0, 10, 1, every_other); /* not the shipped version */
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "60", 20000));
    assert_true(itest_group_caught_up(e.group, e.traces, 20000));
    const char *state_sql = "SELECT s.n || '|' || s.passed || '|' || round(s.s::numeric, 9) ||"
                            " '|' || d.regression_metric || '|' || d.status || '|' ||"
                            " (SELECT count(*) FROM outbox WHERE key = d.id::text)"
                            " FROM monitor_state s JOIN prompt_deployments d"
                            "   ON d.id = s.deployment_id WHERE s.deployment_id = $1";
    char *before = mon_sql1(&e, state_sql, id);
    assert_non_null(strstr(before, "60|54|"));
    itest_service_stop(m);

    /* restart in the same group, then a whole replay by a new group */
    m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_send(&e, "t", 0, 60, 2, one_in_ten); /* the same traces again (a producer retry) */
    assert_true(itest_group_caught_up(e.group, e.traces, 20000));
    itest_service_stop(m);
    char replay_group[80];
    snprintf(replay_group, sizeof(replay_group), "%s-replay", e.group);
    m = itest_service_start("pl-monitor", replay_group, e.envp, log);
    assert_true(itest_group_caught_up(replay_group, e.traces, 20000));
    assert_true(itest_group_caught_up(replay_group, e.deployments, 20000));
    char *after = mon_sql1(&e, state_sql, id);
    assert_string_equal(after, before);
    free(before);
    free(after);
    itest_service_stop(m);
    PQfinish(e.conn);
}

struct race_arg {
    const char *id, *key;
    long status;
};

static void *race_api_rollback(void *p)
{
    struct race_arg *a = p;
    char path[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", a->id);
    struct itest_response r = itest_api("POST", path, a->key, NULL);
    a->status = r.status;
    itest_response_free(&r);
    return NULL;
}

static void test_manual_and_auto_rollback_race_has_one_winner(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        struct mon_env e;
        mon_env_new(&e);
        char id[37];
        mon_ship(&e, "", id);
        mon_move(&e, id, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, NULL);
        mon_move(&e, id, PL_DEPLOY_REGRESSED, PL_ACTOR_MONITOR, NULL);
        struct race_arg a = {id, e.t.owner_key, 0};
        pthread_t th;
        pthread_create(&th, NULL, race_api_rollback, &a);
        PGconn *conn2 = itest_pg(NULL);
        struct pl_deploy_change ch = {
            .tenant_id = e.t.id,
            .deployment_id = id,
            .to = PL_DEPLOY_ROLLED_BACK,
            .actor = PL_ACTOR_AUTO_ROLLBACK,
            .approved_by = "system:auto_rollback",
            .events_topic = e.deployments,
            .hook = pl_registry_rollback_hook,
            .hook_arg = "system:auto_rollback",
        };
        char current[16];
        struct pl_pg_error err;
        enum pl_transition_result r = pl_deploy_transition(conn2, &ch, NULL, current, &err);
        pthread_join(th, NULL);
        PQfinish(conn2);
        bool auto_won = r == PL_TRANSITION_OK, manual_won = a.status == 200;
        assert_true(auto_won != manual_won);
        assert_true(auto_won ? a.status == 409 : r == PL_TRANSITION_CONFLICT);
        /* one rolled_back event, one restoring registry row */
        char *v = mon_sql1(&e,
                           "SELECT count(*) FROM outbox WHERE key = $1 AND"
                           " payload->>'to' = 'rolled_back'",
                           id);
        assert_string_equal(v, "1");
        free(v);
        v = mon_sql1(&e,
                     "SELECT count(*) || '|' || (array_agg(v.version ORDER BY d.seq DESC))[1]"
                     " FROM environment_deployments d JOIN prompt_versions v"
                     " ON v.id = d.version_id WHERE d.prompt_id = $1",
                     e.c.prompt_id);
        assert_string_equal(v, "3|1"); /* v1 created, v2 shipped, v1 restored */
        free(v);
        PQfinish(e.conn);
    }
}

static void test_rollback_after_a_newer_ship_is_refused(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    char a[37], b[37];
    mon_ship(&e, "-a", a); /* v2 live */
    mon_move(&e, a, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, NULL);
    mon_ship(&e, "-b", b); /* v3 live, built on v2 */
    char path[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", a);
    struct itest_response r = itest_api("POST", path, e.t.owner_key, NULL);
    assert_int_equal(r.status, 409);
    assert_non_null(strstr(itest_json_str(&r, "error"), "version 3 of the prompt is live now"));
    itest_response_free(&r);
    char *v = mon_sql1(&e, STATUS_SQL, a);
    assert_string_equal(v, "monitoring");
    free(v);
    const char *live_sql = "SELECT v.version FROM environment_deployments d JOIN prompt_versions v"
                           " ON v.id = d.version_id WHERE d.prompt_id = $1 ORDER BY d.seq DESC"
                           " LIMIT 1";
    v = mon_sql1(&e, live_sql, e.c.prompt_id);
    assert_string_equal(v, "3");
    free(v);
    /* rolling back the newer one restores its base, v2 */
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", b);
    r = itest_api("POST", path, e.t.owner_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "rolled_back");
    itest_response_free(&r);
    v = mon_sql1(&e, live_sql, e.c.prompt_id);
    assert_string_equal(v, "2");
    free(v);
    PQfinish(e.conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regression_is_rolled_back),
        cmocka_unit_test(test_restart_and_replay_change_nothing),
        cmocka_unit_test(test_manual_and_auto_rollback_race_has_one_winner),
        cmocka_unit_test(test_rollback_after_a_newer_ship_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
