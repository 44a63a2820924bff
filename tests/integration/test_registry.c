/* The registry API against the running api: prompts, immutable versions, environments and
 * their deployment history, the Adaline (GET /v2/deployments) and TrueFoundry
 * (/api/ml/v1/prompt-versions) surfaces — every status code, Adaline's and TrueFoundry's shapes,
 * and tenant isolation on every read. */
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
static struct itest_tenant other; /* a second tenant: sees none of the first's registry */

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &other);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* The request must answer status; an error must be JSON {"error"} naming `names` (if set). */
static struct itest_response call_names(const char *method, const char *path, const char *key,
                                        const char *body, long status, const char *names)
{
    struct itest_response r = itest_api(method, path, key, body);
    const char *e = itest_json_str(&r, "error");
    if (r.status != status || (status >= 400 && !e) || (names && (!e || !strstr(e, names))))
        fail_msg("%s %s %.300s: expected %ld%s%s, got %ld: %.500s", method, path, body ? body : "",
                 status, names ? " naming " : "", names ? names : "", r.status, r.body);
    return r;
}

static struct itest_response call(const char *method, const char *path, const char *key,
                                  const char *body, long status)
{
    return call_names(method, path, key, body, status, NULL);
}

static void check(const char *method, const char *path, const char *key, const char *body,
                  long status, const char *names)
{
    struct itest_response r = call_names(method, path, key, body, status, names);
    itest_response_free(&r);
}

/* A member by path: "a.b[2].c" (NULL when absent). */
static json_object *jp(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        if (*tok && !json_object_object_get_ex(o, tok, &o))
            return NULL;
        while (br && o) {
            long idx = strtol(br + 1, &br, 10);
            if (!json_object_is_type(o, json_type_array) ||
                (size_t)idx >= json_object_array_length(o))
                return NULL;
            o = json_object_array_get_idx(o, (size_t)idx);
            br = strchr(br, '[');
        }
    }
    return o;
}

static const char *js(const struct itest_response *r, const char *path)
{
    json_object *v = jp(r->json, path);
    if (!v || !json_object_is_type(v, json_type_string))
        fail_msg("%s: not a string in %.500s", path, r->body);
    return json_object_get_string(v);
}

static long long ji(const struct itest_response *r, const char *path)
{
    json_object *v = jp(r->json, path);
    if (!v || !json_object_is_type(v, json_type_int))
        fail_msg("%s: not an integer in %.500s", path, r->body);
    return json_object_get_int64(v);
}

static size_t jn(const struct itest_response *r, const char *path)
{
    json_object *v = jp(r->json, path);
    if (!v || !json_object_is_type(v, json_type_array))
        fail_msg("%s: not an array in %.500s", path, r->body);
    return json_object_array_length(v);
}

/* A manifest whose system message is `system` (full: settings, tools and variables). */
static void manifest(char *buf, size_t bufsz, const char *system)
{
    snprintf(buf, bufsz,
             "{\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
             "{\"role\":\"user\",\"content\":\"{{question}} for {{customer}}\",\"name\":\"u\"}],"
             "\"variables\":{\"question\":\"\",\"customer\":\"x\"},"
             "\"model_configuration\":{\"provider\":\"openai\",\"model\":\"gpt-4o\","
             "\"parameters\":{\"temperature\":0.7,\"max_tokens\":1000,\"top_p\":0.9,"
             "\"presence_penalty\":0.1,\"stop\":[\"END\"]},\"extra_parameters\":{}},"
             "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\","
             "\"description\":\"Finds an order\",\"parameters\":{\"type\":\"object\"},"
             "\"strict\":true}}],"
             "\"response_format\":{\"type\":\"text\"},\"metadata\":{\"team\":\"support\"},"
             "\"description\":\"support bot\"}",
             system);
}

/* Creates prompt `name` in t's project (with version 1 live in production when system is not
 * NULL); fills its id. */
static void prompt_new(const struct itest_tenant *t, const char *name, const char *system,
                       char id[37])
{
    char m[2048], body[2600];
    manifest(m, sizeof(m), system ? system : "");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"%s\"%s%s}", t->project_id, name,
             system ? ",\"manifest\":" : "", system ? m : "");
    struct itest_response r = call("POST", "/v1/prompts", t->member_key, body, 201);
    snprintf(id, 37, "%s", js(&r, "id"));
    itest_response_free(&r);
}

/* Adds a version (system message `system`, optional alias); fills its id, returns its number. */
static long long version_new(const struct itest_tenant *t, const char *prompt, const char *system,
                             const char *alias, char id[37])
{
    char m[2048], body[2600], path[128];
    manifest(m, sizeof(m), system);
    snprintf(body, sizeof(body), "{\"manifest\":%s%s%s%s}", m, alias ? ",\"version_alias\":\"" : "",
             alias ? alias : "", alias ? "\"" : "");
    snprintf(path, sizeof(path), "/v1/prompts/%s/versions", prompt);
    struct itest_response r = call("POST", path, t->member_key, body, 201);
    snprintf(id, 37, "%s", js(&r, "id"));
    long long v = ji(&r, "version");
    itest_response_free(&r);
    return v;
}

/* The project's production environment id, through the API. */
static void production_env(const struct itest_tenant *t, char id[37])
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", t->project_id);
    struct itest_response r = call("GET", path, t->viewer_key, NULL, 200);
    assert_string_equal(js(&r, "items[0].name"), "production");
    snprintf(id, 37, "%s", js(&r, "items[0].id"));
    itest_response_free(&r);
}

/* Makes a version live (owner); fills the new deployment row's id. */
static void deploy(const struct itest_tenant *t, const char *env, const char *prompt,
                   const char *version, char id[37])
{
    char path[128], body[160];
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments", env);
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", prompt, version);
    struct itest_response r = call("POST", path, t->owner_key, body, 201);
    snprintf(id, 37, "%s", js(&r, "id"));
    assert_string_equal(js(&r, "version_id"), version);
    itest_response_free(&r);
}

/* The number of audit entries of the tenant with action and target. */
static int audit_count(const struct itest_tenant *t, const char *action, const char *target)
{
    const char *p[3] = {t->id, action, target};
    char *n = itest_sql(db,
                        "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = $2"
                        " AND target = $3",
                        3, p);
    int v = (int)strtol(n, NULL, 10);
    free(n);
    return v;
}

