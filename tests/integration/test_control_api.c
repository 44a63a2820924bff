/* The kill switch over HTTP: any role reads it, only owners flip it (audited), the plan gate
 * applies, and one tenant's switch is not another's. */
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static PGconn *db;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* The switch as answered: 1 active, 0 inactive; fails on anything but a 200 {active}. */
static int switch_call(const char *method, const char *path, const char *key)
{
    struct itest_response r = itest_api(method, path, key, NULL);
    if (r.status != 200)
        fail_msg("%s %s: %ld %s", method, path, r.status, r.body);
    json_object *a;
    assert_true(json_object_object_get_ex(r.json, "active", &a));
    assert_true(json_object_is_type(a, json_type_boolean));
    int active = json_object_get_boolean(a);
    assert_int_equal(json_object_object_length(r.json), 1);
    itest_response_free(&r);
    return active;
}

static long status_of(const char *method, const char *path, const char *key)
{
    struct itest_response r = itest_api(method, path, key, NULL);
    long s = r.status;
    if (s >= 400)
        assert_non_null(itest_json_str(&r, "error"));
    itest_response_free(&r);
    return s;
}

#define GET     "/v1/control/killswitch"
#define ENABLE  "/v1/control/killswitch/enable"
#define DISABLE "/v1/control/killswitch/disable"

static void test_killswitch(void **state)
{
    (void)state;
    struct itest_tenant t, other;
    itest_tenant_new(db, "team", &t);
    itest_tenant_new(db, "enterprise", &other);
    assert_int_equal(switch_call("GET", GET, t.viewer_key), 0); /* never set: inactive */
    assert_int_equal(switch_call("POST", ENABLE, t.owner_key), 1);
    assert_int_equal(switch_call("GET", GET, t.member_key), 1);
    assert_int_equal(switch_call("POST", ENABLE, t.owner_key), 1);  /* idempotent */
    assert_int_equal(switch_call("GET", GET, other.viewer_key), 0); /* per tenant */
    assert_int_equal(switch_call("POST", DISABLE, t.owner_key), 0);
    assert_int_equal(switch_call("GET", GET, t.viewer_key), 0);
    /* every flip is audited by the owner key that asked */
    const char *p[1] = {t.id};
    char *v = itest_sql(db,
                        "SELECT string_agg(action, ',' ORDER BY id) || '|' ||"
                        " bool_and(actor LIKE 'key:%') FROM audit_log WHERE tenant_id = $1"
                        " AND action LIKE 'killswitch.%'",
                        1, p);
    assert_string_equal(v, "killswitch.enable,killswitch.enable,killswitch.disable|true");
    free(v);
}

static void test_roles_plan_and_input(void **state)
{
    (void)state;
    struct itest_tenant t, pro;
    itest_tenant_new(db, "team", &t);
    itest_tenant_new(db, "pro", &pro);
    assert_int_equal(status_of("POST", ENABLE, t.member_key), 403);
    assert_int_equal(status_of("POST", DISABLE, t.viewer_key), 403);
    assert_int_equal(status_of("GET", GET, NULL), 401);
    assert_int_equal(status_of("GET", GET, pro.owner_key), 402);
    assert_int_equal(status_of("POST", ENABLE, pro.owner_key), 402);
    assert_int_equal(status_of("GET", GET "?project_id=x", t.owner_key), 400);
    assert_int_equal(switch_call("GET", GET, t.owner_key), 0); /* nothing of the above stuck */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killswitch),
        cmocka_unit_test(test_roles_plan_and_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
