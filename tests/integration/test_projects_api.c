/* Projects: list, get, create and settings changes with every error status. */
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *db;
static struct itest_tenant t, other;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "pro", &t); /* projects need no control-loop plan */
    itest_tenant_new(db, "team", &other);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static struct itest_response call(const char *method, const char *path, const char *key,
                                  const char *body, long status)
{
    struct itest_response r = itest_api(method, path, key, body);
    if (r.status != status)
        fail_msg("%s %s %s: expected %ld, got %ld: %s", method, path, body ? body : "", status,
                 r.status, r.body);
    if (status >= 400)
        assert_non_null(itest_json_str(&r, "error"));
    return r;
}

static void check(const char *method, const char *path, const char *key, const char *body,
                  long status)
{
    struct itest_response r = call(method, path, key, body, status);
    itest_response_free(&r);
}

/* An error response whose message names the field. */
static void check_named(const char *method, const char *path, const char *key, const char *body,
                        long status, const char *field)
{
    struct itest_response r = call(method, path, key, body, status);
    if (!strstr(itest_json_str(&r, "error"), field))
        fail_msg("%s %s %s: the error \"%s\" does not name %s", method, path, body,
                 itest_json_str(&r, "error"), field);
    itest_response_free(&r);
}

static double num(const struct itest_response *r, const char *field)
{
    json_object *v;
    if (!json_object_object_get_ex(r->json, field, &v))
        fail_msg("no %s in %s", field, r->body);
    return json_object_get_double(v);
}

/* The A/B and monitor settings a project starts with (migration 0007), whether it was made by
 * POST /v1/projects or with the table's own defaults; the retired CUSUM settings are gone. */
static void expect_default_settings(const struct itest_response *r)
{
    assert_true(num(r, "ab_min_delta") == 0.05);
    assert_true(num(r, "ab_alpha") == 0.05);
    assert_true(num(r, "ab_guardrail_tolerance") == 0.03);
    assert_true(num(r, "ab_holdout_size") == 80);
    assert_true(num(r, "ab_guardrail_size") == 120);
    assert_true(num(r, "regression_min_samples") == 30);
    assert_true(num(r, "regression_alpha") == 0.01);
    assert_true(num(r, "regression_tolerance") == 0.02);
    assert_true(num(r, "regression_baseline_size") == 5000);
    assert_true(num(r, "regression_window") == 100);
    assert_true(num(r, "ship_canary_pct") == 0);
    assert_true(num(r, "ship_canary_min_samples") == 500);
    assert_true(num(r, "hitl_timeout_s") == 0); /* escalations never time out */
    assert_false(json_object_object_get_ex(r->json, "regression_p1_drop", NULL));
    assert_false(json_object_object_get_ex(r->json, "regression_cusum_h", NULL));
}

static void test_create_validation(void **state)
{
    (void)state;
    check("POST", "/v1/projects", NULL, "{\"name\":\"a\"}", 401);
    check("POST", "/v1/projects", t.viewer_key, "{\"name\":\"a\"}", 403);
    check("POST", "/v1/projects", t.member_key, "", 400);
    check("POST", "/v1/projects", t.member_key, "{}", 400);
    check("POST", "/v1/projects", t.member_key, "{\"name\":", 400);
    check("POST", "/v1/projects", t.member_key, "{\"prompt_autoship_enabled\":true}", 400);
    check("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"colour\":1}", 400);
    check("POST", "/v1/projects", t.member_key, "{\"name\":7}", 400);
    check("POST", "/v1/projects", t.member_key, "{\"name\":\"\"}", 422);
    check("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"cluster_min_size\":1}", 422);
    check("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"cluster_min_size\":\"5\"}", 400);
    check("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"auto_rollback_enabled\":1}",
          400);
    /* the new settings are checked at creation too; the retired ones are unknown */
    check_named("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"regression_alpha\":0.5}",
                422, "regression_alpha");
    check_named("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"ship_canary_pct\":100}",
                422, "ship_canary_pct");
    check_named("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"regression_cusum_h\":4}",
                400, "regression_cusum_h");
    check_named("POST", "/v1/projects", t.member_key, "{\"name\":\"a\",\"regression_p1_drop\":0.2}",
                400, "regression_p1_drop");
}

