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
    itest_response_free(&r);
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
    check("PATCH", path, t.owner_key, "{\"ab_min_delta\":\"0.1\"}", 400);
    check("PATCH", path, t.owner_key, "{\"regression_cusum_h\":0.5}", 422);
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
    /* the A/B and monitor settings (SPEC 9, 10), with their defaults until changed */
    r = call("PATCH", path, t.owner_key,
             "{\"ab_min_delta\":0.1,\"ab_alpha\":0.01,\"ab_guardrail_tolerance\":0,"
             "\"ab_holdout_size\":50,\"regression_cusum_h\":5.5,\"regression_window\":20}",
             200);
    assert_true(json_object_get_double(json_object_object_get(r.json, "ab_min_delta")) == 0.1);
    assert_true(json_object_get_double(json_object_object_get(r.json, "ab_alpha")) == 0.01);
    assert_true(json_object_get_double(json_object_object_get(r.json, "ab_guardrail_tolerance")) ==
                0);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "ab_holdout_size")), 50);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "ab_guardrail_size")), 40);
    assert_true(json_object_get_double(json_object_object_get(r.json, "regression_cusum_h")) ==
                5.5);
    assert_true(json_object_get_double(json_object_object_get(r.json, "regression_p1_drop")) ==
                0.2);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "regression_window")), 20);
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
        cmocka_unit_test(test_body_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
