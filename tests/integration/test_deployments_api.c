/* The seed's deployment endpoints against the running api: every status code, tenant
 * isolation, role allowlists, and the transitions' events and audit entries. */
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
static struct itest_tenant team, other, starter;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &team);
    itest_tenant_new(db, "enterprise", &other);
    itest_tenant_new(db, "starter", &starter);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static void expect_status(const char *method, const char *path, const char *key, const char *body,
                          long status)
{
    struct itest_response r = itest_api(method, path, key, body);
    if (r.status != status)
        fail_msg("%s %s: expected %ld, got %ld: %s", method, path, status, r.status, r.body);
    if (status >= 400) {
        /* every error is JSON {"error": "..."} */
        assert_non_null(itest_json_str(&r, "error"));
    }
    itest_response_free(&r);
}

static void test_list_auth_and_plan(void **state)
{
    (void)state;
    expect_status("GET", "/v1/prompts/deployments", NULL, NULL, 401);
    expect_status("GET", "/v1/prompts/deployments", "pl_nope", NULL, 401);
    expect_status("GET", "/v1/prompts/deployments",
                  "pl_000000000000000000000000000000000000000000000000", NULL, 401);
    expect_status("GET", "/v1/prompts/deployments", starter.owner_key, NULL, 402);
    expect_status("GET", "/v1/prompts/deployments", team.viewer_key, NULL, 200);
    expect_status("GET", "/v1/prompts/deployments", team.member_key, NULL, 200);
}

static void test_list_empty_shape(void **state)
{
    (void)state;
    struct itest_response r = itest_api("GET", "/v1/prompts/deployments", other.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"items\":[],\"total\":0,\"limit\":50,\"offset\":0}");
    itest_response_free(&r);
}

static void test_list_bad_parameters(void **state)
{
    (void)state;
    static const struct {
        const char *query;
        const char *names;
    } cases[] = {
        {"?limit=0", "limit"},     {"?limit=201", "limit"},
        {"?limit=abc", "limit"},   {"?limit=", "limit"},
        {"?limit=1.5", "limit"},   {"?offset=-1", "offset"},
        {"?offset=x", "offset"},   {"?status=done", "status"},
        {"?status=", "status"},    {"?project_id=1", "project_id"},
        {"?colour=red", "colour"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/prompts/deployments%s", cases[i].query);
        struct itest_response r = itest_api("GET", path, team.viewer_key, NULL);
        if (r.status != 400 || !strstr(itest_json_str(&r, "error"), cases[i].names))
            fail_msg("%s: expected 400 naming %s, got %ld %s", path, cases[i].names, r.status,
                     r.body);
        itest_response_free(&r);
    }
}

static void test_list_filters_and_pages(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char ids[5][37];
    const char *statuses[5] = {"proposed", "ab_passed", "proposed", "shipped", "proposed"};
    for (int i = 0; i < 5; i++)
        itest_deployment_new(db, &t, statuses[i], ids[i]);
    /* a second project of the same tenant */
    const char *p[1] = {t.id};
    char *proj2 = itest_sql(db,
                            "INSERT INTO projects (tenant_id, name) VALUES ($1, 'second')"
                            " RETURNING id",
                            1, p);
    const char *p2[2] = {t.id, proj2};
    char *newest = itest_sql(db,
                             "INSERT INTO prompt_deployments (tenant_id, project_id,"
                             " cluster_signature, status, current_prompt, proposed_prompt)"
                             " VALUES ($1, $2, 'sha256:x', 'proposed', 'a', 'b') RETURNING id",
                             2, p2);

    struct itest_response r = itest_api("GET", "/v1/prompts/deployments", t.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "total")), 6);
    assert_int_equal(json_object_array_length(json_object_object_get(r.json, "items")), 6);
    itest_response_free(&r);

    r = itest_api("GET", "/v1/prompts/deployments?status=proposed", t.viewer_key, NULL);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "total")), 4);
    json_object *items = json_object_object_get(r.json, "items");
    for (size_t i = 0; i < json_object_array_length(items); i++)
        assert_string_equal(json_object_get_string(json_object_object_get(
                                json_object_array_get_idx(items, i), "status")),
                            "proposed");
    itest_response_free(&r);

    char path[256];
    snprintf(path, sizeof(path), "/v1/prompts/deployments?project_id=%s&status=proposed", proj2);
    r = itest_api("GET", path, t.viewer_key, NULL);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "total")), 1);
    itest_response_free(&r);

    /* pages: limit 2 walks all 6 newest first with no repeats */
    char seen[6][37];
    int nseen = 0;
    for (int off = 0; off < 6; off += 2) {
        snprintf(path, sizeof(path), "/v1/prompts/deployments?limit=2&offset=%d", off);
        r = itest_api("GET", path, t.viewer_key, NULL);
        assert_int_equal(r.status, 200);
        assert_int_equal(json_object_get_int(json_object_object_get(r.json, "limit")), 2);
        assert_int_equal(json_object_get_int(json_object_object_get(r.json, "offset")), off);
        assert_int_equal(json_object_get_int(json_object_object_get(r.json, "total")), 6);
        items = json_object_object_get(r.json, "items");
        assert_int_equal(json_object_array_length(items), 2);
        for (int i = 0; i < 2; i++) {
            const char *id = json_object_get_string(
                json_object_object_get(json_object_array_get_idx(items, (size_t)i), "id"));
            for (int k = 0; k < nseen; k++)
                assert_string_not_equal(seen[k], id);
            snprintf(seen[nseen++], 37, "%s", id);
        }
        itest_response_free(&r);
    }
    /* newest first: the last inserted comes first, then the one before it */
    assert_string_equal(seen[0], newest);
    assert_string_equal(seen[1], ids[4]);
    free(newest);
    r = itest_api("GET", "/v1/prompts/deployments?offset=100", t.viewer_key, NULL);
    assert_int_equal(json_object_array_length(json_object_object_get(r.json, "items")), 0);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "total")), 6);
    itest_response_free(&r);
    free(proj2);
}