static void test_prompts_create_errors(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "starter", &t); /* the registry is on every plan */
    char body[512];
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a\"}", t.project_id);
    check("POST", "/v1/prompts", NULL, body, 401, NULL);
    check("POST", "/v1/prompts", "pl_nope", body, 401, NULL);
    check("POST", "/v1/prompts", t.viewer_key, body, 403, NULL);
    check("POST", "/v1/prompts", t.member_key, "", 400, NULL);
    check("POST", "/v1/prompts", t.member_key, "[]", 400, NULL);
    check("POST", "/v1/prompts", t.member_key, "{\"name\":", 400, NULL);
    check("POST", "/v1/prompts", t.member_key, "{\"name\":\"a\"}", 400, "project_id");
    check("POST", "/v1/prompts", t.member_key, "{\"project_id\":\"x\",\"name\":\"a\"}", 400,
          "project_id");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\"}", t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 400, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":5}", t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 400, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a\",\"colour\":1}",
             t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 400, "colour");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a\",\"manifest\":[]}",
             t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 400, "manifest");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"has space\"}", t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 422, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a/b\"}", t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 422, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"\"}", t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 422, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"%0129d\"}", t.project_id, 0);
    check("POST", "/v1/prompts", t.member_key, body, 422, "name");
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a\",\"version_alias\":\"v1\"}",
             t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 422, "version_alias");
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"name\":\"a\",\"version_alias\":\"one\","
             "\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}}",
             t.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 422, "version_alias");
    /* another tenant's project, and one that does not exist: 404 alike */
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"a\"}", other.project_id);
    check("POST", "/v1/prompts", t.member_key, body, 404, "project");
    check("POST", "/v1/prompts", t.member_key,
          "{\"project_id\":\"00000000-0000-0000-0000-000000000000\",\"name\":\"a\"}", 404,
          "project");
    /* nothing of the refused requests was kept */
    struct itest_response r = call("GET", "/v1/prompts", t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 0);
    itest_response_free(&r);
}

static void test_prompts_create_get_list(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char bare[37], full[37], path[160], body[256];
    prompt_new(&t, "bare", NULL, bare);
    snprintf(path, sizeof(path), "/v1/prompts/%s", bare);
    struct itest_response r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(js(&r, "id"), bare);
    assert_string_equal(js(&r, "name"), "bare");
    assert_string_equal(js(&r, "project_id"), t.project_id);
    assert_true(json_object_is_type(jp(r.json, "latest_version"), json_type_null));
    assert_non_null(strstr(js(&r, "created_at"), "Z"));
    itest_response_free(&r);
    /* without a manifest nothing is live */
    char env[37];
    production_env(&t, env);
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", t.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(jn(&r, "items[0].live"), 0);
    itest_response_free(&r);

    /* with a manifest: version 1 (with its alias) live in production, audited */
    char m[2048], big[2600];
    manifest(m, sizeof(m), "You are helpful.");
    snprintf(big, sizeof(big),
             "{\"project_id\":\"%s\",\"name\":\"support-bot\",\"version_alias\":\"v1.0\","
             "\"manifest\":%s}",
             t.project_id, m);
    r = call("POST", "/v1/prompts", t.member_key, big, 201);
    snprintf(full, sizeof(full), "%s", js(&r, "id"));
    assert_int_equal(ji(&r, "latest_version"), 1);
    char v1[37];
    snprintf(v1, sizeof(v1), "%s", js(&r, "latest_version_id"));
    itest_response_free(&r);
    assert_int_equal(audit_count(&t, "prompt.create", full), 1);
    assert_int_equal(audit_count(&t, "prompt_version.create", v1), 1);
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", t.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(jn(&r, "items[0].live"), 1);
    assert_string_equal(js(&r, "items[0].live[0].prompt_id"), full);
    assert_string_equal(js(&r, "items[0].live[0].version_id"), v1);
    assert_int_equal(ji(&r, "items[0].live[0].version"), 1);
    assert_int_equal(
        audit_count(&t, "environment.deploy", js(&r, "items[0].live[0].deployment_id")), 1);
    itest_response_free(&r);
    /* the name is taken in this project */
    check("POST", "/v1/prompts", t.member_key, big, 409, "support-bot");

    /* get: any role; not a uuid, unknown or another tenant's: 404 */
    snprintf(path, sizeof(path), "/v1/prompts/%s", full);
    check("GET", path, t.viewer_key, NULL, 200, NULL);
    check("GET", path, NULL, NULL, 401, NULL);
    check("GET", path, other.owner_key, NULL, 404, NULL);
    check("GET", "/v1/prompts/not-a-uuid", t.viewer_key, NULL, 404, NULL);
    check("GET", "/v1/prompts/00000000-0000-0000-0000-000000000000", t.viewer_key, NULL, 404, NULL);

    /* list: newest first, pages, project filter, isolation */
    char third[37];
    prompt_new(&t, "third", NULL, third);
    r = call("GET", "/v1/prompts", t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 3);
    assert_int_equal(ji(&r, "limit"), 50);
    assert_int_equal(ji(&r, "offset"), 0);
    assert_string_equal(js(&r, "items[0].id"), third);
    assert_string_equal(js(&r, "items[2].id"), bare);
    itest_response_free(&r);
    r = call("GET", "/v1/prompts?limit=1&offset=1", t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 3);
    assert_int_equal(jn(&r, "items"), 1);
    assert_string_equal(js(&r, "items[0].id"), full);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/prompts?project_id=%s", t.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 3);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/prompts?project_id=%s", other.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 0);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/prompts?project_id=%s", t.project_id);
    r = call("GET", path, other.viewer_key, NULL, 200);
    assert_string_equal(r.body, "{\"items\":[],\"total\":0,\"limit\":50,\"offset\":0}");
    itest_response_free(&r);
    check("GET", "/v1/prompts?limit=0", t.viewer_key, NULL, 400, "limit");
    check("GET", "/v1/prompts?offset=-1", t.viewer_key, NULL, 400, "offset");
    check("GET", "/v1/prompts?project_id=1", t.viewer_key, NULL, 400, "project_id");
    check("GET", "/v1/prompts?colour=red", t.viewer_key, NULL, 400, "colour");
    check("GET", "/v1/prompts", NULL, NULL, 401, NULL);
    /* a name may repeat in another project of the tenant */
    snprintf(body, sizeof(body), "{\"name\":\"second\"}");
    r = call("POST", "/v1/projects", t.member_key, body, 201);
    char proj2[37];
    snprintf(proj2, sizeof(proj2), "%s", js(&r, "id"));
    itest_response_free(&r);
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"support-bot\"}", proj2);
    check("POST", "/v1/prompts", t.member_key, body, 201, NULL);
}

/* POST a version with manifest text m as key; expect status naming `names`. */
static void expect_manifest(const char *key, const char *prompt, const char *m, long status,
                            const char *names)
{
    char path[128];
    size_t cap = strlen(m) + 64;
    char *body = malloc(cap);
    assert_non_null(body);
    snprintf(body, cap, "{\"manifest\":%s}", m);
    snprintf(path, sizeof(path), "/v1/prompts/%s/versions", prompt);
    check("POST", path, key, body, status, names);
    free(body);
}

