/* pl-monitor and rollbacks against the stack's PostgreSQL and broker. The baseline of a
 * shipped version is the replaced version's live traces stored before the ship (or, during a
 * canary, its traces served concurrently): a version 0.2 worse than it is caught and rolled
 * back (the base version is live again); a version as good as it stays monitored over 3,000
 * live traces; a canary found not worse is promoted to 100 % and a worse one rolled back; a
 * restart and a replay of pl.traces change nothing; a manual rollback racing the automatic
 * one has exactly one winner; a rollback after something newer shipped is refused.
 * Each monitor test uses its own topics, so the stack's monitor never sees these events. */
#include "deploy.h"
#include "itest.h"
#include "kafka.h"
#include "registry.h"
#include "util.h"

#include <time.h>

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
    return itest_wait_sql(e->conn, sql, id, want, timeout_ms);
}

#define STATUS_SQL "SELECT status FROM prompt_deployments WHERE id = $1"

/* Stores n traces of version 1 of the prompt as the detector would have, received before
 * the ship: the baseline the monitor reads at ship. Trace k fails the json rule iff fails(k). */
static void mon_baseline(struct mon_env *e, int n, bool (*fails)(int))
{
    for (int k = 0; k < n; k++) {
        char id[64], kk[16];
        snprintf(id, sizeof(id), "base-%d", k);
        snprintf(kk, sizeof(kk), "%d", k);
        const char *p[5] = {e->t.id, e->t.project_id, id, e->c.prompt_name,
                            fails(k) ? "a prose answer" : "{\"answer\": 1}"};
        free(itest_sql(e->conn,
                       "INSERT INTO traces (tenant_id, project_id, id, prompt_name, prompt_version,"
                       " output, received_at, created_at) VALUES ($1, $2, $3, $4, '1', $5,"
                       " now() - interval '1 minute', now() - interval '1 minute') RETURNING id",
                       5, p));
    }
}

/* Sends n traces of version `version` of the prompt through one producer; trace k passes
 * the json rule unless fails(k). */
static void mon_send(struct mon_env *e, const char *prefix, int from, int n, int version,
                     bool (*fails)(int))
{
    char err[256], now[40];
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);
    struct pl_kafka_msg *msgs = calloc((size_t)n, sizeof(*msgs));
    char(*ids)[96] = calloc((size_t)n, sizeof(*ids));
    char(*evs)[1024] = calloc((size_t)n, sizeof(*evs));
    assert_true(msgs && ids && evs);
    pl_now_iso(now, sizeof(now));
    for (int i = 0; i < n; i++) {
        int k = from + i;
        snprintf(ids[i], sizeof(ids[i]), "%s-%d", prefix, k);
        snprintf(evs[i], sizeof(evs[i]),
                 "{\"schema_version\":1,\"tenant_id\":\"%s\",\"project_id\":\"%s\","
                 "\"received_at\":\"%s\",\"trace\":{\"project_id\":\"%s\","
                 "\"id\":\"%s\",\"output\":\"%s\",\"prompt\":{\"name\":\"%s\",\"version\":%d}}}",
                 e->t.id, e->t.project_id, now, e->t.project_id, ids[i],
                 fails(k) ? "a prose answer" : "{\\\"answer\\\": 1}", e->c.prompt_name, version);
        msgs[i] = (struct pl_kafka_msg){.topic = e->traces,
                                        .partition = RD_KAFKA_PARTITION_UA,
                                        .key = ids[i],
                                        .key_len = strlen(ids[i]),
                                        .value = evs[i],
                                        .value_len = strlen(evs[i])};
    }
    if (pl_producer_send_batch(p, msgs, (size_t)n) != 0)
        fail_msg("produce %d traces to %s", n, e->traces);
    pl_producer_destroy(p, 5000);
    free(msgs);
    free(ids);
    free(evs);
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
static bool three_in_ten(int k)
{
    return k % 10 < 3;
}

static void mon_settings(struct mon_env *e, const char *set_sql)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE projects SET %s WHERE id = $1 RETURNING id", set_sql);
    const char *p[1] = {e->t.project_id};
    free(itest_sql(e->conn, sql, 1, p));
}

#define REPORT_SQL(path)                                                                           \
    "SELECT monitor_report #>> '{" path "}' FROM prompt_deployments WHERE id = $1"