static void test_get_and_isolation(void **state)
{
    (void)state;
    char id[37], path[128];
    itest_deployment_new(db, &team, "proposed", id);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s", id);
    struct itest_response r = itest_api("GET", path, team.viewer_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "id"), id);
    assert_string_equal(itest_json_str(&r, "status"), "proposed");
    assert_string_equal(itest_json_str(&r, "tenant_id"), team.id);
    /* the seed's required fields are all there */
    static const char *const required[] = {"id",
                                           "tenant_id",
                                           "project_id",
                                           "cluster_signature",
                                           "status",
                                           "current_prompt",
                                           "proposed_prompt",
                                           "created_at",
                                           "updated_at",
                                           NULL};
    for (const char *const *f = required; *f; f++)
        assert_true(json_object_object_get_ex(r.json, *f, NULL));
    itest_response_free(&r);

    /* another tenant: 404, never 403, and absent from its lists */
    expect_status("GET", path, other.owner_key, NULL, 404);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", id);
    expect_status("POST", path, other.owner_key, NULL, 404);
    r = itest_api("GET", "/v1/prompts/deployments?limit=200", other.viewer_key, NULL);
    assert_null(strstr(r.body, id));
    itest_response_free(&r);

    expect_status("GET", "/v1/prompts/deployments/not-a-uuid", team.viewer_key, NULL, 404);
    expect_status("GET", "/v1/prompts/deployments/00000000-0000-0000-0000-000000000000",
                  team.viewer_key, NULL, 404);
    expect_status("POST", "/v1/prompts/deployments/xyz/reject", team.owner_key, NULL, 404);
    expect_status("DELETE", path, team.owner_key, NULL, 405);
}

static void test_roles_on_mutations(void **state)
{
    (void)state;
    char id[37], path[256];
    itest_deployment_new(db, &team, "ab_passed", id);
    static const char *const actions[] = {"approve", "reject", "rollback"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/%s", id, actions[i]);
        expect_status("POST", path, team.viewer_key, NULL, 403);
        expect_status("POST", path, team.member_key, NULL, 403);
        expect_status("POST", path, starter.owner_key, NULL, 402);
        expect_status("POST", path, NULL, NULL, 401);
    }
    /* nothing changed */
    const char *p[1] = {id};
    char *st = itest_sql(db, "SELECT status FROM prompt_deployments WHERE id = $1", 1, p);
    assert_string_equal(st, "ab_passed");
    free(st);
}