static void test_manifest_validation(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char p[37];
    prompt_new(&t, "checked", NULL, p);
    static const struct {
        const char *manifest;
        long status;
        const char *names;
    } cases[] = {
        /* wrong JSON types and missing members: 400 */
        {"{}", 400, "manifest.messages"},
        {"{\"messages\":{}}", 400, "manifest.messages"},
        {"{\"messages\":[1]}", 400, "manifest.messages[0]"},
        {"{\"messages\":[{\"content\":\"x\"}]}", 400, "manifest.messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\"}]}", 400, "manifest.messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", 400,
         "manifest.messages[0].content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"name\":1}]}", 400,
         "manifest.messages[0].name"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"variables\":[]}", 400,
         "manifest.variables"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"tools\":{}}", 400,
         "manifest.tools"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"tools\":[\"f\"]}", 400,
         "manifest.tools[0]"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"model_configuration\":1}", 400,
         "manifest.model_configuration"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"model_configuration\":"
         "{\"model\":\"m\"}}",
         400, "manifest.model_configuration.provider"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"model_configuration\":"
         "{\"provider\":\"p\",\"model\":\"m\",\"parameters\":[]}}",
         400, "manifest.model_configuration.parameters"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"response_format\":\"json\"}", 400,
         "manifest.response_format"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"metadata\":null}", 400,
         "manifest.metadata"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"description\":5}", 400,
         "manifest.description"},
        /* bad values and unknown members: 422 */
        {"{\"messages\":[]}", 422, "manifest.messages"},
        {"{\"messages\":[{\"role\":\"robot\",\"content\":\"q\"}]}", 422,
         "manifest.messages[0].role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"weight\":1}]}", 422,
         "manifest.messages[0].weight"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"guardrails\":{}}", 422,
         "manifest.guardrails"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"model_configuration\":"
         "{\"provider\":\"\",\"model\":\"m\"}}",
         422, "manifest.model_configuration.provider"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"model_configuration\":"
         "{\"provider\":\"p\",\"model\":\"m\",\"seed\":1}}",
         422, "manifest.model_configuration.seed"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400,
         "manifest.messages[0].content"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_manifest(t.member_key, p, cases[i].manifest, cases[i].status, cases[i].names);

    /* 200 messages are fine, 201 are not */
    size_t cap = 201 * 40 + 64;
    char *m = malloc(cap);
    assert_non_null(m);
    size_t len = (size_t)snprintf(m, cap, "{\"messages\":[");
    for (int i = 0; i < 201; i++)
        len += (size_t)snprintf(m + len, cap - len, "%s{\"role\":\"user\",\"content\":\"q%d\"}",
                                i ? "," : "", i);
    snprintf(m + len, cap - len, "]}");
    expect_manifest(t.member_key, p, m, 422, "manifest.messages");
    char *cut = strstr(m, ",{\"role\":\"user\",\"content\":\"q200\"}");
    assert_non_null(cut);
    snprintf(cut, cap - (size_t)(cut - m), "]}");
    expect_manifest(t.member_key, p, m, 201, NULL);
    free(m);

    /* at most 256 KiB of manifest (the body limit itself is larger) */
    cap = 300 * 1024;
    m = malloc(cap);
    assert_non_null(m);
    len = (size_t)snprintf(m, cap, "{\"messages\":[{\"role\":\"system\",\"content\":\"");
    memset(m + len, 'a', 262144);
    snprintf(m + len + 262144, cap - len - 262144, "\"}]}");
    expect_manifest(t.member_key, p, m, 422, "manifest");
    snprintf(m + len + 200000, cap - len - 200000, "\"}]}");
    expect_manifest(t.member_key, p, m, 201, NULL);
    free(m);

    /* the derived members are accepted and never stored; every role is known */
    expect_manifest(
        t.member_key, p,
        "{\"name\":\"other\",\"type\":\"x\",\"version\":99,\"ml_repo\":\"r\","
        "\"version_alias\":\"v9\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
        "{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\",\"content\":"
        "\"u\"},{\"role\":\"assistant\",\"content\":\"a\"},{\"role\":\"tool\","
        "\"content\":\"t\"}]}",
        201, NULL);
    const char *q[1] = {p};
    char *stored = itest_sql(db,
                             "SELECT manifest::text FROM prompt_versions WHERE prompt_id = $1"
                             " ORDER BY version DESC LIMIT 1",
                             1, q);
    assert_null(strstr(stored, "\"name\""));
    assert_null(strstr(stored, "\"version\""));
    assert_null(strstr(stored, "ml_repo"));
    assert_null(strstr(stored, "v9"));
    assert_non_null(strstr(stored, "developer"));
    free(stored);
    char *alias = itest_sql(db,
                            "SELECT coalesce(version_alias, 'none') FROM prompt_versions"
                            " WHERE prompt_id = $1 ORDER BY version DESC LIMIT 1",
                            1, q);
    assert_string_equal(alias, "none");
    free(alias);
}

static void test_versions(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char p[37], q[37], v[4][37], path[128];
    prompt_new(&t, "numbered", "one", p);
    prompt_new(&t, "neighbour", "other", q);
    assert_int_equal(version_new(&t, p, "two", "v2", v[2]), 2);
    assert_int_equal(version_new(&t, p, "three", NULL, v[3]), 3);
    /* an alias is unique per prompt, free in another */
    snprintf(path, sizeof(path), "/v1/prompts/%s/versions", p);
    check("POST", path, t.member_key,
          "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},"
          "\"version_alias\":\"v2\"}",
          409, "v2");
    assert_int_equal(version_new(&t, q, "again", "v2", v[0]), 2);
    /* the refused version used no number */
    char four[37];
    assert_int_equal(version_new(&t, p, "four", "v4", four), 4);

    /* the answer's shape */
    char m[2048], body[2600];
    manifest(m, sizeof(m), "five");
    snprintf(body, sizeof(body), "{\"manifest\":%s,\"version_alias\":\"v5-rc.1\"}", m);
    struct itest_response r = call("POST", path, t.owner_key, body, 201);
    assert_int_equal(ji(&r, "version"), 5);
    assert_string_equal(js(&r, "prompt_id"), p);
    assert_string_equal(js(&r, "version_alias"), "v5-rc.1");
    assert_string_equal(js(&r, "manifest.messages[0].content"), "five");
    assert_string_equal(js(&r, "manifest.model_configuration.provider"), "openai");
    assert_int_equal(strncmp(js(&r, "created_by"), "key:", 4), 0);
    assert_non_null(strstr(js(&r, "created_at"), "Z"));
    assert_int_equal(audit_count(&t, "prompt_version.create", js(&r, "id")), 1);
    itest_response_free(&r);
    /* the prompt reports its newest */
    snprintf(path, sizeof(path), "/v1/prompts/%s", p);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "latest_version"), 5);
    itest_response_free(&r);

    /* roles, bodies, unknown and other tenants' prompts */
    snprintf(path, sizeof(path), "/v1/prompts/%s/versions", p);
    const char *ok = "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}}";
    check("POST", path, NULL, ok, 401, NULL);
    check("POST", path, t.viewer_key, ok, 403, NULL);
    check("POST", path, other.owner_key, ok, 404, "prompt");
    check("POST", "/v1/prompts/nope/versions", t.member_key, ok, 404, "prompt");
    check("POST", "/v1/prompts/00000000-0000-0000-0000-000000000000/versions", t.member_key, ok,
          404, "prompt");
    check("POST", path, t.member_key, "{}", 400, "manifest");
    check("POST", path, t.member_key, "{\"manifest\":1}", 400, "manifest");
    check("POST", path, t.member_key,
          "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},\"x\":1}", 400,
          "x");
    check("POST", path, t.member_key,
          "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},"
          "\"version_alias\":\"x1\"}",
          422, "version_alias");
    check("POST", path, t.member_key,
          "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},"
          "\"version_alias\":\"v 1\"}",
          422, "version_alias");
    check("POST", path, t.member_key,
          "{\"manifest\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},"
          "\"version_alias\":7}",
          400, "version_alias");
    /* versions are immutable: there is no route that changes one */
    char vpath[160];
    snprintf(vpath, sizeof(vpath), "/v1/prompts/%s/versions/%s", p, v[2]);
    r = itest_api("PUT", vpath, t.owner_key, ok);
    assert_true(r.status == 404 || r.status == 405);
    itest_response_free(&r);
    const char *pp[1] = {p};
    char *n = itest_sql(db,
                        "SELECT string_agg(version::text, ',' ORDER BY version) FROM"
                        " prompt_versions WHERE prompt_id = $1",
                        1, pp);
    assert_string_equal(n, "1,2,3,4,5");
    free(n);
}

