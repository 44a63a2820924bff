/* Backfills against the running stack: a rule added after traces were stored finds them only
 * when pl-admin replay re-evaluates the range; a second replay changes nothing; the live
 * group keeps consuming while a backfill is unfinished; a backfill killed after a commit
 * resumes without counting twice. */
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static PGconn *db;
static struct itest_tenant t;
static char from[32]; /* the range's start: a second before the first trace */

static void ingest(const char *id, const char *output)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"id\":\"%s\",\"input\":\"q\",\"output\":\"%s\"}",
             t.project_id, id, output);
    struct itest_response r = itest_api("POST", "/v1/ingest", t.member_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
}

static void wait_stored(int want)
{
    char n[16];
    snprintf(n, sizeof(n), "%d", want);
    assert_true(itest_wait_sql(db, "SELECT count(*) FROM traces WHERE project_id = $1",
                               t.project_id, n, 30000));
}

static void add_rule(const char *name, const char *pattern)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"%s\",\"evaluator_type\":\"regex_match\","
             "\"config\":{\"pattern\":\"%s\"}}",
             t.project_id, name, pattern);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 201);
    itest_response_free(&r);
}

/* Everything a backfill may change for the project, as one text: members per cluster, the
 * clusters' counts, the threshold events, and every trace's evaluation and version. */
static char *snapshot(void)
{
    const char *p[1] = {t.project_id};
    return itest_sql(
        db,
        "SELECT concat_ws(' | ',"
        " (SELECT string_agg(c.error_type || '=' || c.count || '/' || (SELECT count(*) FROM"
        "   cluster_members m WHERE m.cluster_id = c.id), ',' ORDER BY c.error_type)"
        "   FROM failure_clusters c WHERE c.project_id = $1),"
        " (SELECT count(*) FROM outbox o WHERE o.topic = 'pl.clusters'"
        "   AND o.payload->>'project_id' = $1::text),"
        " (SELECT string_agg(id || ':' || eval_rules_version || ':' || md5(eval::text), ','"
        "   ORDER BY id) FROM traces WHERE project_id = $1))",
        1, p);
}

