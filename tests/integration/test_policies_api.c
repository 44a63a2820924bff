/* /v1/policies against the running api: defaults, every field's 400 and 422, the
 * parameters of each trigger and action type, roles, the plan gate, tenancy, paging and
 * filters, re-validation on change, archiving instead of deleting, and the audit entries. */
#include "itest.h"

#include "audit.h"
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
static struct itest_tenant t, other, starter, pro;
static char project2[37];   /* a second project of t */
static char rule1[37];      /* an eval rule of t's first project */
static char rule2[37];      /* an eval rule of project2 */
static char rule_other[37]; /* an eval rule of the other tenant */
static char owner_actor[48];

static void rule_new(const char *tenant, const char *project, char id[37])
{
    const char *p[2] = {tenant, project};
    char *v = itest_sql(db,
                        "INSERT INTO eval_rules (tenant_id, project_id, metric_name,"
                        " evaluator_type) VALUES ($1, $2, 'ok', 'error_free') RETURNING id",
                        2, p);
    snprintf(id, 37, "%s", v);
    free(v);
}

static void project_new(const char *tenant, char id[37])
{
    const char *p[1] = {tenant};
    char *v = itest_sql(db,
                        "INSERT INTO projects (tenant_id, name) VALUES ($1,"
                        " 'itest-' || gen_random_uuid()) RETURNING id",
                        1, p);
    snprintf(id, 37, "%s", v);
    free(v);
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    itest_tenant_new(db, "enterprise", &other);
    itest_tenant_new(db, "starter", &starter);
    itest_tenant_new(db, "pro", &pro);
    project_new(t.id, project2);
    rule_new(t.id, t.project_id, rule1);
    rule_new(t.id, project2, rule2);
    rule_new(other.id, other.project_id, rule_other);
    const char *p[1] = {t.id};
    char *key =
        itest_sql(db, "SELECT id FROM api_keys WHERE tenant_id = $1 AND role = 'owner'", 1, p);
    snprintf(owner_actor, sizeof(owner_actor), "key:%s", key);
    free(key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* A request that must answer status; an error must be JSON naming `names` when not NULL. */
static struct itest_response call(const char *method, const char *path, const char *key,
                                  const char *body, long status, const char *names)
{
    struct itest_response r = itest_api(method, path, key, body);
    const char *e = itest_json_str(&r, "error");
    if (r.status != status || (status >= 400 && !e) || (names && (!e || !strstr(e, names))))
        fail_msg("%s %s %.300s: expected %ld naming %s, got %ld: %.300s", method, path,
                 body ? body : "", status, names ? names : "-", r.status, r.body);
    return r;
}

static void check(const char *method, const char *path, const char *key, const char *body,
                  long status, const char *names)
{
    struct itest_response r = call(method, path, key, body, status, names);
    itest_response_free(&r);
}

/*
 * A create body for project (t's first when NULL): the required members, with the members of
 * extra (a JSON object) on top; a member whose value is the string "-" is left out. Caller
 * frees.
 */
static char *body_for(const char *project, const char *extra)
{
    json_object *b = json_object_new_object();
    json_object_object_add(b, "project_id",
                           json_object_new_string(project ? project : t.project_id));
    json_object_object_add(b, "name", json_object_new_string("p"));
    json_object_object_add(b, "trigger_type", json_object_new_string("eval_score"));
    json_object_object_add(b, "action_type", json_object_new_string("escalate"));
    json_object *e = json_tokener_parse(extra);
    if (!e)
        fail_msg("test body is not JSON: %s", extra);
    json_object_object_foreach(e, key, val)
    {
        if (json_object_is_type(val, json_type_string) &&
            strcmp(json_object_get_string(val), "-") == 0)
            json_object_object_del(b, key);
        else
            json_object_object_add(b, key, json_object_get(val));
    }
    char *s = strdup(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
    json_object_put(e);
    json_object_put(b);
    return s;
}

/* POST /v1/policies of body_for(NULL, extra) by t's owner, expecting status naming names. */
static void expect_create(const char *extra, long status, const char *names)
{
    char *body = body_for(NULL, extra);
    check("POST", "/v1/policies", t.owner_key, body, status, names);
    free(body);
}

/* Creates a policy in project (t's first when NULL); id (37 bytes) and the response. */
static struct itest_response create(const char *project, const char *extra, char id[37])
{
    char *body = body_for(project, extra);
    struct itest_response r = call("POST", "/v1/policies", t.owner_key, body, 201, NULL);
    free(body);
    snprintf(id, 37, "%s", itest_json_str(&r, "id"));
    return r;
}

/* "{"<name>":"<c repeated n times>"}" (caller frees). */
static char *long_member(const char *name, char c, size_t n)
{
    size_t len = strlen(name) + n + 16;
    char *s = malloc(len);
    assert_non_null(s);
    int k = snprintf(s, len, "{\"%s\":\"", name);
    memset(s + k, c, n);
    snprintf(s + k + n, len - (size_t)k - n, "\"}");
    return s;
}

static json_object *member(const struct itest_response *r, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(r->json, name, &v))
        fail_msg("no %s in %s", name, r->body);
    return v;
}

static long long int_of(const struct itest_response *r, const char *name)
{
    return json_object_get_int64(member(r, name));
}

/* The JSON text of member name of r (compact), for comparing objects. */
static const char *text_of(const struct itest_response *r, const char *name)
{
    json_object *v = member(r, name);
    return v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN) : "null";
}

static long long count_sql(const char *sql, const char *param)
{
    const char *p[1] = {param};
    char *v = itest_sql(db, sql, 1, p);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

static void test_create_defaults(void **state)
{
    (void)state;
    char id[37];
    struct itest_response r = create(NULL, "{\"name\":\"escalate json failures\"}", id);
    /* exactly the fields of pl_policy_json */
    static const char *const fields[] = {"id",
                                         "tenant_id",
                                         "project_id",
                                         "name",
                                         "description",
                                         "status",
                                         "trigger_type",
                                         "trigger_params",
                                         "rule_id",
                                         "action_type",
                                         "action_params",
                                         "rule_yaml",
                                         "priority",
                                         "rollout_pct",
                                         "dry_run",
                                         "max_retry_depth",
                                         "max_cascade_depth",
                                         "created_by",
                                         "created_at",
                                         "updated_at"};
    assert_int_equal(json_object_object_length(r.json), sizeof(fields) / sizeof(fields[0]));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        member(&r, fields[i]);
    assert_true(pl_uuid_valid(id));
    assert_string_equal(itest_json_str(&r, "tenant_id"), t.id);
    assert_string_equal(itest_json_str(&r, "project_id"), t.project_id);
    assert_string_equal(itest_json_str(&r, "name"), "escalate json failures");
    assert_string_equal(itest_json_str(&r, "description"), "");
    assert_string_equal(itest_json_str(&r, "status"), "draft");
    assert_string_equal(itest_json_str(&r, "trigger_type"), "eval_score");
    assert_string_equal(text_of(&r, "trigger_params"), "{}");
    assert_null(member(&r, "rule_id"));
    assert_string_equal(itest_json_str(&r, "action_type"), "escalate");
    assert_string_equal(text_of(&r, "action_params"), "{}");
    assert_null(member(&r, "rule_yaml"));
    assert_int_equal(int_of(&r, "priority"), 100);
    assert_int_equal(int_of(&r, "rollout_pct"), 0);
    assert_true(json_object_get_boolean(member(&r, "dry_run")));
    assert_int_equal(int_of(&r, "max_retry_depth"), 3);
    assert_int_equal(int_of(&r, "max_cascade_depth"), 5);
    assert_string_equal(itest_json_str(&r, "created_by"), owner_actor);
    assert_string_equal(itest_json_str(&r, "created_at"), itest_json_str(&r, "updated_at"));

    /* GET answers the same object */
    char path[128];
    snprintf(path, sizeof(path), "/v1/policies/%s", id);
    struct itest_response g = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(g.body, r.body);
    itest_response_free(&g);
    itest_response_free(&r);

    /* failure_rate: the parameters' defaults are stored with the threshold */
    r = create(NULL, "{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.25}}",
               id);
    assert_string_equal(text_of(&r, "trigger_params"),
                        "{\"window_s\":3600,\"threshold\":0.25,\"min_traces\":20}");
    itest_response_free(&r);

    /* every field given */
    char extra[1024];
    snprintf(extra, sizeof(extra),
             "{\"name\":\"json retry\",\"description\":\"retries JSON failures\","
             "\"status\":\"active\",\"trigger_type\":\"failure_rate\","
             "\"trigger_params\":{\"window_s\":600,\"threshold\":1,\"min_traces\":5},"
             "\"rule_id\":\"%s\",\"action_type\":\"fallback_model\","
             "\"action_params\":{\"model\":\"gpt-4o\"},\"rule_yaml\":\"when: x\\nthen: y\\n\","
             "\"priority\":7,\"rollout_pct\":50,\"dry_run\":false,\"max_retry_depth\":2,"
             "\"max_cascade_depth\":9}",
             rule1);
    r = create(NULL, extra, id);
    assert_string_equal(itest_json_str(&r, "description"), "retries JSON failures");
    assert_string_equal(itest_json_str(&r, "status"), "active");
    assert_string_equal(text_of(&r, "trigger_params"),
                        "{\"window_s\":600,\"threshold\":1,\"min_traces\":5}");
    assert_string_equal(itest_json_str(&r, "rule_id"), rule1);
    assert_string_equal(itest_json_str(&r, "action_type"), "fallback_model");
    assert_string_equal(text_of(&r, "action_params"), "{\"model\":\"gpt-4o\"}");
    assert_string_equal(itest_json_str(&r, "rule_yaml"), "when: x\nthen: y\n");
    assert_int_equal(int_of(&r, "priority"), 7);
    assert_int_equal(int_of(&r, "rollout_pct"), 50);
    assert_false(json_object_get_boolean(member(&r, "dry_run")));
    assert_int_equal(int_of(&r, "max_retry_depth"), 2);
    assert_int_equal(int_of(&r, "max_cascade_depth"), 9);
    itest_response_free(&r);
}

static void test_create_bad_request(void **state)
{
    (void)state;
    static const struct {
        const char *extra, *names;
    } cases[] = {
        /* required */
        {"{\"project_id\":\"-\"}", "project_id"},
        {"{\"name\":\"-\"}", "name"},
        {"{\"trigger_type\":\"-\"}", "trigger_type"},
        {"{\"action_type\":\"-\"}", "action_type"},
        /* wrong JSON types */
        {"{\"project_id\":7}", "project_id"},
        {"{\"project_id\":\"not-a-uuid\"}", "project_id"},
        {"{\"name\":7}", "name"},
        {"{\"name\":null}", "name"},
        {"{\"description\":true}", "description"},
        {"{\"status\":1}", "status"},
        {"{\"trigger_type\":null}", "trigger_type"},
        {"{\"trigger_params\":[]}", "trigger_params"},
        {"{\"trigger_params\":\"{}\"}", "trigger_params"},
        {"{\"rule_id\":5}", "rule_id"},
        {"{\"action_type\":{}}", "action_type"},
        {"{\"action_params\":\"x\"}", "action_params"},
        {"{\"action_params\":null}", "action_params"},
        {"{\"rule_yaml\":1}", "rule_yaml"},
        {"{\"priority\":\"1\"}", "priority"},
        {"{\"priority\":1.5}", "priority"},
        {"{\"rollout_pct\":\"0\"}", "rollout_pct"},
        {"{\"dry_run\":\"yes\"}", "dry_run"},
        {"{\"dry_run\":1}", "dry_run"},
        {"{\"max_retry_depth\":2.0}", "max_retry_depth"},
        {"{\"max_cascade_depth\":\"5\"}", "max_cascade_depth"},
        /* unknown, and set by the server */
        {"{\"colour\":\"red\"}", "colour"},
        {"{\"id\":\"00000000-0000-0000-0000-000000000000\"}", "id"},
        {"{\"tenant_id\":\"00000000-0000-0000-0000-000000000000\"}", "tenant_id"},
        {"{\"created_by\":\"me\"}", "created_by"},
        {"{\"created_at\":\"2026-01-01T00:00:00Z\"}", "created_at"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_create(cases[i].extra, 400, cases[i].names);
    check("POST", "/v1/policies", t.owner_key, "", 400, NULL);
    check("POST", "/v1/policies", t.owner_key, "[]", 400, NULL);
    check("POST", "/v1/policies", t.owner_key, "{\"name\":", 400, NULL);
    /* a project that is not the tenant's is not revealed */
    char *body = body_for(other.project_id, "{}");
    check("POST", "/v1/policies", t.owner_key, body, 404, "project");
    free(body);
    body = body_for("00000000-0000-0000-0000-000000000000", "{}");
    check("POST", "/v1/policies", t.owner_key, body, 404, "project");
    free(body);
}

static void test_create_ranges_and_enums(void **state)
{
    (void)state;
    static const struct {
        const char *extra, *names;
    } bad[] = {
        {"{\"name\":\"\"}", "name"},
        {"{\"priority\":-1}", "priority"},
        {"{\"priority\":10001}", "priority"},
        {"{\"rollout_pct\":-1}", "rollout_pct"},
        {"{\"rollout_pct\":101}", "rollout_pct"},
        {"{\"max_retry_depth\":0}", "max_retry_depth must be between 1 and 10"},
        {"{\"max_retry_depth\":11}", "max_retry_depth must be between 1 and 10"},
        {"{\"max_cascade_depth\":0}", "max_cascade_depth must be between 1 and 20"},
        {"{\"max_cascade_depth\":21}", "max_cascade_depth must be between 1 and 20"},
        {"{\"status\":\"deleted\"}", "status"},
        {"{\"status\":\"\"}", "status"},
        {"{\"status\":\"Active\"}", "status"},
        {"{\"trigger_type\":\"latency\"}", "trigger_type"},
        {"{\"action_type\":\"reroute\"}", "action_type"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_create(bad[i].extra, 422, bad[i].names);
    /* text PostgreSQL and C strings cannot hold is a 400 at the body's parse, the field named */
    expect_create("{\"name\":\"a\\u0000b\"}", 400, "name");
    expect_create("{\"action_params\":{\"model\":\"a\\u0000\"},\"action_type\":\"fallback_model\"}",
                  400, "action_params.model");

    /* the edges of every range are accepted */
    static const char *const good[] = {
        "{\"priority\":0}",          "{\"priority\":10000}",       "{\"rollout_pct\":0}",
        "{\"rollout_pct\":100}",     "{\"max_retry_depth\":1}",    "{\"max_retry_depth\":10}",
        "{\"max_cascade_depth\":1}", "{\"max_cascade_depth\":20}", "{\"dry_run\":false}",
        "{\"status\":\"draft\"}",    "{\"status\":\"active\"}",    "{\"status\":\"paused\"}",
        "{\"status\":\"archived\"}", "{\"description\":\"\"}",     "{\"rule_yaml\":\"\"}",
        "{\"rule_yaml\":null}",      "{\"rule_id\":null}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_create(good[i], 201, NULL);

    /* string lengths: the limit is accepted, one more is refused */
    static const struct {
        const char *name;
        size_t max;
    } lengths[] = {{"name", 200}, {"description", 2000}, {"rule_yaml", 65536}};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        char *extra = long_member(lengths[i].name, 'x', lengths[i].max);
        expect_create(extra, 201, NULL);
        free(extra);
        extra = long_member(lengths[i].name, 'x', lengths[i].max + 1);
        expect_create(extra, 422, lengths[i].name);
        free(extra);
    }

    /* rule_id: an eval rule of the same project only */
    char extra[256];
    snprintf(extra, sizeof(extra), "{\"rule_id\":\"%s\"}", rule1);
    expect_create(extra, 201, NULL);
    snprintf(extra, sizeof(extra), "{\"rule_id\":\"%s\"}", rule2); /* another project's */
    expect_create(extra, 422, "rule_id");
    snprintf(extra, sizeof(extra), "{\"rule_id\":\"%s\"}", rule_other); /* another tenant's */
    expect_create(extra, 422, "rule_id");
    expect_create("{\"rule_id\":\"00000000-0000-0000-0000-000000000000\"}", 422, "rule_id");
    expect_create("{\"rule_id\":\"nope\"}", 422, "rule_id");
    /* and in a second project, that project's rule */
    snprintf(extra, sizeof(extra), "{\"rule_id\":\"%s\"}", rule2);
    char *body = body_for(project2, extra);
    check("POST", "/v1/policies", t.owner_key, body, 201, NULL);
    free(body);
}

static void test_trigger_params(void **state)
{
    (void)state;
    static const struct {
        const char *extra;
        long status;
        const char *names;
    } cases[] = {
        /* eval_score has no parameters */
        {"{\"trigger_params\":{}}", 201, NULL},
        {"{\"trigger_params\":{\"threshold\":0.5}}", 422, "trigger_params.threshold"},
        /* failure_rate: threshold in (0, 1] required, window_s 1..86400, min_traces 1..1e6 */
        {"{\"trigger_type\":\"failure_rate\"}", 422, "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{}}", 422,
         "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0}}", 422,
         "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":-0.1}}", 422,
         "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":1.01}}", 422,
         "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":\"0.5\"}}", 422,
         "trigger_params.threshold"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":1}}", 201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":1e-9}}", 201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window_s\":0}}",
         422, "trigger_params.window_s"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window_s\":86401}}",
         422, "trigger_params.window_s"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window_s\":60.5}}",
         422, "trigger_params.window_s"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window_s\":1}}",
         201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window_s\":86400}}",
         201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"min_traces\":0}}",
         422, "trigger_params.min_traces"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"min_traces\":1000001}}",
         422, "trigger_params.min_traces"},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"min_traces\":1}}",
         201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"min_traces\":1000000}}",
         201, NULL},
        {"{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.5,"
         "\"window\":60}}",
         422, "trigger_params.window"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_create(cases[i].extra, cases[i].status, cases[i].names);
}

static void test_action_params(void **state)
{
    (void)state;
    static const struct {
        const char *extra;
        long status;
        const char *names;
    } cases[] = {
        /* retry: the trace's own messages and model, so nothing to set */
        {"{\"action_type\":\"retry\"}", 201, NULL},
        {"{\"action_type\":\"retry\",\"action_params\":{}}", 201, NULL},
        {"{\"action_type\":\"retry\",\"action_params\":{\"model\":\"gpt-4o\"}}", 422,
         "action_params.model"},
        /* fallback_model: a model of 1 to 200 characters */
        {"{\"action_type\":\"fallback_model\"}", 422, "action_params.model"},
        {"{\"action_type\":\"fallback_model\",\"action_params\":{}}", 422, "action_params.model"},
        {"{\"action_type\":\"fallback_model\",\"action_params\":{\"model\":\"\"}}", 422,
         "action_params.model"},
        {"{\"action_type\":\"fallback_model\",\"action_params\":{\"model\":5}}", 422,
         "action_params.model"},
        {"{\"action_type\":\"fallback_model\",\"action_params\":{\"model\":\"m\","
         "\"temperature\":0}}",
         422, "action_params.temperature"},
        {"{\"action_type\":\"fallback_model\",\"action_params\":{\"model\":\"gpt-4o\"}}", 201,
         NULL},
        /* prompt_modification: exactly one of append_system and version */
        {"{\"action_type\":\"prompt_modification\"}", 422, "action_params"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"append_system\":\"x\","
         "\"version\":2}}",
         422, "action_params"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"append_system\":\"\"}}",
         422, "action_params.append_system"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"append_system\":7}}", 422,
         "action_params.append_system"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"version\":0}}", 422,
         "action_params.version"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"version\":1.5}}", 422,
         "action_params.version"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"version\":\"1\"}}", 422,
         "action_params.version"},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"version\":1}}", 201, NULL},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"append_system\":"
         "\"Answer in JSON.\"}}",
         201, NULL},
        {"{\"action_type\":\"prompt_modification\",\"action_params\":{\"prefix\":\"x\"}}", 422,
         "action_params.prefix"},
        /* escalate and block take nothing */
        {"{\"action_type\":\"escalate\",\"action_params\":{}}", 201, NULL},
        {"{\"action_type\":\"escalate\",\"action_params\":{\"queue\":\"x\"}}", 422,
         "action_params.queue"},
        {"{\"action_type\":\"block\",\"action_params\":{}}", 201, NULL},
        {"{\"action_type\":\"block\",\"action_params\":{\"reason\":\"x\"}}", 422,
         "action_params.reason"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_create(cases[i].extra, cases[i].status, cases[i].names);

    /* the text lengths' edges */
    char *params = long_member("model", 'm', 200);
    char extra[70000];
    snprintf(extra, sizeof(extra), "{\"action_type\":\"fallback_model\",\"action_params\":%s}",
             params);
    expect_create(extra, 201, NULL);
    free(params);
    params = long_member("model", 'm', 201);
    snprintf(extra, sizeof(extra), "{\"action_type\":\"fallback_model\",\"action_params\":%s}",
             params);
    expect_create(extra, 422, "action_params.model");
    free(params);
    params = long_member("append_system", 's', 32768);
    snprintf(extra, sizeof(extra), "{\"action_type\":\"prompt_modification\",\"action_params\":%s}",
             params);
    expect_create(extra, 201, NULL);
    free(params);
    params = long_member("append_system", 's', 32769);
    snprintf(extra, sizeof(extra), "{\"action_type\":\"prompt_modification\",\"action_params\":%s}",
             params);
    expect_create(extra, 422, "action_params.append_system");
    free(params);
}

static void test_roles_plan_tenancy(void **state)
{
    (void)state;
    char id[37], path[128];
    struct itest_response r = create(NULL, "{\"name\":\"guarded\"}", id);
    char *before = strdup(r.body);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/policies/%s", id);

    /* any role reads; only the owner changes */
    const char *readers[] = {t.owner_key, t.member_key, t.viewer_key};
    for (size_t i = 0; i < 3; i++) {
        check("GET", path, readers[i], NULL, 200, NULL);
        check("GET", "/v1/policies", readers[i], NULL, 200, NULL);
    }
    const char *writers[] = {t.member_key, t.viewer_key};
    for (size_t i = 0; i < 2; i++) {
        char *body = body_for(NULL, "{}");
        check("POST", "/v1/policies", writers[i], body, 403, NULL);
        free(body);
        check("PATCH", path, writers[i], "{\"priority\":1}", 403, NULL);
        check("DELETE", path, writers[i], NULL, 403, NULL);
    }
    check("GET", path, NULL, NULL, 401, NULL);
    check("POST", "/v1/policies", "pl_nope", "{}", 401, NULL);

    /* the plan gate: starter and pro have no control loop, whatever the role */
    const struct itest_tenant *unpaid[] = {&starter, &pro};
    for (size_t i = 0; i < 2; i++) {
        char own[128], *body = body_for(unpaid[i]->project_id, "{}");
        snprintf(own, sizeof(own), "/v1/policies/00000000-0000-0000-0000-000000000000");
        check("GET", "/v1/policies", unpaid[i]->viewer_key, NULL, 402, "control loop");
        check("POST", "/v1/policies", unpaid[i]->owner_key, body, 402, "control loop");
        check("GET", own, unpaid[i]->owner_key, NULL, 402, NULL);
        check("PATCH", own, unpaid[i]->owner_key, "{\"priority\":1}", 402, NULL);
        check("DELETE", own, unpaid[i]->owner_key, NULL, 402, NULL);
        free(body);
    }
    assert_int_equal(count_sql("SELECT count(*) FROM policies WHERE tenant_id = $1", starter.id),
                     0);

    /* another tenant sees nothing and changes nothing */
    check("GET", path, other.owner_key, NULL, 404, "policy not found");
    check("PATCH", path, other.owner_key, "{\"priority\":1}", 404, "policy not found");
    check("DELETE", path, other.owner_key, NULL, 404, "policy not found");
    r = call("GET", "/v1/policies?limit=200", other.owner_key, NULL, 200, NULL);
    assert_null(strstr(r.body, id));
    itest_response_free(&r);
    r = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(r.body, before);
    itest_response_free(&r);
    free(before);
    check("GET", "/v1/policies/nope", t.viewer_key, NULL, 404, NULL);
    check("PATCH", "/v1/policies/nope", t.owner_key, "{\"priority\":1}", 404, NULL);
    check("DELETE", "/v1/policies/nope", t.owner_key, NULL, 404, NULL);
    check("GET", "/v1/policies/00000000-0000-0000-0000-000000000000", t.viewer_key, NULL, 404,
          NULL);
}

static void test_list(void **state)
{
    (void)state;
    char project[37], ids[5][37], query[256];
    project_new(t.id, project);
    static const char *const statuses[] = {"draft", "active", "active", "paused", "draft"};
    for (int i = 0; i < 5; i++) {
        char extra[128];
        snprintf(extra, sizeof(extra), "{\"name\":\"list %d\",\"status\":\"%s\"}", i, statuses[i]);
        struct itest_response r = create(project, extra, ids[i]);
        itest_response_free(&r);
    }
    snprintf(query, sizeof(query), "/v1/policies?project_id=%s", project);
    struct itest_response r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    json_object *items = member(&r, "items");
    assert_int_equal(json_object_array_length(items), 5);
    assert_int_equal(int_of(&r, "total"), 5);
    assert_int_equal(int_of(&r, "limit"), 50);
    assert_int_equal(int_of(&r, "offset"), 0);
    for (int i = 0; i < 5; i++) /* newest first */
        assert_string_equal(json_object_get_string(
                                json_object_object_get(json_object_array_get_idx(items, i), "id")),
                            ids[4 - i]);
    itest_response_free(&r);

    /* pages */
    snprintf(query, sizeof(query), "/v1/policies?project_id=%s&limit=2&offset=1", project);
    r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    items = member(&r, "items");
    assert_int_equal(json_object_array_length(items), 2);
    assert_int_equal(int_of(&r, "total"), 5);
    assert_int_equal(int_of(&r, "limit"), 2);
    assert_int_equal(int_of(&r, "offset"), 1);
    assert_string_equal(
        json_object_get_string(json_object_object_get(json_object_array_get_idx(items, 0), "id")),
        ids[3]);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "/v1/policies?project_id=%s&offset=5", project);
    r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    assert_int_equal(json_object_array_length(member(&r, "items")), 0);
    assert_int_equal(int_of(&r, "total"), 5);
    itest_response_free(&r);

    /* filters */
    snprintf(query, sizeof(query), "/v1/policies?project_id=%s&status=active", project);
    r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    assert_int_equal(int_of(&r, "total"), 2);
    assert_non_null(strstr(r.body, ids[1]));
    assert_non_null(strstr(r.body, ids[2]));
    itest_response_free(&r);
    snprintf(query, sizeof(query), "/v1/policies?status=paused&project_id=%s", project);
    r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    assert_int_equal(int_of(&r, "total"), 1);
    itest_response_free(&r);
    r = call("GET", "/v1/policies?limit=200", t.viewer_key, NULL, 200, NULL);
    assert_true(int_of(&r, "total") >= 5);
    assert_non_null(strstr(r.body, ids[0]));
    itest_response_free(&r);
    /* another tenant's project filters to nothing, without saying it exists */
    snprintf(query, sizeof(query), "/v1/policies?project_id=%s", other.project_id);
    r = call("GET", query, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(r.body, "{\"items\":[],\"total\":0,\"limit\":50,\"offset\":0}");
    itest_response_free(&r);

    static const struct {
        const char *query, *names;
    } bad[] = {
        {"?status=deleted", "status"}, {"?status=", "status"},  {"?project_id=nope", "project_id"},
        {"?project=x", "project"},     {"?limit=0", "limit"},   {"?limit=201", "limit"},
        {"?offset=-1", "offset"},      {"?offset=x", "offset"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(query, sizeof(query), "/v1/policies%s", bad[i].query);
        check("GET", query, t.viewer_key, NULL, 400, bad[i].names);
    }
}

static void test_patch(void **state)
{
    (void)state;
    char id[37], path[128];
    struct itest_response r = create(NULL,
                                     "{\"name\":\"fallback\",\"action_type\":\"fallback_model\","
                                     "\"action_params\":{\"model\":\"gpt-4o\"}}",
                                     id);
    char *before = strdup(r.body);
    char created_at[40], updated_at[40];
    snprintf(created_at, sizeof(created_at), "%s", itest_json_str(&r, "created_at"));
    snprintf(updated_at, sizeof(updated_at), "%s", itest_json_str(&r, "updated_at"));
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/policies/%s", id);

    static const struct {
        const char *body;
        long status;
        const char *names;
    } bad[] = {
        {"{}", 400, "no fields to change"},
        {"", 400, NULL},
        {"{\"project_id\":\"00000000-0000-0000-0000-000000000000\"}", 400, "project_id"},
        {"{\"id\":\"00000000-0000-0000-0000-000000000000\"}", 400, "id"},
        {"{\"tenant_id\":\"00000000-0000-0000-0000-000000000000\"}", 400, "tenant_id"},
        {"{\"created_by\":\"me\"}", 400, "created_by"},
        {"{\"created_at\":\"2026-01-01T00:00:00.000000Z\"}", 400, "created_at"},
        {"{\"updated_at\":\"2026-01-01T00:00:00.000000Z\"}", 400, "updated_at"},
        {"{\"colour\":1}", 400, "colour"},
        {"{\"priority\":\"3\"}", 400, "priority"},
        {"{\"dry_run\":null}", 400, "dry_run"},
        {"{\"name\":null}", 400, "name"},
        {"{\"max_retry_depth\":11}", 422, "max_retry_depth must be between 1 and 10"},
        {"{\"max_cascade_depth\":0}", 422, "max_cascade_depth must be between 1 and 20"},
        {"{\"status\":\"done\"}", 422, "status"},
        {"{\"name\":\"\"}", 422, "name"},
        /* the stored action_params are checked against the new action type */
        {"{\"action_type\":\"retry\"}", 422, "action_params.model"},
        {"{\"action_type\":\"prompt_modification\"}", 422, "action_params"},
        {"{\"action_params\":{}}", 422, "action_params.model"},
        {"{\"action_params\":{\"model\":\"\"}}", 422, "action_params.model"},
        /* and the trigger's */
        {"{\"trigger_type\":\"failure_rate\"}", 422, "trigger_params.threshold"},
        {"{\"trigger_params\":{\"threshold\":0.5}}", 422, "trigger_params.threshold"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check("PATCH", path, t.owner_key, bad[i].body, bad[i].status, bad[i].names);
    char body[256];
    snprintf(body, sizeof(body), "{\"rule_id\":\"%s\"}", rule2);
    check("PATCH", path, t.owner_key, body, 422, "rule_id");
    snprintf(body, sizeof(body), "{\"rule_id\":\"%s\"}", rule_other);
    check("PATCH", path, t.owner_key, body, 422, "rule_id");
    /* nothing refused was applied */
    r = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(r.body, before);
    itest_response_free(&r);
    free(before);

    /* the seed's examples */
    r = call("PATCH", path, t.owner_key, "{\"max_retry_depth\":2}", 200, NULL);
    assert_int_equal(int_of(&r, "max_retry_depth"), 2);
    assert_int_equal(int_of(&r, "max_cascade_depth"), 5);
    assert_string_equal(itest_json_str(&r, "created_at"), created_at);
    assert_true(strcmp(itest_json_str(&r, "updated_at"), updated_at) > 0);
    snprintf(updated_at, sizeof(updated_at), "%s", itest_json_str(&r, "updated_at"));
    itest_response_free(&r);
    r = call("PATCH", path, t.owner_key, "{\"max_cascade_depth\":2}", 200, NULL);
    assert_int_equal(int_of(&r, "max_retry_depth"), 2);
    assert_int_equal(int_of(&r, "max_cascade_depth"), 2);
    assert_true(strcmp(itest_json_str(&r, "updated_at"), updated_at) > 0);
    itest_response_free(&r);

    /* a new action type with its parameters; the other fields stay */
    r = call("PATCH", path, t.owner_key, "{\"action_type\":\"retry\",\"action_params\":{}}", 200,
             NULL);
    assert_string_equal(itest_json_str(&r, "action_type"), "retry");
    assert_string_equal(text_of(&r, "action_params"), "{}");
    assert_string_equal(itest_json_str(&r, "name"), "fallback");
    assert_string_equal(itest_json_str(&r, "created_by"), owner_actor);
    assert_string_equal(itest_json_str(&r, "project_id"), t.project_id);
    itest_response_free(&r);
    r = call("PATCH", path, t.owner_key,
             "{\"action_type\":\"prompt_modification\",\"action_params\":{\"version\":3}}", 200,
             NULL);
    assert_string_equal(text_of(&r, "action_params"), "{\"version\":3}");
    itest_response_free(&r);
    /* a new trigger with its parameters, defaults filled in */
    r = call("PATCH", path, t.owner_key,
             "{\"trigger_type\":\"failure_rate\",\"trigger_params\":{\"threshold\":0.2,"
             "\"min_traces\":50}}",
             200, NULL);
    assert_string_equal(text_of(&r, "trigger_params"),
                        "{\"window_s\":3600,\"threshold\":0.2,\"min_traces\":50}");
    itest_response_free(&r);
    /* back to eval_score: its stored failure_rate parameters do not fit */
    check("PATCH", path, t.owner_key, "{\"trigger_type\":\"eval_score\"}", 422,
          "trigger_params.window_s");
    r = call("PATCH", path, t.owner_key, "{\"trigger_type\":\"eval_score\",\"trigger_params\":{}}",
             200, NULL);
    assert_string_equal(text_of(&r, "trigger_params"), "{}");
    itest_response_free(&r);
    /* nullable fields set and cleared */
    snprintf(body, sizeof(body), "{\"rule_id\":\"%s\",\"rule_yaml\":\"a: 1\"}", rule1);
    r = call("PATCH", path, t.owner_key, body, 200, NULL);
    assert_string_equal(itest_json_str(&r, "rule_id"), rule1);
    assert_string_equal(itest_json_str(&r, "rule_yaml"), "a: 1");
    itest_response_free(&r);
    r = call("PATCH", path, t.owner_key, "{\"rule_id\":null,\"rule_yaml\":null}", 200, NULL);
    assert_null(member(&r, "rule_id"));
    assert_null(member(&r, "rule_yaml"));
    itest_response_free(&r);
    r = call("PATCH", path, t.owner_key,
             "{\"status\":\"active\",\"priority\":5,\"rollout_pct\":100,\"dry_run\":false,"
             "\"description\":\"live\",\"name\":\"renamed\"}",
             200, NULL);
    assert_string_equal(itest_json_str(&r, "status"), "active");
    assert_int_equal(int_of(&r, "priority"), 5);
    assert_int_equal(int_of(&r, "rollout_pct"), 100);
    assert_false(json_object_get_boolean(member(&r, "dry_run")));
    assert_string_equal(itest_json_str(&r, "description"), "live");
    assert_string_equal(itest_json_str(&r, "name"), "renamed");
    char *after = strdup(r.body);
    itest_response_free(&r);
    r = call("GET", path, t.viewer_key, NULL, 200, NULL); /* persisted */
    assert_string_equal(r.body, after);
    itest_response_free(&r);
    free(after);

    /* every accepted change is audited with what was asked; the refused ones are not */
    assert_int_equal(count_sql("SELECT count(*) FROM audit_log WHERE target = $1"
                               " AND action = 'policy.update'",
                               id),
                     9);
    const char *p[2] = {id, owner_actor};
    char *detail = itest_sql(db,
                             "SELECT detail::text FROM audit_log WHERE target = $1"
                             " AND action = 'policy.update' AND actor = $2 ORDER BY id LIMIT 1",
                             2, p);
    assert_string_equal(detail, "{\"max_retry_depth\": 2}");
    free(detail);
}

static void test_delete_archives(void **state)
{
    (void)state;
    char id[37], path[128];
    struct itest_response r =
        create(NULL, "{\"name\":\"to archive\",\"status\":\"active\",\"priority\":42}", id);
    char *before = strdup(r.body);
    char updated_at[40];
    snprintf(updated_at, sizeof(updated_at), "%s", itest_json_str(&r, "updated_at"));
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/policies/%s", id);

    check("DELETE", path, t.owner_key, NULL, 204, NULL);
    r = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(itest_json_str(&r, "status"), "archived");
    assert_true(strcmp(itest_json_str(&r, "updated_at"), updated_at) > 0);
    /* everything else is as it was */
    json_object *was = json_tokener_parse(before);
    json_object_object_foreach(was, key, val)
    {
        if (strcmp(key, "status") == 0 || strcmp(key, "updated_at") == 0)
            continue;
        const char *a = json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN);
        if (strcmp(a, text_of(&r, key)) != 0)
            fail_msg("%s changed by archiving: %s -> %s", key, a, text_of(&r, key));
    }
    json_object_put(was);
    free(before);
    char *archived = strdup(r.body);
    itest_response_free(&r);
    assert_int_equal(count_sql("SELECT count(*) FROM policies WHERE id = $1"
                               " AND status = 'archived' AND priority = 42",
                               id),
                     1);

    /* again: the same answer, nothing changes, no second entry */
    check("DELETE", path, t.owner_key, NULL, 204, NULL);
    r = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(r.body, archived);
    itest_response_free(&r);
    assert_int_equal(count_sql("SELECT count(*) FROM audit_log WHERE target = $1"
                               " AND action = 'policy.archive'",
                               id),
                     1);

    /* an archived policy cannot change */
    r = call("PATCH", path, t.owner_key, "{\"priority\":1}", 409, "archived");
    assert_string_equal(itest_json_str(&r, "status"), "archived");
    itest_response_free(&r);
    check("PATCH", path, t.owner_key, "{\"status\":\"active\"}", 409, "archived");
    r = call("GET", path, t.viewer_key, NULL, 200, NULL);
    assert_string_equal(r.body, archived);
    itest_response_free(&r);
    free(archived);

    /* archived ones are listed under their status */
    r = call("GET", "/v1/policies?status=archived&limit=200", t.viewer_key, NULL, 200, NULL);
    assert_non_null(strstr(r.body, id));
    itest_response_free(&r);
    check("DELETE", "/v1/policies/00000000-0000-0000-0000-000000000000", t.owner_key, NULL, 404,
          "policy not found");
}

/* An eval rule a policy names cannot be deleted from under it: 409, and both stay. */
static void test_rule_in_use_is_not_deleted(void **state)
{
    (void)state;
    char rule[37], id[37], path[128], extra[128];
    rule_new(t.id, t.project_id, rule);
    snprintf(extra, sizeof(extra), "{\"rule_id\":\"%s\"}", rule);
    struct itest_response r = create(NULL, extra, id);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/eval-rules/%s", rule);
    check("DELETE", path, t.owner_key, NULL, 409, "used by a policy");
    const char *p[1] = {rule};
    char *v = itest_sql(db, "SELECT count(*) FROM eval_rules WHERE id = $1", 1, p);
    assert_string_equal(v, "1");
    free(v);
    /* a rule no policy names is deleted as before */
    char unused[37];
    rule_new(t.id, t.project_id, unused);
    snprintf(path, sizeof(path), "/v1/eval-rules/%s", unused);
    check("DELETE", path, t.owner_key, NULL, 204, NULL);
}

static void test_audit(void **state)
{
    (void)state;
    char id[37], path[128];
    struct itest_response r = create(NULL, "{\"name\":\"audited\"}", id);
    char *created = strdup(r.body);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/policies/%s", id);
    check("PATCH", path, t.owner_key, "{\"priority\":9}", 200, NULL);
    check("DELETE", path, t.owner_key, NULL, 204, NULL);

    const char *p[1] = {id};
    char *actions = itest_sql(db,
                              "SELECT string_agg(action || ' ' || actor, ',' ORDER BY id)"
                              " FROM audit_log WHERE target = $1",
                              1, p);
    char want[256];
    snprintf(want, sizeof(want), "policy.create %s,policy.update %s,policy.archive %s", owner_actor,
             owner_actor, owner_actor);
    assert_string_equal(actions, want);
    free(actions);
    /* the creation entry records the policy as created */
    char *detail = itest_sql(db,
                             "SELECT (detail = $2::jsonb)::text FROM audit_log WHERE target = $1"
                             " AND action = 'policy.create'",
                             2, (const char *const[]){id, created});
    assert_string_equal(detail, "true");
    free(detail);
    free(created);
    /* and the tenant's chain still verifies */
    char err[256];
    if (pl_audit_verify(db, t.id, err, sizeof(err)) < 1)
        fail_msg("audit chain: %s", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_defaults),
        cmocka_unit_test(test_create_bad_request),
        cmocka_unit_test(test_create_ranges_and_enums),
        cmocka_unit_test(test_trigger_params),
        cmocka_unit_test(test_action_params),
        cmocka_unit_test(test_roles_plan_tenancy),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_delete_archives),
        cmocka_unit_test(test_rule_in_use_is_not_deleted),
        cmocka_unit_test(test_audit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