static void test_environments_and_deploy(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char p[37], q[37], env[37], v2[37], qv2[37], row[37], path[160], body[256];
    prompt_new(&t, "live-one", "first", p);
    prompt_new(&t, "live-two", "other", q);
    version_new(&t, p, "second", NULL, v2);
    version_new(&t, q, "other two", NULL, qv2);
    production_env(&t, env);

    /* list: project_id required; any role; another tenant's project is 404 */
    check("GET", "/v1/environments", t.viewer_key, NULL, 400, "project_id");
    check("GET", "/v1/environments?project_id=x", t.viewer_key, NULL, 400, "project_id");
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s&limit=1", t.project_id);
    check("GET", path, t.viewer_key, NULL, 400, "limit");
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", t.project_id);
    check("GET", path, NULL, NULL, 401, NULL);
    check("GET", path, other.viewer_key, NULL, 404, "project");
    struct itest_response r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(jn(&r, "items"), 1);
    assert_string_equal(js(&r, "items[0].project_id"), t.project_id);
    assert_int_equal(jn(&r, "items[0].live"), 2);
    itest_response_free(&r);

    /* deploy: owner only (it ships), body checked, ids must belong together */
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments", env);
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", p, v2);
    check("POST", path, NULL, body, 401, NULL);
    check("POST", path, t.viewer_key, body, 403, NULL);
    check("POST", path, t.member_key, body, 403, NULL);
    check("POST", path, t.owner_key, "{}", 400, "prompt_id");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\"}", p);
    check("POST", path, t.owner_key, body, 400, "version_id");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"x\"}", p);
    check("POST", path, t.owner_key, body, 400, "version_id");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\",\"at\":1}", p, v2);
    check("POST", path, t.owner_key, body, 400, "at");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", p, qv2);
    check("POST", path, t.owner_key, body, 422, "version_id");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", p, v2);
    check("POST", "/v1/environments/nope/deployments", t.owner_key, body, 404, "environment");
    char oenv[37];
    production_env(&other, oenv);
    char opath[160];
    snprintf(opath, sizeof(opath), "/v1/environments/%s/deployments", oenv);
    check("POST", opath, t.owner_key, body, 404, "environment");
    check("POST", path, other.owner_key, body, 404, "environment");
    /* another tenant's prompt or version through our environment: 404, no hint */
    char op[37], ov[37];
    prompt_new(&other, "theirs", "secret", op);
    version_new(&other, op, "secret two", NULL, ov);
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", op, ov);
    check("POST", path, t.owner_key, body, 404, "prompt");
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", p, ov);
    check("POST", path, t.owner_key, body, 404, "version");
    /* a prompt of another project of the tenant */
    r = call("POST", "/v1/projects", t.member_key, "{\"name\":\"elsewhere\"}", 201);
    char proj2[37], pe[37], pev[37];
    snprintf(proj2, sizeof(proj2), "%s", js(&r, "id"));
    itest_response_free(&r);
    struct itest_tenant t2 = t;
    snprintf(t2.project_id, sizeof(t2.project_id), "%s", proj2);
    prompt_new(&t2, "elsewhere", "e", pe);
    version_new(&t2, pe, "e2", NULL, pev);
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", pe, pev);
    check("POST", path, t.owner_key, body, 422, "prompt_id");

    /* the move itself: 201 with the row, live changes, audited with what it replaced */
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", p, v2);
    r = call("POST", path, t.owner_key, body, 201);
    snprintf(row, sizeof(row), "%s", js(&r, "id"));
    assert_string_equal(js(&r, "environment_id"), env);
    assert_string_equal(js(&r, "prompt_id"), p);
    assert_int_equal(ji(&r, "version"), 2);
    assert_int_equal(strncmp(js(&r, "created_by"), "key:", 4), 0);
    itest_response_free(&r);
    const char *ap[2] = {t.id, row};
    char *prev = itest_sql(db,
                           "SELECT detail->>'previous_version_id' FROM audit_log"
                           " WHERE tenant_id = $1 AND action = 'environment.deploy'"
                           " AND target = $2",
                           2, ap);
    const char *pp[1] = {p};
    char *v1 =
        itest_sql(db, "SELECT id FROM prompt_versions WHERE prompt_id = $1 AND version = 1", 1, pp);
    assert_string_equal(prev, v1);
    free(prev);
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", t.project_id);
    r = call("GET", path, t.viewer_key, NULL, 200);
    for (int i = 0; i < 2; i++) {
        char k[64];
        snprintf(k, sizeof(k), "items[0].live[%d].prompt_id", i);
        if (strcmp(js(&r, k), p) == 0) {
            snprintf(k, sizeof(k), "items[0].live[%d].version", i);
            assert_int_equal(ji(&r, k), 2);
            snprintf(k, sizeof(k), "items[0].live[%d].deployment_id", i);
            assert_string_equal(js(&r, k), row);
        }
    }
    itest_response_free(&r);

    /* history: append-only, newest first, pages, prompt filter, isolation */
    char back[37];
    deploy(&t, env, p, v1, back); /* roll forward to an old version: a new row */
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments", env);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 4);
    assert_string_equal(js(&r, "items[0].id"), back);
    assert_string_equal(js(&r, "items[1].id"), row);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?prompt_id=%s&limit=1&offset=1",
             env, p);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 3);
    assert_int_equal(ji(&r, "limit"), 1);
    assert_int_equal(ji(&r, "offset"), 1);
    assert_int_equal(jn(&r, "items"), 1);
    assert_string_equal(js(&r, "items[0].id"), row);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?prompt_id=%s", env, q);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_int_equal(ji(&r, "total"), 1);
    itest_response_free(&r);
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments", env);
    check("GET", path, other.viewer_key, NULL, 404, "environment");
    check("GET", path, NULL, NULL, 401, NULL);
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?prompt_id=x", env);
    check("GET", path, t.viewer_key, NULL, 400, "prompt_id");
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?limit=500", env);
    check("GET", path, t.viewer_key, NULL, 400, "limit");
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?since=1", env);
    check("GET", path, t.viewer_key, NULL, 400, "since");
    check("GET", "/v1/environments/nope/deployments", t.viewer_key, NULL, 404, "environment");
    free(v1);
}

