/* /v1/eval-rules CRUD with validation: a bad config is a 422 at creation, never a crash later. */
#include "itest.h"

#include "util.h"

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
    itest_tenant_new(db, "pro", &t);
    itest_tenant_new(db, "team", &other);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static struct itest_response create(const char *key, const char *type, const char *config)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"m1\",\"evaluator_type\":\"%s\","
             "\"config\":%s}",
             t.project_id, type, config);
    return itest_api("POST", "/v1/eval-rules", key, body);
}

static void expect_create(const char *type, const char *config, long status, const char *names)
{
    struct itest_response r = create(t.member_key, type, config);
    const char *e = itest_json_str(&r, "error");
    if (r.status != status || (names && (!e || !strstr(e, names))))
        fail_msg("%s %s: expected %ld naming %s, got %ld %s", type, config, status,
                 names ? names : "-", r.status, r.body);
    itest_response_free(&r);
}

static void test_validation(void **state)
{
    (void)state;
    expect_create("nope", "{}", 422, "evaluator_type");
    expect_create("regex_match", "{}", 422, "pattern");
    expect_create("regex_match", "{\"pattern\":\"(unclosed\"}", 422, "pattern");
    expect_create("regex_match", "{\"pattern\":5}", 422, "pattern");
    expect_create("regex_match", "{\"pattern\":\"a\",\"extra\":1}", 422, "extra");
    expect_create("contains", "{}", 422, "value");
    expect_create("max_length", "{\"max\":0}", 422, "max");
    expect_create("score_threshold", "{}", 422, NULL);
    expect_create("score_threshold", "{\"min\":2,\"max\":1}", 422, NULL);
    char body[256];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"has space\","
             "\"evaluator_type\":\"error_free\"}",
             t.project_id);
    struct itest_response r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 422);
    itest_response_free(&r);
    r = itest_api("POST", "/v1/eval-rules", t.member_key, "{\"metric_name\":\"x\"}");
    assert_int_equal(r.status, 400);
    itest_response_free(&r);
    r = create(t.viewer_key, "error_free", "{}");
    assert_int_equal(r.status, 403);
    itest_response_free(&r);
    /* another tenant's project */
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"metric_name\":\"x\","
             "\"evaluator_type\":\"error_free\"}",
             other.project_id);
    r = itest_api("POST", "/v1/eval-rules", t.member_key, body);
    assert_int_equal(r.status, 404);
    itest_response_free(&r);
}

static void test_crud(void **state)
{
    (void)state;
    struct itest_response r =
        create(t.member_key, "regex_absent", "{\"pattern\":\"(?i)as an ai\",\"flags\":\"m\"}");
    if (r.status != 201)
        fail_msg("create: %ld %s", r.status, r.body);
    char id[37], path[128];
    snprintf(id, sizeof(id), "%s", itest_json_str(&r, "id"));
    assert_true(json_object_get_boolean(json_object_object_get(r.json, "enabled")));
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/eval-rules/%s", id);

    r = itest_api("GET", path, t.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "evaluator_type"), "regex_absent");
    itest_response_free(&r);
    r = itest_api("GET", path, other.viewer_key, NULL);
    assert_int_equal(r.status, 404);
    itest_response_free(&r);

    /* a change is validated as a whole rule */
    r = itest_api("PATCH", path, t.member_key, "{\"config\":{\"pattern\":\"[\"}}");
    assert_int_equal(r.status, 422);
    itest_response_free(&r);
    r = itest_api("PATCH", path, t.member_key,
                  "{\"project_id\":\"00000000-0000-0000-0000-000000000000\"}");
    assert_int_equal(r.status, 400);
    itest_response_free(&r);
    r = itest_api("PATCH", path, t.member_key, "{\"enabled\":false,\"metric_name\":\"polite\"}");
    assert_int_equal(r.status, 200);
    assert_false(json_object_get_boolean(json_object_object_get(r.json, "enabled")));
    assert_string_equal(itest_json_str(&r, "metric_name"), "polite");
    assert_string_equal(json_object_get_string(json_object_object_get(
                            json_object_object_get(r.json, "config"), "pattern")),
                        "(?i)as an ai");
    itest_response_free(&r);

    char list[160];
    snprintf(list, sizeof(list), "/v1/eval-rules?project_id=%s", t.project_id);
    r = itest_api("GET", list, t.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, id));
    itest_response_free(&r);
    r = itest_api("GET", "/v1/eval-rules", other.viewer_key, NULL);
    assert_null(strstr(r.body, id));
    itest_response_free(&r);

    r = itest_api("DELETE", path, t.member_key, NULL);
    assert_int_equal(r.status, 403); /* destructive: owner only */
    itest_response_free(&r);
    r = itest_api("DELETE", path, t.owner_key, NULL);
    assert_int_equal(r.status, 204);
    itest_response_free(&r);
    r = itest_api("GET", path, t.viewer_key, NULL);
    assert_int_equal(r.status, 404);
    itest_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_crud),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