static void test_create_get_list(void **state)
{
    (void)state;
    struct itest_response r = call(
        "POST", "/v1/projects", t.member_key,
        "{\"name\":\"checkout\",\"cluster_min_size\":25,\"prompt_autoship_enabled\":true}", 201);
    char id[37];
    snprintf(id, sizeof(id), "%s", itest_json_str(&r, "id"));
    assert_string_equal(itest_json_str(&r, "name"), "checkout");
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "cluster_min_size")), 25);
    assert_true(json_object_get_boolean(json_object_object_get(r.json, "prompt_autoship_enabled")));
    assert_true(json_object_get_boolean(json_object_object_get(r.json, "auto_rollback_enabled")));
    expect_default_settings(&r);
    itest_response_free(&r);

    check("POST", "/v1/projects", t.owner_key, "{\"name\":\"checkout\"}", 409);

    /* the production environment comes with the project */
    const char *p[1] = {id};
    char *env = itest_sql(db, "SELECT name FROM environments WHERE project_id = $1", 1, p);
    assert_string_equal(env, "production");
    free(env);

    char path[128];
    snprintf(path, sizeof(path), "/v1/projects/%s", id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(itest_json_str(&r, "id"), id);
    expect_default_settings(&r);
    itest_response_free(&r);
    /* a project made with the table's defaults (pl-admin, the tests' fixtures) shows the same */
    snprintf(path, sizeof(path), "/v1/projects/%s", t.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    expect_default_settings(&r);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/projects/%s", id);
    check("GET", path, other.owner_key, NULL, 404);
    check("GET", "/v1/projects/nope", t.viewer_key, NULL, 404);

    r = call("GET", "/v1/projects?limit=200", t.viewer_key, NULL, 200);
    assert_non_null(strstr(r.body, id));
    assert_true(json_object_get_int(json_object_object_get(r.json, "total")) >= 2);
    itest_response_free(&r);
    r = call("GET", "/v1/projects?limit=200", other.viewer_key, NULL, 200);
    assert_null(strstr(r.body, id));
    itest_response_free(&r);
    check("GET", "/v1/projects?limit=0", t.viewer_key, NULL, 400);
    check("GET", "/v1/projects?page=2", t.viewer_key, NULL, 400);
}

static void test_patch(void **state)
{
    (void)state;
    struct itest_response r =
        call("POST", "/v1/projects", t.member_key, "{\"name\":\"patchme\"}", 201);
    char path[128];
    snprintf(path, sizeof(path), "/v1/projects/%s", itest_json_str(&r, "id"));
    itest_response_free(&r);

    check("PATCH", path, t.member_key, "{\"prompt_autoship_enabled\":true}", 403);
    check("PATCH", path, t.viewer_key, "{\"prompt_autoship_enabled\":true}", 403);
    check("PATCH", path, other.owner_key, "{\"prompt_autoship_enabled\":true}", 404);
    check("PATCH", path, t.owner_key, "{}", 400);
    check("PATCH", path, t.owner_key, "{\"prompt_autoship_enabled\":\"yes\"}", 400);
    check("PATCH", path, t.owner_key, "{\"cluster_min_size\":100001}", 422);
    check("PATCH", path, t.owner_key, "{\"cluster_min_size\":2.5}", 400);
    check("PATCH", path, t.owner_key, "{\"unknown\":true}", 400);
    check("PATCH", path, t.owner_key, "{\"ab_alpha\":1.5}", 422);
    /* the level of a one-sided test and a non-inferiority margin: (0, 0.5] and [0, 0.5] */
    check("PATCH", path, t.owner_key, "{\"ab_alpha\":0.6}", 422);
    check("PATCH", path, t.owner_key, "{\"ab_alpha\":0}", 422);
    check("PATCH", path, t.owner_key, "{\"ab_guardrail_tolerance\":0.75}", 422);
    check("PATCH", path, t.owner_key, "{\"ab_min_delta\":\"0.1\"}", 400);
    check("PATCH", path, t.owner_key, "{\"ab_guardrail_size\":-1}", 422);
    check("PATCH", path, t.owner_key, "{\"name\":\"checkout\"}", 409);
    check("PATCH", "/v1/projects/00000000-0000-0000-0000-000000000000", t.owner_key,
          "{\"cluster_min_size\":5}", 404);

    r = call("PATCH", path, t.owner_key,
             "{\"prompt_autoship_enabled\":true,\"auto_rollback_enabled\":false,"
             "\"cluster_min_size\":2}",
             200);
    assert_true(json_object_get_boolean(json_object_object_get(r.json, "prompt_autoship_enabled")));
    assert_false(json_object_get_boolean(json_object_object_get(r.json, "auto_rollback_enabled")));
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "cluster_min_size")), 2);
    assert_string_equal(itest_json_str(&r, "name"), "patchme");
    itest_response_free(&r);
    /* persisted, and audited */
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "cluster_min_size")), 2);
    const char *p[1] = {itest_json_str(&r, "id")};
    char *n = itest_sql(db,
                        "SELECT count(*) FROM audit_log WHERE target = $1 AND"
                        " action = 'project.update'",
                        1, p);
    assert_string_equal(n, "1");
    free(n);
    itest_response_free(&r);
    /* the A/B and monitor settings (architecture §7), with their defaults until changed */
    r = call("PATCH", path, t.owner_key,
             "{\"ab_min_delta\":0.1,\"ab_alpha\":0.01,\"ab_guardrail_tolerance\":0,"
             "\"ab_holdout_size\":50,\"regression_alpha\":0.05,\"regression_window\":20}",
             200);
    assert_true(num(&r, "ab_min_delta") == 0.1);
    assert_true(num(&r, "ab_alpha") == 0.01);
    assert_true(num(&r, "ab_guardrail_tolerance") == 0);
    assert_true(num(&r, "ab_holdout_size") == 50);
    assert_true(num(&r, "ab_guardrail_size") == 120);
    assert_true(num(&r, "regression_alpha") == 0.05);
    assert_true(num(&r, "regression_tolerance") == 0.02);
    assert_true(num(&r, "regression_baseline_size") == 5000);
    assert_true(num(&r, "regression_window") == 20);
    assert_true(num(&r, "ship_canary_pct") == 0);
    assert_true(num(&r, "ship_canary_min_samples") == 500);
    itest_response_free(&r);
}