static void adaline_path(char *buf, size_t bufsz, const char *prompt, const char *deployment,
                         const char *env)
{
    snprintf(buf, bufsz, "/v2/deployments?promptId=%s&deploymentId=%s%s%s", prompt, deployment,
             env ? "&deploymentEnvironmentId=" : "", env ? env : "");
}

static void test_adaline_shape(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "starter", &t);
    char p[37], env[37], path[256];
    prompt_new(&t, "adaline", "You are \\\"helpful\\\".", p);
    production_env(&t, env);
    adaline_path(path, sizeof(path), p, "current", env);
    struct itest_response r = call("GET", path, t.viewer_key, NULL, 200);
    /* exactly the seed's members, with their types */
    assert_int_equal(json_object_object_length(r.json), 9);
    const char *id = js(&r, "id");
    long long created = ji(&r, "createdAt");
    assert_true(created >= 1672511400000LL && created <= 33229420200000LL);
    assert_int_equal(ji(&r, "updatedAt"), created);
    assert_int_equal(strncmp(js(&r, "createdByUserId"), "key:", 4), 0);
    assert_string_equal(js(&r, "updatedByUserId"), js(&r, "createdByUserId"));
    assert_string_equal(js(&r, "projectId"), t.project_id);
    assert_string_equal(js(&r, "promptId"), p);
    assert_string_equal(js(&r, "deploymentEnvironmentId"), env);
    /* createdAt is the row's created_at in ms */
    const char *rp[1] = {id};
    char *ms = itest_sql(db,
                         "SELECT floor(extract(epoch FROM created_at) * 1000)::bigint"
                         " FROM environment_deployments WHERE id = $1",
                         1, rp);
    assert_int_equal(strtoll(ms, NULL, 10), created);
    free(ms);
    assert_string_equal(js(&r, "prompt.config.providerName"), "openai");
    assert_string_equal(js(&r, "prompt.config.model"), "gpt-4o");
    assert_int_equal(json_object_object_length(jp(r.json, "prompt.config.settings")), 5);
    assert_int_equal(ji(&r, "prompt.config.settings.maxTokens"), 1000);
    assert_true(json_object_get_double(jp(r.json, "prompt.config.settings.temperature")) == 0.7);
    assert_true(json_object_get_double(jp(r.json, "prompt.config.settings.topP")) == 0.9);
    assert_true(json_object_get_double(jp(r.json, "prompt.config.settings.presencePenalty")) ==
                0.1);
    assert_string_equal(js(&r, "prompt.config.settings.stop[0]"), "END");
    assert_null(jp(r.json, "prompt.config.settings.max_tokens"));
    assert_int_equal(jn(&r, "prompt.messages"), 2);
    assert_string_equal(js(&r, "prompt.messages[0].role"), "system");
    assert_int_equal(jn(&r, "prompt.messages[0].content"), 1);
    assert_string_equal(js(&r, "prompt.messages[0].content[0].modality"), "text");
    assert_string_equal(js(&r, "prompt.messages[0].content[0].value"), "You are \"helpful\".");
    assert_string_equal(js(&r, "prompt.messages[1].role"), "user");
    assert_string_equal(js(&r, "prompt.messages[1].content[0].value"),
                        "{{question}} for {{customer}}");
    assert_int_equal(jn(&r, "prompt.tools"), 1);
    assert_string_equal(js(&r, "prompt.tools[0].type"), "function");
    assert_string_equal(js(&r, "prompt.tools[0].definition.schema.name"), "lookup");
    assert_string_equal(js(&r, "prompt.tools[0].definition.schema.description"), "Finds an order");
    assert_string_equal(js(&r, "prompt.tools[0].definition.schema.parameters.type"), "object");
    assert_true(json_object_get_boolean(jp(r.json, "prompt.tools[0].definition.schema.strict")));
    assert_int_equal(jn(&r, "prompt.variables"), 2);
    assert_string_equal(js(&r, "prompt.variables[0].name"), "customer");
    assert_string_equal(js(&r, "prompt.variables[0].modality"), "text");
    assert_string_equal(js(&r, "prompt.variables[1].name"), "question");
    itest_response_free(&r);

    /* a bare manifest still answers every member */
    char q[37];
    char body[512];
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"name\":\"bare\",\"manifest\":{\"messages\":"
             "[{\"role\":\"user\",\"content\":\"hi\"}]}}",
             t.project_id);
    struct itest_response c = call("POST", "/v1/prompts", t.member_key, body, 201);
    snprintf(q, sizeof(q), "%s", js(&c, "id"));
    itest_response_free(&c);
    adaline_path(path, sizeof(path), q, "latest", env);
    r = call("GET", path, t.member_key, NULL, 200);
    assert_string_equal(js(&r, "prompt.config.providerName"), "");
    assert_string_equal(js(&r, "prompt.config.model"), "");
    assert_int_equal(json_object_object_length(jp(r.json, "prompt.config.settings")), 0);
    assert_int_equal(jn(&r, "prompt.tools"), 0);
    assert_int_equal(jn(&r, "prompt.variables"), 0);
    assert_string_equal(js(&r, "prompt.messages[0].content[0].value"), "hi");
    itest_response_free(&r);
}