#define LIVE_SQL                                                                                   \
    "SELECT v.version || '@' || d.rollout_pct FROM environment_deployments d"                      \
    " JOIN prompt_versions v ON v.id = d.version_id WHERE d.prompt_id = $1"                        \
    " ORDER BY d.seq DESC LIMIT 1"

/* Everything the monitor decides for a deployment, as one text: the test's state, the metric,
 * status, rollout, report, and how many events and audit entries it has. */
static char *mon_state(struct mon_env *e, const char *id)
{
    return mon_sql1(e,
                    "SELECT concat_ws('|', s.n, s.k, s.base_n, s.base_k, s.log_lr::text,"
                    " s.log_c::text, d.regression_metric, d.status, d.rollout_pct,"
                    " d.monitor_report::text,"
                    " (SELECT count(*) FROM outbox WHERE key = d.id::text),"
                    " (SELECT count(*) FROM audit_log WHERE target = d.id::text))"
                    " FROM monitor_state s JOIN prompt_deployments d"
                    "   ON d.id = s.deployment_id WHERE s.deployment_id = $1",
                    id);
}

/* Stops the monitor m, replays both topics from the start with a new group, and checks that
 * the replay changed nothing of `before` (mon_state). Frees before. */
static void mon_replay_changes_nothing(struct mon_env *e, pid_t m, const char *id, char *before)
{
    char log[128], replay_group[80];
    itest_service_stop(m);
    snprintf(replay_group, sizeof(replay_group), "%s-replay", e->group);
    m = itest_service_start("pl-monitor", replay_group, e->envp, log);
    assert_true(itest_group_caught_up(replay_group, e->traces, 20000));
    assert_true(itest_group_caught_up(replay_group, e->deployments, 20000));
    char *after = mon_state(e, id);
    assert_string_equal(after, before);
    free(before);
    free(after);
    itest_service_stop(m);
}

static void test_regression_is_rolled_back(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    mon_baseline(&e, 400, one_in_ten); /* with the cluster's 4 failures: 360/404 */
    char log[128], id[37];
    pid_t m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_ship(&e, "", id);
    assert_true(mon_wait(&e, STATUS_SQL, id, "monitoring", 20000));
    char *v = mon_sql1(&e,
                       "SELECT concat_ws('|', monitor_report #>> '{baseline,source}',"
                       " monitor_report #>> '{baseline,traces}', monitor_report #>> "
                       "'{baseline,passed}', monitor_report #>> '{baseline,version}',"
                       " monitor_report->>'decision', rollout_pct) FROM prompt_deployments"
                       " WHERE id = $1",
                       id);
    assert_string_equal(v, "pre_ship|404|360|1|watching|100");
    free(v);
    mon_send(&e, "ok", 0, 40, 2, never);
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "40", 20000));
    v = mon_sql1(&e, STATUS_SQL, id);
    assert_string_equal(v, "monitoring"); /* better than the baseline: no regression */
    free(v);
    /* 0.7: 0.2 below the baseline, sent 100 at a time until it is rolled back: the test needs
     * a few hundred traces (bench/stats: median 309 for a 0.1 drop), never the whole 1000 */
    int sent = 0;
    char want[16];
    for (bool back = false; !back && sent < 1000; sent += 100) {
        mon_send(&e, "bad", sent, 100, 2, three_in_ten);
        snprintf(want, sizeof(want), "%d", 40 + sent + 100);
        /* counted, or rolled back part way (later traces are no longer watched) */
        const char *pw[2] = {id, want};
        int64_t deadline = pl_now_ms() + 20000;
        char *seen = NULL;
        for (;;) {
            free(seen);
            seen = itest_sql(e.conn,
                             "SELECT CASE WHEN d.status = 'rolled_back' THEN 'back'"
                             " WHEN s.n >= $2::bigint THEN 'counted' ELSE 'waiting' END"
                             " FROM monitor_state s JOIN prompt_deployments d"
                             " ON d.id = s.deployment_id WHERE s.deployment_id = $1",
                             2, pw);
            if (strcmp(seen, "waiting") != 0 || pl_now_ms() >= deadline)
                break;
            pl_sleep_ms(50);
        }
        assert_string_not_equal(seen, "waiting");
        back = strcmp(seen, "back") == 0 || mon_wait(&e, STATUS_SQL, id, "rolled_back", 2000);
        free(seen);
    }
    assert_true(sent < 1000);
    assert_true(mon_wait(&e, STATUS_SQL, id, "rolled_back", 20000));
    v = mon_sql1(&e,
                 "SELECT approved_by || '|' || (rolled_back_at IS NOT NULL) || '|' ||"
                 " (regression_metric < 0.9) || '|' || rollout_pct || '|' ||"
                 " (monitor_report->>'decision') || '|' ||"
                 " ((monitor_report #>> '{regressed_at,log_e_value}')::float8 >="
                 "  (monitor_report #>> '{statistic,threshold}')::float8)"
                 " FROM prompt_deployments WHERE id = $1",
                 id);
    assert_string_equal(v, "system:auto_rollback|true|true|0|regressed|true");
    free(v);
    /* the base version (1) is live again, for everyone */
    v = mon_sql1(&e, LIVE_SQL, e.c.prompt_id);
    assert_string_equal(v, "1@100");
    free(v);
    v = mon_sql1(
        &e, "SELECT string_agg(payload->>'to', ',' ORDER BY id) FROM outbox WHERE key = $1", id);
    assert_string_equal(v,
                        "proposed,ab_running,ab_passed,shipped,monitoring,regressed,rolled_back");
    free(v);
    itest_service_stop(m);
    PQfinish(e.conn);
}

