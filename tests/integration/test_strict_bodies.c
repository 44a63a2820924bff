/* Bodies the database or C strings cannot hold are refused at the door, on every endpoint
 * that reads one: \u0000, invalid UTF-8 (overlong, a lone surrogate, past U+10FFFF), numbers
 * out of range and repeated keys are 400 naming the place, never a 500 and never stored in
 * part; a reason's length counts characters. */
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
static struct itest_tenant t;
static char prompt_id[37], deployment[37];

static void expect(const char *method, const char *path, const char *key, const char *body,
                   long status, const char *names)
{
    struct itest_response r = itest_api(method, path, key, body);
    const char *e = itest_json_str(&r, "error");
    if (r.status != status || (names && (!e || !strstr(e, names))))
        fail_msg("%s %s %s: expected %ld naming %s, got %ld: %s", method, path, body, status,
                 names ? names : "-", r.status, r.body);
    itest_response_free(&r);
}

static void test_every_body_is_strict(void **state)
{
    (void)state;
    char project_path[96], versions_path[96], reject_path[128];
    snprintf(project_path, sizeof(project_path), "/v1/projects/%s", t.project_id);
    snprintf(versions_path, sizeof(versions_path), "/v1/prompts/%s/versions", prompt_id);
    snprintf(reject_path, sizeof(reject_path), "/v1/prompts/deployments/%s/reject", deployment);
    static const char *const bad_text[] = {"a\\u0000b", "\xC0\xAF", "\xED\xA0\x80",
                                           "\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad_text) / sizeof(bad_text[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"name\":\"%s\"}", bad_text[i]);
        expect("POST", "/v1/projects", t.owner_key, body, 400, "name");
        expect("PATCH", project_path, t.owner_key, body, 400, "name");
        snprintf(body, sizeof(body),
                 "{\"project_id\":\"%s\",\"metric_name\":\"m%s\",\"evaluator_type\":"
                 "\"regex_match\",\"config\":{\"pattern\":\"x\"}}",
                 t.project_id, bad_text[i]);
        expect("POST", "/v1/eval-rules", t.member_key, body, 400, "metric_name");
        snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", bad_text[i]);
        expect("POST", reject_path, t.owner_key, body, 400, "reason");
        snprintf(body, sizeof(body),
                 "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"{{v}}\"}],"
                 "\"variables\":{\"secret%ssuffix\":\"\"}}}",
                 bad_text[i]);
        expect("POST", versions_path, t.member_key, body, 400, "manifest.variables");
    }
    expect("PATCH", project_path, t.owner_key, "{\"ab_alpha\":1e-400}", 400, "ab_alpha");
    expect("PATCH", project_path, t.owner_key, "{\"ab_alpha\":1e400}", 400, "ab_alpha");
    expect("PATCH", project_path, t.owner_key, "{\"cluster_min_size\":1e2,\"cluster_min_size\":5}",
           400, "cluster_min_size\" appears twice");
    expect("POST", reject_path, t.owner_key, "{\"reason\":\"a\",\"reason\":\"b\"}", 400,
           "\"reason\" appears twice");
    /* nothing of any of them was stored */
    const char *p[1] = {t.project_id};
    char *name = itest_sql(db, "SELECT name FROM projects WHERE id = $1", 1, p);
    assert_string_equal(name, "itest");
    free(name);
    const char *d[1] = {deployment};
    char *status = itest_sql(db, "SELECT status FROM prompt_deployments WHERE id = $1", 1, d);
    assert_string_equal(status, "proposed");
    free(status);
    /* a reason of 1,000 characters of two bytes each fits the limit of 1,000 */
    size_t cap = 16 + 2 * 1000;
    char *body = malloc(cap);
    size_t len = (size_t)snprintf(body, cap, "{\"reason\":\"");
    for (int i = 0; i < 1000; i++)
        len += (size_t)snprintf(body + len, cap - len, "\xC3\xA9");
    snprintf(body + len, cap - len, "\"}");
    expect("POST", reject_path, t.owner_key, body, 200, NULL);
    free(body);
}

/* An id with %00 and more after it is another id, not a match cut short at the NUL. */
static void test_nul_in_path_and_query(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s", deployment);
    expect("GET", path, t.viewer_key, NULL, 200, NULL);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s%%00junk", deployment);
    expect("GET", path, t.viewer_key, NULL, 404, "deployment not found");
    snprintf(path, sizeof(path), "/v1/prompts/deployments?project_id=%s%%00junk", t.project_id);
    expect("GET", path, t.viewer_key, NULL, 400, "project_id");
    /* other escapes are still decoded */
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%%%02x%s", deployment[0], deployment + 1);
    expect("GET", path, t.viewer_key, NULL, 200, NULL);
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    const char *p[1] = {t.project_id};
    free(itest_sql(db, "UPDATE projects SET name = 'itest' WHERE id = $1 RETURNING 1", 1, p));
    struct itest_cluster c;
    itest_cluster_new(db, &t, "strict", "You are a bot.", 1, 0, &c);
    snprintf(prompt_id, sizeof(prompt_id), "%s", c.prompt_id);
    itest_deployment_new(db, &t, "proposed", deployment);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_body_is_strict),
        cmocka_unit_test(test_nul_in_path_and_query),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