static void test_adaline_current_and_errors(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char p[37], q[37], env[37], v2[37], first[37], second[37], path[256];
    prompt_new(&t, "polled", "version one", p);
    prompt_new(&t, "unrelated", "x", q);
    production_env(&t, env);
    adaline_path(path, sizeof(path), p, "current", env);
    struct itest_response r = call("GET", path, t.viewer_key, NULL, 200);
    snprintf(first, sizeof(first), "%s", js(&r, "id"));
    itest_response_free(&r);

    /* a new version alone changes nothing; a new deployment row does */
    version_new(&t, p, "version two", NULL, v2);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(js(&r, "id"), first);
    assert_string_equal(js(&r, "prompt.messages[0].content[0].value"), "version one");
    itest_response_free(&r);
    deploy(&t, env, p, v2, second);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(js(&r, "id"), second);
    assert_string_equal(js(&r, "prompt.messages[0].content[0].value"), "version two");
    long long at2 = ji(&r, "createdAt");
    itest_response_free(&r);
    adaline_path(path, sizeof(path), p, "latest", env);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(js(&r, "id"), second);
    itest_response_free(&r);
    /* the old row by id is still the old version */
    adaline_path(path, sizeof(path), p, first, NULL);
    r = call("GET", path, t.viewer_key, NULL, 200);
    assert_string_equal(js(&r, "id"), first);
    assert_string_equal(js(&r, "prompt.messages[0].content[0].value"), "version one");
    assert_true(ji(&r, "createdAt") <= at2);
    itest_response_free(&r);
    adaline_path(path, sizeof(path), p, first, env);
    check("GET", path, t.viewer_key, NULL, 200, NULL);

    /* errors: 400 naming the parameter */
    char bad[320];
    check("GET", "/v2/deployments", t.viewer_key, NULL, 400, "promptId is required");
    snprintf(bad, sizeof(bad), "/v2/deployments?deploymentId=current&deploymentEnvironmentId=%s",
             env);
    check("GET", bad, t.viewer_key, NULL, 400, "promptId is required");
    snprintf(bad, sizeof(bad), "/v2/deployments?promptId=%s", p);
    check("GET", bad, t.viewer_key, NULL, 400, "deploymentId");
    adaline_path(bad, sizeof(bad), p, "current", NULL);
    check("GET", bad, t.viewer_key, NULL, 400, "deploymentEnvironmentId");
    adaline_path(bad, sizeof(bad), p, "latest", NULL);
    check("GET", bad, t.viewer_key, NULL, 400, "deploymentEnvironmentId");
    adaline_path(bad, sizeof(bad), p, "newest", env);
    check("GET", bad, t.viewer_key, NULL, 400, "deploymentId");
    adaline_path(bad, sizeof(bad), "abc", "current", env);
    check("GET", bad, t.viewer_key, NULL, 400, "promptId");
    adaline_path(bad, sizeof(bad), p, "current", "abc");
    check("GET", bad, t.viewer_key, NULL, 400, "deploymentEnvironmentId");
    snprintf(bad, sizeof(bad), "%s&version=1", path);
    check("GET", bad, t.viewer_key, NULL, 400, "version");
    check("GET", path, NULL, NULL, 401, NULL);
    check("GET", path, "pl_nope", NULL, 401, NULL);

    /* not found: unknown ids, a row of another prompt or environment, another tenant */
    adaline_path(bad, sizeof(bad), p, "00000000-0000-0000-0000-000000000000", NULL);
    check("GET", bad, t.viewer_key, NULL, 404, NULL);
    adaline_path(bad, sizeof(bad), q, first, NULL);
    check("GET", bad, t.viewer_key, NULL, 404, NULL);
    char oenv[37];
    production_env(&other, oenv);
    adaline_path(bad, sizeof(bad), p, first, oenv);
    check("GET", bad, t.viewer_key, NULL, 404, NULL);
    adaline_path(bad, sizeof(bad), p, "current", oenv);
    check("GET", bad, t.viewer_key, NULL, 404, NULL);
    adaline_path(bad, sizeof(bad), p, "current", env);
    check("GET", bad, other.viewer_key, NULL, 404, NULL);
    adaline_path(bad, sizeof(bad), p, first, NULL);
    check("GET", bad, other.owner_key, NULL, 404, NULL);
    /* a prompt never deployed there */
    char never[37];
    prompt_new(&t, "never", NULL, never);
    adaline_path(bad, sizeof(bad), never, "current", env);
    check("GET", bad, t.viewer_key, NULL, 404, NULL);
}

/* GET /api/ml/v1/prompt-versions with a query; expect 200 and return the answer. */
static struct itest_response tf_list(const char *key, const char *query)
{
    char path[640];
    snprintf(path, sizeof(path), "/api/ml/v1/prompt-versions%s", query);
    return call("GET", path, key, NULL, 200);
}