/* As good as the version it replaced: 3,000 live traces at the baseline's pass rate. */
static void test_good_version_stays_monitoring(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    mon_baseline(&e, 1000, one_in_ten);
    char log[128], id[37];
    pid_t m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_ship(&e, "", id);
    assert_true(mon_wait(&e, STATUS_SQL, id, "monitoring", 20000));
    mon_send(&e, "live", 0, 3000, 2, one_in_ten);
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "3000", 30000));
    char *v = mon_sql1(&e,
                       "SELECT d.status || '|' || (s.regressed_at IS NULL) || '|' ||"
                       " (d.monitor_report->>'decision') || '|' || s.k || '|' ||"
                       " d.regression_metric || '|' || d.rollout_pct FROM prompt_deployments d"
                       " JOIN monitor_state s ON s.deployment_id = d.id WHERE d.id = $1",
                       id);
    assert_string_equal(v, "monitoring|true|watching|2700|0.9|100");
    free(v);
    itest_service_stop(m);
    PQfinish(e.conn);
}

/* Ships the cluster's fix to a 10 % canary (50 traces before promotion) under a monitor of
 * the test's own, and waits until that monitor watches it. */
static pid_t mon_ship_canary(struct mon_env *e, char log[128], char id[37])
{
    mon_settings(e, "ship_canary_pct = 10, ship_canary_min_samples = 50");
    pid_t m = itest_service_start("pl-monitor", e->group, e->envp, log);
    mon_ship(e, "", id);
    assert_true(mon_wait(e, STATUS_SQL, id, "monitoring", 20000));
    return m;
}

/* A canary: 10 % of the routing keys get the new version; both versions' traces feed the
 * test. Found not worse after ship_canary_min_samples traces, it is promoted to 100 %. */