/* The monitor's and the canary's settings (migration 0007): every bound is accepted, one step
 * past it is a 422 naming the field, a wrong type a 400; the retired CUSUM settings are
 * refused like any unknown field. */
static void test_patch_regression_and_canary_settings(void **state)
{
    (void)state;
    struct itest_response r =
        call("POST", "/v1/projects", t.member_key, "{\"name\":\"canary\"}", 201);
    char path[128];
    snprintf(path, sizeof(path), "/v1/projects/%s", itest_json_str(&r, "id"));
    itest_response_free(&r);

    static const struct {
        const char *body, *field;
        long status;
    } bad[] = {
        {"{\"regression_alpha\":0}", "regression_alpha", 422}, /* > 0: exclusive */
        {"{\"regression_alpha\":-0.01}", "regression_alpha", 422},
        {"{\"regression_alpha\":0.21}", "regression_alpha", 422},
        {"{\"regression_alpha\":1}", "regression_alpha", 422},
        {"{\"regression_alpha\":\"0.01\"}", "regression_alpha", 400},
        {"{\"regression_alpha\":null}", "regression_alpha", 400},
        {"{\"regression_tolerance\":-0.1}", "regression_tolerance", 422},
        {"{\"regression_tolerance\":0.51}", "regression_tolerance", 422},
        {"{\"regression_tolerance\":true}", "regression_tolerance", 400},
        {"{\"regression_baseline_size\":9}", "regression_baseline_size", 422},
        {"{\"regression_baseline_size\":1000001}", "regression_baseline_size", 422},
        {"{\"regression_baseline_size\":100.5}", "regression_baseline_size", 400},
        {"{\"regression_baseline_size\":\"5000\"}", "regression_baseline_size", 400},
        {"{\"ship_canary_pct\":-1}", "ship_canary_pct", 422},
        {"{\"ship_canary_pct\":100}", "ship_canary_pct", 422},
        {"{\"ship_canary_pct\":10.5}", "ship_canary_pct", 400},
        {"{\"ship_canary_pct\":\"10\"}", "ship_canary_pct", 400},
        {"{\"ship_canary_min_samples\":9}", "ship_canary_min_samples", 422},
        {"{\"ship_canary_min_samples\":1000001}", "ship_canary_min_samples", 422},
        {"{\"ship_canary_min_samples\":[500]}", "ship_canary_min_samples", 400},
        /* retired with the CUSUM monitor: unknown fields now, whatever their value */
        {"{\"regression_p1_drop\":0.2}", "regression_p1_drop", 400},
        {"{\"regression_cusum_h\":4}", "regression_cusum_h", 400},
        {"{\"regression_cusum_h\":0.5}", "regression_cusum_h", 400},
        /* a wrong type elsewhere in the body wins over a range */
        {"{\"regression_alpha\":0.5,\"regression_window\":\"x\"}", "regression_window", 400},
        {"{\"ship_canary_pct\":5,\"regression_cusum_h\":4}", "regression_cusum_h", 400},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_named("PATCH", path, t.owner_key, bad[i].body, bad[i].status, bad[i].field);
    /* nothing of the refused bodies was applied */
    r = call("GET", path, t.viewer_key, NULL, 200);
    expect_default_settings(&r);
    itest_response_free(&r);

    /* the upper bounds */
    r = call("PATCH", path, t.owner_key,
             "{\"regression_alpha\":0.2,\"regression_tolerance\":0.5,"
             "\"regression_baseline_size\":1000000,\"ship_canary_pct\":99,"
             "\"ship_canary_min_samples\":1000000}",
             200);
    assert_true(num(&r, "regression_alpha") == 0.2);
    assert_true(num(&r, "regression_tolerance") == 0.5);
    assert_true(num(&r, "regression_baseline_size") == 1000000);
    assert_true(num(&r, "ship_canary_pct") == 99);
    assert_true(num(&r, "ship_canary_min_samples") == 1000000);
    itest_response_free(&r);
    /* the lower bounds (regression_alpha's is open: any positive value will do) */
    r = call("PATCH", path, t.owner_key,
             "{\"regression_alpha\":1e-300,\"regression_tolerance\":0,"
             "\"regression_baseline_size\":10,\"ship_canary_pct\":0,"
             "\"ship_canary_min_samples\":10}",
             200);
    assert_true(num(&r, "regression_alpha") == 1e-300);
    assert_true(num(&r, "regression_tolerance") == 0);
    assert_true(num(&r, "regression_baseline_size") == 10);
    assert_true(num(&r, "ship_canary_pct") == 0);
    assert_true(num(&r, "ship_canary_min_samples") == 10);
    itest_response_free(&r);
    /* typical values, persisted */
    r = call("PATCH", path, t.owner_key,
             "{\"regression_alpha\":0.05,\"regression_tolerance\":0.03,"
             "\"regression_baseline_size\":2000,\"ship_canary_pct\":10,"
             "\"ship_canary_min_samples\":300}",
             200);
    itest_response_free(&r);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_true(num(&r, "regression_alpha") == 0.05);
    assert_true(num(&r, "regression_tolerance") == 0.03);
    assert_true(num(&r, "regression_baseline_size") == 2000);
    assert_true(num(&r, "ship_canary_pct") == 10);
    assert_true(num(&r, "ship_canary_min_samples") == 300);
    assert_true(num(&r, "regression_window") == 100); /* untouched */
    itest_response_free(&r);
}

/* How long an escalation may wait in the HITL queue (migration 0009): 0 (never) to 30 days,
 * at creation and by a change. */
static void test_hitl_timeout(void **state)
{
    (void)state;
    struct itest_response r = call("POST", "/v1/projects", t.member_key,
                                   "{\"name\":\"hitl\",\"hitl_timeout_s\":600}", 201);
    assert_true(num(&r, "hitl_timeout_s") == 600);
    char path[128];
    snprintf(path, sizeof(path), "/v1/projects/%s", itest_json_str(&r, "id"));
    itest_response_free(&r);
    check_named("POST", "/v1/projects", t.member_key,
                "{\"name\":\"hitl2\",\"hitl_timeout_s\":2592001}", 422, "hitl_timeout_s");

    static const struct {
        const char *body;
        long status;
    } bad[] = {
        {"{\"hitl_timeout_s\":-1}", 422},    {"{\"hitl_timeout_s\":2592001}", 422},
        {"{\"hitl_timeout_s\":\"x\"}", 400}, {"{\"hitl_timeout_s\":\"600\"}", 400},
        {"{\"hitl_timeout_s\":60.5}", 400},  {"{\"hitl_timeout_s\":null}", 400},
        {"{\"hitl_timeout_s\":true}", 400},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_named("PATCH", path, t.owner_key, bad[i].body, bad[i].status, "hitl_timeout_s");
    check("PATCH", path, t.member_key, "{\"hitl_timeout_s\":0}", 403);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_true(num(&r, "hitl_timeout_s") == 600); /* nothing refused was applied */
    itest_response_free(&r);

    r = call("PATCH", path, t.owner_key, "{\"hitl_timeout_s\":2592000}", 200);
    assert_true(num(&r, "hitl_timeout_s") == 2592000);
    itest_response_free(&r);
    r = call("PATCH", path, t.owner_key, "{\"hitl_timeout_s\":0}", 200);
    assert_true(num(&r, "hitl_timeout_s") == 0);
    itest_response_free(&r);
    /* persisted, and the other settings untouched */
    r = call("PATCH", path, t.owner_key, "{\"hitl_timeout_s\":3600}", 200);
    itest_response_free(&r);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_true(num(&r, "hitl_timeout_s") == 3600);
    assert_true(num(&r, "ship_canary_pct") == 0);
    assert_true(num(&r, "cluster_min_size") == 10);
    itest_response_free(&r);
}

static void test_body_limit(void **state)
{
    (void)state;
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n + 32);
    memset(big, ' ', n);
    memcpy(big, "{\"name\":\"x\"", 11);
    memcpy(big + n - 1, "}", 2);
    check("POST", "/v1/projects", t.member_key, big, 413);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_validation),
        cmocka_unit_test(test_create_get_list),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_patch_regression_and_canary_settings),
        cmocka_unit_test(test_hitl_timeout),
        cmocka_unit_test(test_body_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