static void test_truefoundry_list(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    const char *tp[1] = {t.id};
    char *tenant_name = itest_sql(db, "SELECT name FROM tenants WHERE id = $1", 1, tp);
    char p[37], q[37], v[5][37], query[512];
    prompt_new(&t, "tf-prompt", "one", p);
    version_new(&t, p, "two", "v2", v[2]);
    version_new(&t, p, "three", "v3", v[3]);
    prompt_new(&t, "tf-other", "other", q);

    /* everything, newest first, default page */
    struct itest_response r = tf_list(t.viewer_key, "");
    assert_int_equal(ji(&r, "pagination.total"), 4);
    assert_int_equal(ji(&r, "pagination.offset"), 0);
    assert_int_equal(ji(&r, "pagination.limit"), 10);
    assert_int_equal(jn(&r, "data"), 4);
    assert_string_equal(js(&r, "data[0].prompt_id"), q);
    assert_string_equal(js(&r, "data[1].id"), v[3]);
    itest_response_free(&r);

    /* one version's shape */
    snprintf(query, sizeof(query), "?prompt_id=%s&version=2", p);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 1);
    char fqn[256];
    snprintf(fqn, sizeof(fqn), "chat_prompt:%s/itest/tf-prompt:2", tenant_name);
    assert_string_equal(js(&r, "data[0].fqn"), fqn);
    assert_string_equal(js(&r, "data[0].id"), v[2]);
    assert_string_equal(js(&r, "data[0].prompt_id"), p);
    assert_string_equal(js(&r, "data[0].ml_repo_id"), t.project_id);
    assert_string_equal(js(&r, "data[0].manifest.name"), "tf-prompt");
    assert_string_equal(js(&r, "data[0].manifest.ml_repo"), "itest");
    assert_int_equal(ji(&r, "data[0].manifest.version"), 2);
    assert_string_equal(js(&r, "data[0].manifest.version_alias"), "v2");
    assert_string_equal(js(&r, "data[0].manifest.type"), "chat_prompt");
    assert_string_equal(js(&r, "data[0].manifest.messages[0].content"), "two");
    assert_string_equal(js(&r, "data[0].manifest.model_configuration.model"), "gpt-4o");
    assert_int_equal(ji(&r, "data[0].manifest.model_configuration.parameters.max_tokens"), 1000);
    assert_int_equal(jn(&r, "data[0].tags"), 0);
    const char *created = js(&r, "data[0].created_at");
    assert_int_equal(created[strlen(created) - 1], 'Z');
    assert_int_equal(created[10], 'T');
    assert_string_equal(js(&r, "data[0].updated_at"), created);
    assert_string_equal(js(&r, "data[0].created_by_subject.subjectType"), "user");
    assert_string_equal(js(&r, "data[0].created_by_subject.subjectDisplayName"), "itest");
    assert_int_equal(strncmp(js(&r, "data[0].created_by_subject.subjectSlug"), "key:", 4), 0);
    assert_string_equal(js(&r, "data[0].created_by_subject.subjectId"),
                        js(&r, "data[0].created_by_subject.subjectSlug") + 4);
    itest_response_free(&r);

    /* a version written by the system (a shipped proposal) is a service account's */
    const char *sp[2] = {t.id, p};
    free(itest_sql(db,
                   "INSERT INTO prompt_versions (tenant_id, prompt_id, version, manifest,"
                   " created_by) VALUES ($1, $2, 4, '{\"messages\":[{\"role\":\"system\","
                   "\"content\":\"shipped\"}]}', 'system:autoship')",
                   2, sp));
    snprintf(query, sizeof(query), "?prompt_id=%s&version=latest", p);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 1);
    assert_int_equal(ji(&r, "data[0].manifest.version"), 4);
    assert_true(json_object_is_type(jp(r.json, "data[0].manifest.version_alias"), json_type_null));
    assert_string_equal(js(&r, "data[0].created_by_subject.subjectType"), "serviceaccount");
    assert_string_equal(js(&r, "data[0].created_by_subject.subjectId"), "autoship");
    itest_response_free(&r);
    r = tf_list(t.viewer_key, "?version=latest");
    assert_int_equal(ji(&r, "pagination.total"), 2); /* the newest of each prompt */
    itest_response_free(&r);

    /* fqn: with and without version; another tenant's name is an empty answer */
    snprintf(query, sizeof(query), "?fqn=chat_prompt:%s/itest/tf-prompt", tenant_name);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 4);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?fqn=chat_prompt:%s/itest/tf-prompt:3", tenant_name);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 1);
    assert_string_equal(js(&r, "data[0].id"), v[3]);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?fqn=chat_prompt:%s/itest/tf-prompt:3", tenant_name);
    r = tf_list(other.viewer_key, query);
    assert_string_equal(r.body, "{\"data\":[],\"pagination\":{\"total\":0,\"offset\":0,"
                                "\"limit\":10}}");
    itest_response_free(&r);
    r = tf_list(t.viewer_key, "?fqn=chat_prompt:someone-else/itest/tf-prompt");
    assert_int_equal(ji(&r, "pagination.total"), 0);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?fqn=chat_prompt:%s/nope/tf-prompt", tenant_name);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 0);
    itest_response_free(&r);
    static const char *const bad_fqns[] = {
        "tf-prompt",
        "chat_prompt:",
        "prompt:T/itest/tf-prompt",
        "chat_prompt:T/tf-prompt",
        "chat_prompt:T/itest/",
        "chat_prompt:/itest/tf-prompt",
        "chat_prompt:T//tf-prompt",
        "chat_prompt:T/itest/tf-prompt:",
        "chat_prompt:T/itest/tf-prompt:x",
        "chat_prompt:T/itest/tf-prompt:0",
        "chat_prompt:T/itest/tf-prompt:-1",
        "chat_prompt:T/itest/:3",
    };
    for (size_t i = 0; i < sizeof(bad_fqns) / sizeof(bad_fqns[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/api/ml/v1/prompt-versions?fqn=%s", bad_fqns[i]);
        check("GET", path, t.viewer_key, NULL, 400, "fqn");
    }

    /* other filters */
    r = tf_list(t.viewer_key, "?name=tf-other");
    assert_int_equal(ji(&r, "pagination.total"), 1);
    assert_string_equal(js(&r, "data[0].prompt_id"), q);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?ml_repo_id=%s&version=1", t.project_id);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 2);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?ml_repo_id=%s", other.project_id);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 0);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?prompt_id=%s", p);
    r = tf_list(other.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 0);
    itest_response_free(&r);

    /* pages */
    snprintf(query, sizeof(query), "?prompt_id=%s&limit=2&offset=1", p);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 4);
    assert_int_equal(ji(&r, "pagination.limit"), 2);
    assert_int_equal(ji(&r, "pagination.offset"), 1);
    assert_int_equal(jn(&r, "data"), 2);
    assert_string_equal(js(&r, "data[0].id"), v[3]);
    assert_string_equal(js(&r, "data[1].id"), v[2]);
    itest_response_free(&r);
    snprintf(query, sizeof(query), "?prompt_id=%s&offset=10", p);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 4);
    assert_int_equal(jn(&r, "data"), 0);
    itest_response_free(&r);
    static const struct {
        const char *query;
        const char *names;
    } bad[] = {
        {"?limit=0", "limit"},       {"?limit=101", "limit"},       {"?limit=x", "limit"},
        {"?offset=-1", "offset"},    {"?version=0", "version"},     {"?version=abc", "version"},
        {"?version=1.5", "version"}, {"?prompt_id=1", "prompt_id"}, {"?ml_repo_id=1", "ml_repo_id"},
        {"?colour=red", "colour"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/api/ml/v1/prompt-versions%s", bad[i].query);
        check("GET", path, t.viewer_key, NULL, 400, bad[i].names);
    }
    check("GET", "/api/ml/v1/prompt-versions", NULL, NULL, 401, NULL);
    free(tenant_name);
}

static void put_tags(const struct itest_tenant *t, const char *version, const char *tags,
                     const char *force, long status, const char *names)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"prompt_version_id\":\"%s\",\"tags\":%s%s%s}", version, tags,
             force ? ",\"force\":" : "", force ? force : "");
    check("PUT", "/api/ml/v1/prompt-versions/tags", t->member_key, body, status, names);
}

/* The tags of a version, as the list reports them, comma-joined. */
static void tags_of(const struct itest_tenant *t, const char *prompt, int version, char *buf,
                    size_t bufsz)
{
    char query[128];
    snprintf(query, sizeof(query), "?prompt_id=%s&version=%d", prompt, version);
    struct itest_response r = tf_list(t->viewer_key, query);
    buf[0] = '\0';
    for (size_t i = 0; i < jn(&r, "data[0].tags"); i++) {
        char k[48];
        snprintf(k, sizeof(k), "data[0].tags[%zu]", i);
        size_t len = strlen(buf);
        snprintf(buf + len, bufsz - len, "%s%s", i ? "," : "", js(&r, k));
    }
    itest_response_free(&r);
}

