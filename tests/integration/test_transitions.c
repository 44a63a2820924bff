/* The guarded transition under pressure: racing owners, a relay killed between producing
 * and recording, and the audit chain. */
#include "itest.h"

#include "audit.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static PGconn *db;
static struct itest_tenant team;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &team);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

#define RACERS 20

struct racer {
    const char *path;
    const char *key;
    pthread_barrier_t *start;
    long status;
    char action[16];
};

static void *racer_run(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    struct itest_response res = itest_api("POST", r->path, r->key, NULL);
    r->status = res.status;
    itest_response_free(&res);
    return NULL;
}

static void test_concurrent_moves(void **state)
{
    (void)state;
    char id[37];
    itest_deployment_new(db, &team, "ab_passed", id);
    static const char *const actions[3] = {"approve", "reject", "rollback"};
    char paths[3][256];
    for (int i = 0; i < 3; i++)
        snprintf(paths[i], sizeof(paths[i]), "/v1/prompts/deployments/%s/%s", id, actions[i]);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (struct racer){.path = paths[i % 3], .key = team.owner_key, .start = &start};
        snprintf(racers[i].action, sizeof(racers[i].action), "%s", actions[i % 3]);
        pthread_create(&threads[i], NULL, racer_run, &racers[i]);
    }
    int won[3] = {0, 0, 0};
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        if (racers[i].status == 200)
            won[i % 3]++;
        else if (racers[i].status != 409)
            fail_msg("%s answered %ld (only 200 or 409 are acceptable)", racers[i].action,
                     racers[i].status);
    }
    pthread_barrier_destroy(&start);

    /* Legal histories from ab_passed: [reject], [approve], [approve, rollback] or
     * [approve, reject] (a live deployment may still be rejected). */
    assert_true(won[0] <= 1 && won[1] <= 1 && won[2] <= 1);
    assert_false(won[1] && won[2]);
    assert_true(won[0] || won[1]);
    if (won[2])
        assert_int_equal(won[0], 1);
    const char *expect = won[1] ? "rejected" : won[2] ? "rolled_back" : "shipped";
    int successes = won[0] + won[1] + won[2];

    const char *p[1] = {id};
    char *status = itest_sql(db, "SELECT status FROM prompt_deployments WHERE id = $1", 1, p);
    assert_string_equal(status, expect);
    free(status);
    /* one outbox event and one audit entry per successful move, none for the losers */
    char *events = itest_sql(db, "SELECT count(*) FROM outbox WHERE key = $1", 1, p);
    char *audits = itest_sql(db, "SELECT count(*) FROM audit_log WHERE target = $1", 1, p);
    assert_int_equal(strtol(events, NULL, 10), successes);
    assert_int_equal(strtol(audits, NULL, 10), successes);
    free(events);
    free(audits);

    const char *keys[1] = {id};
    assert_true(itest_outbox_drained(db, keys, 1, 20000));
    json_object *published = itest_kafka_read("pl.deployments", keys, 1, 20000);
    assert_int_equal((int)json_object_array_length(published), successes);
    json_object_put(published);
}

/* Appends n entries for tenant in one transaction, as every writer does. */
static void audit_append_n(const char *tenant, int n)
{
    struct pl_pg_error perr;
    free(itest_sql(db, "BEGIN", 0, NULL));
    for (int i = 0; i < n; i++) {
        char detail[32];
        snprintf(detail, sizeof(detail), "{\"n\":%d}", i);
        if (pl_audit_append(db, tenant, "itest", "test.entry", "x", detail, &perr) != 0)
            fail_msg("audit append: %s", perr.message);
    }
    free(itest_sql(db, "COMMIT", 0, NULL));
}

/* What a database-only writer can do without the key: recompute every hash of the tenant's
 * chain from its contents with plain SHA-256, as the chain was before it was keyed.
 * unkeyed: also clear key_id, as if the entries predated the key. */