static void test_canary_is_promoted(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    char log[128], id[37];
    pid_t m = mon_ship_canary(&e, log, id);
    char *v = mon_sql1(&e, LIVE_SQL, e.c.prompt_id);
    assert_string_equal(v, "2@10");
    free(v);
    mon_send(&e, "base", 0, 450, 1, one_in_ten); /* the replaced version, concurrently */
    assert_true(mon_wait(&e, "SELECT base_n FROM monitor_state WHERE deployment_id = $1", id, "450",
                         20000));
    v = mon_sql1(&e, "SELECT rollout_pct FROM prompt_deployments WHERE id = $1", id);
    assert_string_equal(v, "10"); /* no trace of the new version yet: no promotion */
    free(v);
    mon_send(&e, "canary", 0, 60, 2, one_in_ten);
    assert_true(
        mon_wait(&e, "SELECT rollout_pct FROM prompt_deployments WHERE id = $1", id, "100", 20000));
    v = mon_sql1(&e, LIVE_SQL, e.c.prompt_id);
    assert_string_equal(v, "2@100");
    free(v);
    /* one promotion event and one audit entry, by system:canary_promote */
    v = mon_sql1(&e,
                 "SELECT count(*) || '|' || min(payload->>'from') || '|' || min(payload->>'to')"
                 " || '|' || min(payload->>'actor') || '|' || min(payload->>'rollout_pct')"
                 " FROM outbox WHERE key = $1 AND payload->>'actor' = 'system:canary_promote'",
                 id);
    assert_string_equal(v, "1|monitoring|monitoring|system:canary_promote|100");
    free(v);
    v = mon_sql1(&e,
                 "SELECT count(*) FROM audit_log WHERE target = $1"
                 " AND actor = 'system:canary_promote'",
                 id);
    assert_string_equal(v, "1");
    free(v);
    v = mon_sql1(&e, REPORT_SQL("baseline,source"), id);
    assert_string_equal(v, "canary");
    free(v);
    /* after the promotion the base version's traces no longer count (and the report, written
     * with the next traces, says it was promoted) */
    mon_send(&e, "base-late", 0, 20, 1, never);
    mon_send(&e, "after", 0, 20, 2, never);
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "80", 20000));
    v = mon_sql1(&e,
                 "SELECT base_n || '|' || d.status FROM monitor_state s JOIN prompt_deployments d"
                 " ON d.id = s.deployment_id WHERE s.deployment_id = $1",
                 id);
    assert_string_equal(v, "450|monitoring");
    free(v);
    v = mon_sql1(&e, REPORT_SQL("decision"), id);
    assert_string_equal(v, "promoted");
    free(v);
    /* a full replay of both topics by a new group changes nothing: no second promotion, the
     * same counts, statistic and report */
    assert_true(itest_group_caught_up(e.group, e.traces, 20000));
    mon_replay_changes_nothing(&e, m, id, mon_state(&e, id));
    PQfinish(e.conn);
}

/* A canary 0.4 below the concurrent baseline is rolled back before it is ever promoted. */
static void test_canary_regression_is_rolled_back(void **state)
{
    (void)state;
    struct mon_env e;
    mon_env_new(&e);
    char log[128], id[37];
    pid_t m = mon_ship_canary(&e, log, id);
    mon_send(&e, "base", 0, 900, 1, one_in_ten);
    assert_true(mon_wait(&e, "SELECT base_n FROM monitor_state WHERE deployment_id = $1", id, "900",
                         20000));
    mon_send(&e, "canary", 0, 300, 2, every_other);
    assert_true(mon_wait(&e, STATUS_SQL, id, "rolled_back", 20000));
    char *v = mon_sql1(&e,
                       "SELECT rollout_pct || '|' || (SELECT count(*) FROM outbox WHERE key ="
                       " $1::text AND payload->>'actor' = 'system:canary_promote') FROM"
                       " prompt_deployments WHERE id = $1::uuid",
                       id);
    assert_string_equal(v, "0|0");
    free(v);
    v = mon_sql1(&e, LIVE_SQL, e.c.prompt_id);
    assert_string_equal(v, "1@100");
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
    mon_baseline(&e, 200, one_in_ten);
    char log[128], id[37];
    pid_t m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_ship(&e, "", id);
    assert_true(mon_wait(&e, STATUS_SQL, id, "monitoring", 20000));
    mon_send(&e, "t", 0, 60, 2, one_in_ten);
    mon_send(&e, "other-version", 0, 10, 1, every_other); /* not the shipped version */
    assert_true(
        mon_wait(&e, "SELECT n FROM monitor_state WHERE deployment_id = $1", id, "60", 20000));
    assert_true(itest_group_caught_up(e.group, e.traces, 20000));
    char *before = mon_state(&e, id);
    assert_non_null(strstr(before, "60|54|204|180|"));
    itest_service_stop(m);

    /* restart in the same group, then a whole replay by a new group */
    m = itest_service_start("pl-monitor", e.group, e.envp, log);
    mon_send(&e, "t", 0, 60, 2, one_in_ten); /* the same traces again (a producer retry) */
    assert_true(itest_group_caught_up(e.group, e.traces, 20000));
    mon_replay_changes_nothing(&e, m, id, before);
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
        cmocka_unit_test(test_good_version_stays_monitoring),
        cmocka_unit_test(test_canary_is_promoted),
        cmocka_unit_test(test_canary_regression_is_rolled_back),
        cmocka_unit_test(test_restart_and_replay_change_nothing),
        cmocka_unit_test(test_manual_and_auto_rollback_race_has_one_winner),
        cmocka_unit_test(test_rollback_after_a_newer_ship_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