static void test_truefoundry_tags(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "pro", &t);
    char p[37], q[37], v[3][37], qv[37], tags[256];
    prompt_new(&t, "tagged", "one", p);
    prompt_new(&t, "tagged-too", "x", q);
    version_new(&t, p, "two", NULL, v[2]);
    const char *pp[1] = {p};
    char *v1 =
        itest_sql(db, "SELECT id FROM prompt_versions WHERE prompt_id = $1 AND version = 1", 1, pp);
    snprintf(v[1], sizeof(v[1]), "%s", v1);
    free(v1);
    const char *qp[1] = {q};
    char *qv1 = itest_sql(db, "SELECT id FROM prompt_versions WHERE prompt_id = $1", 1, qp);
    snprintf(qv, sizeof(qv), "%s", qv1);
    free(qv1);

    /* set: answers the version as the list does, tags sorted */
    char body[256];
    snprintf(body, sizeof(body), "{\"prompt_version_id\":\"%s\",\"tags\":[\"prod\",\"stable\"]}",
             v[1]);
    struct itest_response r =
        call("PUT", "/api/ml/v1/prompt-versions/tags", t.member_key, body, 200);
    assert_string_equal(js(&r, "id"), v[1]);
    assert_int_equal(ji(&r, "manifest.version"), 1);
    assert_int_equal(jn(&r, "tags"), 2);
    assert_string_equal(js(&r, "tags[0]"), "prod");
    assert_string_equal(js(&r, "tags[1]"), "stable");
    itest_response_free(&r);
    assert_int_equal(audit_count(&t, "prompt_version.tags", v[1]), 1);
    /* the same tag on another prompt is independent */
    put_tags(&t, qv, "[\"prod\"]", NULL, 200, NULL);

    /* a tag held by another version: 409 naming both, nothing changes */
    snprintf(body, sizeof(body), "{\"prompt_version_id\":\"%s\",\"tags\":[\"new\",\"prod\"]}",
             v[2]);
    r = call_names("PUT", "/api/ml/v1/prompt-versions/tags", t.member_key, body, 409,
                   "tag prod is held by version 1");
    assert_string_equal(js(&r, "tag"), "prod");
    assert_int_equal(ji(&r, "version"), 1);
    itest_response_free(&r);
    tags_of(&t, p, 2, tags, sizeof(tags));
    assert_string_equal(tags, "");
    tags_of(&t, p, 1, tags, sizeof(tags));
    assert_string_equal(tags, "prod,stable");
    put_tags(&t, v[2], "[\"new\",\"prod\"]", "false", 409, "prod");

    /* force moves it; the rest stays where it was */
    put_tags(&t, v[2], "[\"new\",\"prod\"]", "true", 200, NULL);
    tags_of(&t, p, 2, tags, sizeof(tags));
    assert_string_equal(tags, "new,prod");
    tags_of(&t, p, 1, tags, sizeof(tags));
    assert_string_equal(tags, "stable");
    tags_of(&t, q, 1, tags, sizeof(tags));
    assert_string_equal(tags, "prod");
    const char *ap[2] = {t.id, v[2]};
    char *moved = itest_sql(db,
                            "SELECT detail->'moved'->0->>'from_version' FROM audit_log"
                            " WHERE tenant_id = $1 AND action = 'prompt_version.tags'"
                            " AND target = $2 ORDER BY id DESC LIMIT 1",
                            2, ap);
    assert_string_equal(moved, "1");
    free(moved);

    /* exactly the listed tags: unlisted ones of this version go, [] clears */
    put_tags(&t, v[2], "[\"prod\"]", NULL, 200, NULL);
    tags_of(&t, p, 2, tags, sizeof(tags));
    assert_string_equal(tags, "prod");
    put_tags(&t, v[1], "[]", NULL, 200, NULL);
    tags_of(&t, p, 1, tags, sizeof(tags));
    assert_string_equal(tags, "");

    /* the tag filter */
    char query[128];
    snprintf(query, sizeof(query), "?prompt_id=%s&tag=prod", p);
    r = tf_list(t.viewer_key, query);
    assert_int_equal(ji(&r, "pagination.total"), 1);
    assert_string_equal(js(&r, "data[0].id"), v[2]);
    itest_response_free(&r);
    r = tf_list(t.viewer_key, "?tag=prod");
    assert_int_equal(ji(&r, "pagination.total"), 2);
    itest_response_free(&r);
    r = tf_list(other.viewer_key, "?tag=prod");
    assert_int_equal(ji(&r, "pagination.total"), 0);
    itest_response_free(&r);

    /* errors */
    snprintf(body, sizeof(body), "{\"prompt_version_id\":\"%s\",\"tags\":[\"a\"]}", v[1]);
    check("PUT", "/api/ml/v1/prompt-versions/tags", NULL, body, 401, NULL);
    check("PUT", "/api/ml/v1/prompt-versions/tags", t.viewer_key, body, 403, NULL);
    check("PUT", "/api/ml/v1/prompt-versions/tags", other.owner_key, body, 404, "version");
    check("PUT", "/api/ml/v1/prompt-versions/tags", t.member_key, "", 400, NULL);
    check("PUT", "/api/ml/v1/prompt-versions/tags", t.member_key, "{\"tags\":[]}", 400,
          "prompt_version_id");
    put_tags(&t, "00000000-0000-0000-0000-000000000000", "[]", NULL, 404, "version");
    put_tags(&t, "x", "[]", NULL, 400, "prompt_version_id");
    put_tags(&t, v[1], "\"prod\"", NULL, 400, "tags");
    put_tags(&t, v[1], "[1]", NULL, 400, "tags[0]");
    put_tags(&t, v[1], "[\"a\"]", "1", 400, "force");
    put_tags(&t, v[1], "[\"\"]", NULL, 422, "tags[0]");
    put_tags(&t, v[1],
             "[\"a\",\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]", NULL,
             422, "tags[1]");
    put_tags(&t, v[1], "[\"a\",\"b\",\"a\"]", NULL, 422, "tags[2]");
    put_tags(&t, v[1],
             "[\"t1\",\"t2\",\"t3\",\"t4\",\"t5\",\"t6\",\"t7\",\"t8\",\"t9\",\"t10\",\"t11\","
             "\"t12\",\"t13\",\"t14\",\"t15\",\"t16\",\"t17\",\"t18\",\"t19\",\"t20\",\"t21\"]",
             NULL, 422, "tags");
    put_tags(&t, v[1],
             "[\"t1\",\"t2\",\"t3\",\"t4\",\"t5\",\"t6\",\"t7\",\"t8\",\"t9\",\"t10\",\"t11\","
             "\"t12\",\"t13\",\"t14\",\"t15\",\"t16\",\"t17\",\"t18\",\"t19\",\"t20\"]",
             NULL, 200, NULL);
    snprintf(body, sizeof(body), "{\"prompt_version_id\":\"%s\",\"tags\":[],\"x\":1}", v[1]);
    check("PUT", "/api/ml/v1/prompt-versions/tags", t.member_key, body, 400, "x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompts_create_errors),
        cmocka_unit_test(test_prompts_create_get_list),
        cmocka_unit_test(test_manifest_validation),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_environments_and_deploy),
        cmocka_unit_test(test_adaline_shape),
        cmocka_unit_test(test_adaline_current_and_errors),
        cmocka_unit_test(test_truefoundry_list),
        cmocka_unit_test(test_truefoundry_tags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