/* The size of the project's cluster for rule metric (its member rows; "" when none). */
static char *cluster_members(const char *metric)
{
    char type[160];
    snprintf(type, sizeof(type), "rule:%s", metric);
    const char *p[2] = {t.project_id, type};
    return itest_sql(db,
                     "SELECT c.count || '/' || (SELECT count(*) FROM cluster_members m"
                     " WHERE m.cluster_id = c.id) FROM failure_clusters c"
                     " WHERE c.project_id = $1 AND c.error_type = $2",
                     2, p);
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    time_t now = time(NULL) - 1;
    strftime(from, sizeof(from), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    /* 20 traces, stored and evaluated before any rule exists: no failures */
    for (int i = 0; i < 20; i++) {
        char id[32], out[64];
        snprintf(id, sizeof(id), "bf-%02d", i);
        snprintf(out, sizeof(out), i % 2 ? "fine answer %d" : "ERR-%d happened", i);
        ingest(id, out);
    }
    wait_stored(20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static void test_replay_evaluates_a_new_rule_once(void **state)
{
    (void)state;
    add_rule("starts_fine", "^fine");
    char *none = cluster_members("starts_fine");
    assert_string_equal(none, ""); /* the live group never re-evaluates what it stored */
    free(none);

    char name[64], out[4096];
    snprintf(name, sizeof(name), "itest-%d-a", (int)getpid());
    const char *args[] = {"replay", "--stage", "detector", "--from", from, "--name", name, NULL};
    int rc = itest_admin(args, NULL, 120000, out, sizeof(out));
    if (rc != 0)
        fail_msg("pl-admin replay: %d\n%s", rc, out);
    assert_non_null(strstr(out, "created"));
    /* exactly the ten stored traces that fail the rule form its cluster */
    char *members = cluster_members("starts_fine");
    assert_string_equal(members, "10/10");
    free(members);
    const char *p[1] = {t.project_id};
    char *raised =
        itest_sql(db,
                  "SELECT count(*) FROM traces t JOIN projects p ON p.id = t.project_id"
                  " WHERE t.project_id = $1 AND t.eval_rules_version = p.eval_rules_version"
                  " AND t.eval ? 'starts_fine'",
                  1, p);
    assert_string_equal(raised, "20");
    free(raised);

    /* the same range again, as another backfill: nothing changes */
    char *before = snapshot();
    snprintf(name, sizeof(name), "itest-%d-b", (int)getpid());
    const char *again[] = {"replay", "--stage", "detector", "--from", from, "--name", name, NULL};
    assert_int_equal(itest_admin(again, NULL, 120000, out, sizeof(out)), 0);
    char *after = snapshot();
    assert_string_equal(after, before);
    free(before);
    free(after);
    /* and so does the first one run again: it finished */
    assert_int_equal(itest_admin(args, NULL, 120000, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "finished earlier"));

    const char *status[] = {"replay", "status", "--name", name, NULL};
    assert_int_equal(itest_admin(status, NULL, 120000, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "finished"));
    assert_non_null(strstr(out, "(100.0%) lag=0"));
}

static void test_killed_backfill_resumes_without_double_counts(void **state)
{
    (void)state;
    add_rule("no_err", "^[a-z]");
    char name[64], out[4096];
    snprintf(name, sizeof(name), "itest-%d-k", (int)getpid());
    const char *args[] = {"replay", "--stage", "detector", "--from", from, "--name", name, NULL};
    /* killed (SIGKILL) right after its first batch committed, before its offsets did */
    const char *die[] = {"PL_FAILPOINT=detector_after_commit", NULL};
    assert_int_equal(itest_admin(args, die, 120000, out, sizeof(out)), -1);
    const char *p[1] = {t.project_id};
    char *committed = itest_sql(db,
                                "SELECT count(*) FROM traces WHERE project_id = $1"
                                " AND eval ? 'no_err'",
                                1, p);
    long done = strtol(committed, NULL, 10);
    free(committed);
    assert_true(done >= 1 && done <= 20); /* the batch it committed */
    char *finished = itest_sql(db, "SELECT finished_at IS NULL FROM backfills WHERE name = $1", 1,
                               (const char *const[]){name});
    assert_string_equal(finished, "t");
    free(finished);

    /* the live group consumes meanwhile: a backfill never stops it */
    ingest("live-1", "ERR-live");
    ingest("live-2", "fine live");
    wait_stored(22);
    assert_true(itest_wait_sql(db,
                               "SELECT eval ? 'no_err' FROM traces WHERE project_id = $1"
                               " AND id = 'live-1'",
                               t.project_id, "t", 10000));

    /* the same command resumes it; what it had committed is not counted again */
    assert_int_equal(itest_admin(args, NULL, 120000, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "resumed"));
    /* ten stored traces and the live one fail the rule, each counted once */
    char *members = cluster_members("no_err");
    assert_string_equal(members, "11/11");
    free(members);
    finished = itest_sql(db, "SELECT finished_at IS NOT NULL FROM backfills WHERE name = $1", 1,
                         (const char *const[]){name});
    assert_string_equal(finished, "t");
    free(finished);
}

static void test_bad_requests(void **state)
{
    (void)state;
    char out[4096];
    const char *no_from[] = {"replay", "--stage", "detector", NULL};
    assert_int_equal(itest_admin(no_from, NULL, 120000, out, sizeof(out)), 1);
    const char *other[] = {"replay", "--stage", "differ", "--from", from, NULL};
    assert_int_equal(itest_admin(other, NULL, 120000, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "only the detector"));
    const char *backwards[] = {
        "replay", "--stage", "detector", "--from", from, "--to", "2000-01-01T00:00:00Z", NULL};
    assert_int_equal(itest_admin(backwards, NULL, 120000, out, sizeof(out)), 1);
    /* a name in use for another range */
    char name[64];
    snprintf(name, sizeof(name), "itest-%d-a", (int)getpid());
    const char *clash[] = {"replay", "--stage", "detector", "--from", "2026-01-01T00:00:00Z",
                           "--name", name,      "--no-run", NULL};
    assert_int_equal(itest_admin(clash, NULL, 120000, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "another stage or range"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_evaluates_a_new_rule_once),
        cmocka_unit_test(test_killed_backfill_resumes_without_double_counts),
        cmocka_unit_test(test_bad_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