static void audit_recompute_in_sql(const char *tenant, bool unkeyed)
{
    const char *p[2] = {tenant, unkeyed ? "t" : "f"};
    free(itest_sql(db,
                   "CREATE OR REPLACE FUNCTION pg_temp.rechain(t uuid, unkeyed boolean)"
                   " RETURNS void LANGUAGE plpgsql AS $$ DECLARE r record; prev text := '';"
                   " h text; BEGIN FOR r IN SELECT id, concat_ws('|', tenant_id::text, actor,"
                   " action, target, detail::text, (extract(epoch FROM at) * 1000000)::bigint"
                   "::text) AS body FROM audit_log WHERE tenant_id = t ORDER BY id LOOP"
                   " h := encode(sha256(convert_to(prev || '|' || r.body, 'UTF8')), 'hex');"
                   " UPDATE audit_log SET prev_hash = prev, hash = h, key_id = CASE WHEN"
                   " unkeyed THEN NULL ELSE key_id END WHERE id = r.id; prev := h; END LOOP;"
                   " END $$",
                   0, NULL));
    free(itest_sql(db, "SELECT pg_temp.rechain($1::uuid, $2::boolean)", 2, p));
}

static void test_audit_chain(void **state)
{
    (void)state;
    char err[256];
    /* the chain of the tenant the other tests moved deployments for verifies */
    long long n = pl_audit_verify(db, team.id, err, sizeof(err));
    if (n < 0)
        fail_msg("audit chain: %s", err);
    assert_true(n >= 1);

    /* a tenant of its own, so tampering touches nobody else's chain */
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    struct pl_pg_error perr;
    /* outside a transaction the tenant lock would not hold: refused */
    assert_int_equal(pl_audit_append(db, t.id, "itest", "test.entry", "x", "{}", &perr), -1);
    assert_non_null(strstr(perr.message, "transaction"));
    audit_append_n(t.id, 3);
    assert_int_equal(pl_audit_verify(db, t.id, err, sizeof(err)), 3);
    /* the key never reaches the database: no column holds it */
    const char *pk[2] = {t.id, getenv("PL_AUDIT_KEY")};
    char *leaks = itest_sql(db,
                            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND"
                            " strpos(audit_log::text, $2) > 0",
                            2, pk);
    assert_string_equal(leaks, "0");
    free(leaks);

    const char *p[1] = {t.id};
    free(itest_sql(db,
                   "UPDATE audit_log SET detail = '{\"n\":99}' WHERE id = (SELECT min(id) FROM"
                   " audit_log WHERE tenant_id = $1)",
                   1, p));
    assert_int_equal(pl_audit_verify(db, t.id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "hash does not match"));
    /* the edit, with every later hash recomputed in SQL: still detected (no key) */
    audit_recompute_in_sql(t.id, false);
    assert_int_equal(pl_audit_verify(db, t.id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "hash does not match"));
    /* ... and passed off as entries from before the chain was keyed: refused too, and a
     * rekey does not launder it because the tampered chain is no longer the keyed one */
    audit_recompute_in_sql(t.id, true);
    assert_int_equal(pl_audit_verify(db, t.id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not keyed"));

    /* an honest chain from before the key (migration 0014) is keyed by pl_audit_rekey after
     * it verifies as it stands; a tampered one is not */
    struct itest_tenant old;
    itest_tenant_new(db, "team", &old);
    audit_append_n(old.id, 4);
    audit_recompute_in_sql(old.id, true); /* what 0001..0013 wrote */
    assert_int_equal(pl_audit_verify(db, old.id, err, sizeof(err)), -1);
    const char *po[1] = {old.id};
    free(itest_sql(db,
                   "UPDATE audit_log SET hash = 'x' || substr(hash, 2) WHERE id = (SELECT max(id)"
                   " FROM audit_log WHERE tenant_id = $1)",
                   1, po));
    assert_int_equal(pl_audit_rekey(db, old.id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "hash does not match"));
    audit_recompute_in_sql(old.id, true);
    audit_append_n(old.id, 1); /* a keyed entry chained onto the unkeyed ones */
    assert_int_equal(pl_audit_rekey(db, old.id, err, sizeof(err)), 5);
    assert_int_equal(pl_audit_verify(db, old.id, err, sizeof(err)), 5);
    assert_int_equal(pl_audit_rekey(db, old.id, err, sizeof(err)), 0);

    /* a deleted entry in the middle breaks the chain */
    free(itest_sql(db,
                   "DELETE FROM audit_log WHERE id = (SELECT min(id) + 1 FROM audit_log"
                   " WHERE tenant_id = $1) AND tenant_id = $1",
                   1, po));
    assert_int_equal(pl_audit_verify(db, old.id, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "prev_hash"));
}

/* The newest message on pl.audit for tenant with verified == want, or NULL by the deadline
 * (caller puts it). */
static json_object *audit_head_message(const char *tenant, bool want, int deadline_ms)
{
    const char *keys[1] = {tenant};
    int64_t deadline = pl_now_ms() + deadline_ms;
    do {
        json_object *all = itest_kafka_read("pl.audit", keys, 1, 5000);
        for (size_t i = json_object_array_length(all); i-- > 0;) {
            json_object *m = json_object_array_get_idx(all, i), *v;
            if (json_object_object_get_ex(m, "verified", &v) &&
                json_object_get_boolean(v) == want) {
                json_object *found = json_object_get(m);
                json_object_put(all);
                return found;
            }
        }
        json_object_put(all);
        pl_sleep_ms(200);
    } while (pl_now_ms() < deadline);
    return NULL;
}

/* The running stack publishes each tenant's verified head to pl.audit (every 2 s there); a
 * deletion at the end of the chain, which the chain alone cannot show, is reported. */
static void test_audit_heads_published(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    audit_append_n(t.id, 3);
    const char *p[1] = {t.id};
    char *head = itest_sql(db,
                           "SELECT hash FROM audit_log WHERE tenant_id = $1 ORDER BY id DESC"
                           " LIMIT 1",
                           1, p);
    json_object *m = NULL;
    int64_t deadline = pl_now_ms() + 30000;
    /* wait for the head that covers all three (an earlier round may have seen fewer) */
    while (!m && pl_now_ms() < deadline) {
        json_object *cand = audit_head_message(t.id, true, 30000);
        json_object *h;
        if (cand && json_object_object_get_ex(cand, "head_hash", &h) &&
            strcmp(json_object_get_string(h), head) == 0)
            m = cand;
        else
            json_object_put(cand);
    }
    assert_non_null(m);
    json_object *v;
    assert_true(json_object_object_get_ex(m, "row_count", &v));
    assert_int_equal(json_object_get_int64(v), 3);
    assert_true(json_object_object_get_ex(m, "key_id", &v));
    assert_string_equal(json_object_get_string(v), pl_audit_key_id());
    json_object_put(m);

    /* the newest entry deleted: what is left still chains, but the publisher knew more */
    free(itest_sql(db,
                   "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log"
                   " WHERE tenant_id = $1)",
                   1, p));
    char err[256];
    assert_int_equal(pl_audit_verify(db, t.id, err, sizeof(err)), 2);
    m = audit_head_message(t.id, false, 30000);
    assert_non_null(m);
    assert_true(json_object_object_get_ex(m, "error", &v));
    assert_non_null(strstr(json_object_get_string(v), "gone or changed"));
    json_object_put(m);
    /* and the head published before no longer verifies */
    struct pl_audit_head h;
    assert_int_equal(pl_audit_verify_head(db, t.id, head, &h, err, sizeof(err)), 2);
    assert_int_equal(h.expected_found, 0);
    free(head);
}

/* ---- relay crash: a scratch database so that only this test's relays publish from it ---- */

struct scratch {
    char name[64];
    char dsn[512];
};

static void scratch_drop(struct scratch *s)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", s->name);
    free(itest_sql(db, sql, 0, NULL));
}

static void scratch_create(struct scratch *s)
{
    snprintf(s->name, sizeof(s->name), "pl_itest_relay_%d", (int)getpid());
    char sql[128];
    scratch_drop(s);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", s->name);
    free(itest_sql(db, sql, 0, NULL));
    snprintf(s->dsn, sizeof(s->dsn), "%s dbname=%s", itest_env("PL_PG_DSN"), s->name);
    char admin[512], env_dsn[600];
    itest_bin("pl-admin", admin, sizeof(admin));
    snprintf(env_dsn, sizeof(env_dsn), "PL_PG_DSN=%s", s->dsn);
    const char *argv[] = {admin, "migrate", NULL};
    const char *env[] = {env_dsn, NULL};
    pid_t pid = itest_spawn(argv, env, "/tmp/pl-itest-migrate.log");
    int st = itest_wait(pid, 30000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

struct api_proc {
    pid_t pid;
    int port;
    char url[64];
    char log[128];
};

/* Starts pl-api on the scratch database; waits for it to serve unless a failpoint is armed
 * (such a process may be gone before the first probe). */
static void api_start(struct api_proc *a, const struct scratch *s, const char *relay,
                      const char *failpoint)
{
    static char env[6][640];
    a->port = itest_free_port();
    snprintf(a->url, sizeof(a->url), "http://127.0.0.1:%d", a->port);
    snprintf(a->log, sizeof(a->log), "/tmp/pl-itest-api-%d-%d.log", (int)getpid(), a->port);
    snprintf(env[0], sizeof(env[0]), "PL_PG_DSN=%s", s->dsn);
    snprintf(env[1], sizeof(env[1]), "PL_HTTP_PORT=%d", a->port);
    snprintf(env[2], sizeof(env[2]), "PL_OUTBOX_RELAY=%s", relay);
    snprintf(env[3], sizeof(env[3]), "PL_FAILPOINT=%s", failpoint ? failpoint : "");
    snprintf(env[4], sizeof(env[4]), "PL_OUTBOX_POLL_MS=20");
    const char *envp[] = {env[0], env[1], env[2], env[3], env[4], NULL};
    char bin[512];
    itest_bin("pl-api", bin, sizeof(bin));
    const char *argv[] = {bin, NULL};
    a->pid = itest_spawn(argv, envp, a->log);
    if (failpoint)
        return;
    char ready[96];
    snprintf(ready, sizeof(ready), "%s/healthz", a->url);
    assert_true(itest_wait_http_ok(ready, 20000));
}

static void api_stop(struct api_proc *a)
{
    kill(a->pid, SIGTERM);
    int st = itest_wait(a->pid, 10000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_relay_killed_between_produce_and_mark(void **state)
{
    (void)state;
    struct scratch s;
    scratch_create(&s);
    PGconn *sdb = itest_pg(s.dsn);
    struct itest_tenant t;
    itest_tenant_new(sdb, "team", &t);
    enum { N = 5 };
    char ids[N][37];
    const char *keys[N + 0];
    for (int i = 0; i < N; i++) {
        itest_deployment_new(sdb, &t, "ab_passed", ids[i]);
        keys[i] = ids[i];
    }

    /* 1. transitions with no relay running: the events wait in the outbox */
    struct api_proc a;
    api_start(&a, &s, "false", NULL);
    for (int i = 0; i < N; i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", ids[i]);
        struct itest_response r = itest_http(a.url, "POST", path, t.owner_key, NULL);
        assert_int_equal(r.status, 200);
        itest_response_free(&r);
    }
    api_stop(&a);
    char *pending =
        itest_sql(sdb, "SELECT count(*) FROM outbox WHERE published_at IS NULL", 0, NULL);
    assert_string_equal(pending, "5");
    free(pending);

    /* 2. a relay that dies (SIGKILL) right after the broker acknowledged, before it could
     *    record that: the events are in Kafka, the rows still say unpublished */
    struct api_proc b;
    api_start(&b, &s, "true", "outbox_after_produce");
    int st = itest_wait(b.pid, 30000);
    assert_true(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    char *attempted = itest_sql(sdb,
                                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                                " AND attempted_at IS NOT NULL",
                                0, NULL);
    assert_string_equal(attempted, "5");
    free(attempted);

    /* 3. the next relay finds them in the topic instead of publishing them again */
    struct api_proc c;
    api_start(&c, &s, "true", NULL);
    assert_true(itest_outbox_drained(sdb, keys, N, 30000));
    assert_true(itest_wait_file_contains(c.log, "found already published", 5000));
    /* and keeps publishing new events normally */
    char path[256];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", ids[0]);
    struct itest_response r = itest_http(c.url, "POST", path, t.owner_key, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    assert_true(itest_outbox_drained(sdb, keys, N, 30000));
    api_stop(&c);

    json_object *events = itest_kafka_read("pl.deployments", keys, N, 20000);
    assert_int_equal((int)json_object_array_length(events), N + 1);
    for (int i = 0; i < N; i++) {
        int shipped = 0;
        for (size_t k = 0; k < json_object_array_length(events); k++) {
            json_object *e = json_object_array_get_idx(events, k);
            if (strcmp(json_object_get_string(json_object_object_get(e, "deployment_id")),
                       ids[i]) == 0 &&
                strcmp(json_object_get_string(json_object_object_get(e, "to")), "shipped") == 0)
                shipped++;
        }
        assert_int_equal(shipped, 1);
    }
    json_object_put(events);
    PQfinish(sdb);
    scratch_drop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_moves),
        cmocka_unit_test(test_audit_chain),
        cmocka_unit_test(test_audit_heads_published),
        cmocka_unit_test(test_relay_killed_between_produce_and_mark),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