static void test_approve_reject_rollback(void **state)
{
    (void)state;
    char a[37], b[37], path[256];
    itest_deployment_new(db, &team, "ab_passed", a);
    itest_deployment_new(db, &team, "ab_running", b);

    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", a);
    struct itest_response r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 409);
    assert_string_equal(itest_json_str(&r, "status"), "ab_passed");
    itest_response_free(&r);

    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", a);
    expect_status("POST", path, team.owner_key, "{\"x\":1}", 400);
    expect_status("POST", path, team.owner_key, "not json", 400);
    r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "shipped");
    assert_non_null(itest_json_str(&r, "shipped_at"));
    assert_non_null(itest_json_str(&r, "approved_by"));
    itest_response_free(&r);
    r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 409);
    assert_string_equal(itest_json_str(&r, "status"), "shipped");
    itest_response_free(&r);

    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", a);
    r = itest_api("POST", path, team.owner_key, "{}");
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "rolled_back");
    assert_non_null(itest_json_str(&r, "rolled_back_at"));
    itest_response_free(&r);

    /* reject: reason validated and stored; approve of ab_running is illegal */
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", b);
    expect_status("POST", path, team.owner_key, NULL, 409);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/reject", b);
    expect_status("POST", path, team.owner_key, "{\"reason\":5}", 400);
    expect_status("POST", path, team.owner_key, "{\"why\":\"x\"}", 400);
    expect_status("POST", path, team.owner_key, "[1]", 400);
    char *big = malloc(1200 + 20);
    snprintf(big, 1220, "{\"reason\":\"%01100d\"}", 0);
    expect_status("POST", path, team.owner_key, big, 422);
    free(big);
    r = itest_api("POST", path, team.owner_key,
                  "{\"reason\":\"too verbose for our \\\"voice\\\"\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "rejected");
    assert_string_equal(itest_json_str(&r, "rejection_reason"), "too verbose for our \"voice\"");
    itest_response_free(&r);
    expect_status("POST", path, team.owner_key, NULL, 409);

    /* each transition yielded exactly one event, in order, on pl.deployments */
    const char *keys[2] = {a, b};
    /* once the relay marked their outbox rows published, the topic holds all it ever will */
    assert_true(itest_outbox_drained(db, keys, 2, 20000));
    json_object *events = itest_kafka_read("pl.deployments", keys, 2, 20000);
    assert_int_equal(json_object_array_length(events), 3);
    int a_events = 0;
    for (size_t i = 0; i < 3; i++) {
        json_object *e = json_object_array_get_idx(events, i);
        const char *dep = json_object_get_string(json_object_object_get(e, "deployment_id"));
        const char *from = json_object_get_string(json_object_object_get(e, "from"));
        const char *to = json_object_get_string(json_object_object_get(e, "to"));
        assert_int_equal(json_object_get_int(json_object_object_get(e, "schema_version")), 1);
        assert_non_null(json_object_get_string(json_object_object_get(e, "event_id")));
        if (strcmp(dep, a) == 0) {
            a_events++;
            if (a_events == 1) {
                assert_string_equal(from, "ab_passed");
                assert_string_equal(to, "shipped");
            } else {
                assert_string_equal(from, "shipped");
                assert_string_equal(to, "rolled_back");
            }
        } else {
            assert_string_equal(from, "ab_running");
            assert_string_equal(to, "rejected");
        }
    }
    assert_int_equal(a_events, 2);
    json_object_put(events);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_auth_and_plan),
        cmocka_unit_test(test_list_empty_shape),
        cmocka_unit_test(test_list_bad_parameters),
        cmocka_unit_test(test_list_filters_and_pages),
        cmocka_unit_test(test_get_and_isolation),
        cmocka_unit_test(test_roles_on_mutations),
        cmocka_unit_test(test_approve_reject_rollback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
