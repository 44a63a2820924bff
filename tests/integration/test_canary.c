/* Canary rollout in the registry against the running stack (architecture §7): a deployment shipped
 * with the project's ship_canary_pct serves its version to that share of the routing keys,
 * the same version to a key on every read of every read endpoint, the stable version to
 * keyless reads; its promotion to 100 % and its rollback are guarded transitions with one
 * event and one audit entry each, and a promotion never lands after a rollback. Deployments
 * are shipped and rolled back through the api, which announces on the stack's pl.deployments;
 * the proposals are announced on a topic of this test's own, so that the stack's A/B harness
 * leaves them alone. */
#include "deploy.h"
#include "itest.h"
#include "registry.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANARY_EVENTS "pl.deployments" /* the topic the stack's api announces moves on */
#define V1_SYSTEM     "You are a bot."
#define V2_SYSTEM     "You are a bot. Reply with one valid JSON object."
#define SPLIT_KEYS    10000

static PGconn *db;
static char proposals_topic[96];

/* A keep-alive HTTP client, one per thread: thousands of reads over one connection. */
struct canary_http {
    CURL *c;
    char *body;
    size_t len;
};

static size_t canary_http_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct canary_http *h = arg;
    size_t n = size * nmemb;
    char *p = realloc(h->body, h->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + h->len, data, n);
    h->body = p;
    h->len += n;
    h->body[h->len] = '\0';
    return n;
}

static void canary_http_init(struct canary_http *h)
{
    memset(h, 0, sizeof(*h));
    h->c = curl_easy_init();
}

static void canary_http_free(struct canary_http *h)
{
    curl_easy_cleanup(h->c);
    free(h->body);
    memset(h, 0, sizeof(*h));
}

/* GET $PL_API_URL + path with key. @returns the status (0 when the request failed) and the
 * parsed body in *out (caller puts it; NULL when not JSON). Makes no assertion: threads use it. */
static long canary_get(struct canary_http *h, const char *path, const char *key, json_object **out)
{
    char url[2048], auth[128];
    snprintf(url, sizeof(url), "%s%s", getenv("PL_API_URL"), path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    h->len = 0;
    if (h->body)
        h->body[0] = '\0';
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, canary_http_write);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h->c, CURLOPT_NOSIGNAL, 1L);
    long status = 0;
    if (curl_easy_perform(h->c) == CURLE_OK)
        curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    *out = h->body ? json_tokener_parse(h->body) : NULL;
    return status;
}

/* A member by path: "a.b[2].c" (NULL when absent). */
static json_object *jp(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save)) {
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

/* True when o has member key and it is JSON null. */
static bool jnull(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) && v == NULL;
}

/* One prompt with version 1 live in production, and (once shipped) its deployment. */
struct canary {
    struct itest_tenant t;
    char env[37], prompt_id[37], v1[37];
    char id[37], v2[37]; /* the deployment and the version it shipped */
};

static void canary_sql_ok(const char *sql, int n, const char *const *p)
{
    free(itest_sql(db, sql, n, p));
}

/* A tenant whose project ships with a canary of pct % (0: none). */
static void canary_tenant(struct itest_tenant *t, int pct)
{
    itest_tenant_new(db, "team", t);
    char share[16];
    snprintf(share, sizeof(share), "%d", pct);
    const char *p[2] = {t->project_id, share};
    canary_sql_ok("UPDATE projects SET ship_canary_pct = $2::int WHERE id = $1", 2, p);
}

/* Prompt `name` of t's project, version 1 (system V1_SYSTEM) live in production. */
static void canary_prompt(struct canary *c, const struct itest_tenant *t, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->t = *t;
    struct pl_pg_error err;
    assert_int_equal(pl_registry_production_env(db, t->id, t->project_id, c->env, &err), 1);
    if (pl_registry_create_prompt(db, t->id, t->project_id, name,
                                  "{\"messages\":[{\"role\":\"system\",\"content\":\"" V1_SYSTEM
                                  "\"}]}",
                                  "itest", c->prompt_id, c->v1, &err) != 1)
        fail_msg("create prompt %s: %s", name, err.message);
}

/* A proposal for the prompt (system V2_SYSTEM), approved by the owner through the api: it
 * ships version 2 at the project's ship_canary_pct. Returns the deployment's rollout_pct. */
static int canary_ship(struct canary *c)
{
    char sig[80];
    unsigned char rnd[8];
    pl_random_bytes(rnd, sizeof(rnd));
    snprintf(sig, sizeof(sig), "sha256:canary%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    struct pl_deploy_proposal prop = {
        .tenant_id = c->t.id,
        .project_id = c->t.project_id,
        .cluster_signature = sig,
        .prompt_id = c->prompt_id,
        .base_version_id = c->v1,
        .current_prompt = V1_SYSTEM,
        .proposed_prompt = V2_SYSTEM,
        .rationale = "asks for JSON",
        .shown_trace_ids = "{}",
        .events_topic = proposals_topic,
    };
    struct pl_pg_error err;
    assert_int_equal(pl_deploy_create(db, &prop, c->id, &err), PL_TRANSITION_OK);
    char path[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", c->id);
    struct itest_response r = itest_api("POST", path, c->t.owner_key, NULL);
    if (r.status != 200)
        fail_msg("approve: %ld %s", r.status, r.body);
    assert_string_equal(itest_json_str(&r, "status"), "shipped");
    snprintf(c->v2, sizeof(c->v2), "%s", itest_json_str(&r, "shipped_version_id"));
    json_object *pct = jp(r.json, "rollout_pct");
    assert_non_null(pct);
    int rollout = json_object_get_int(pct);
    itest_response_free(&r);
    return rollout;
}

/* One value of SQL with the deployment id as $1. */
static char *canary_sql1(const char *sql, const char *id)
{
    const char *p[1] = {id};
    return itest_sql(db, sql, 1, p);
}

static void canary_sql_is(const char *sql, const char *id, const char *want)
{
    char *v = canary_sql1(sql, id);
    if (strcmp(v, want) != 0)
        fail_msg("%s\n  with %s: got \"%s\", want \"%s\"", sql, id, v, want);
    free(v);
}

#define STATUS_SQL "SELECT status FROM prompt_deployments WHERE id = $1"

/* A guarded move of the deployment on conn, announced on the stack's topic. */
static enum pl_transition_result canary_move(PGconn *conn, const struct canary *c,
                                             enum pl_deploy_status to, enum pl_deploy_actor actor,
                                             const char *rollout_pct, pl_deploy_hook hook,
                                             char current[16], struct pl_pg_error *err)
{
    struct pl_deploy_change ch = {
        .tenant_id = c->t.id,
        .deployment_id = c->id,
        .to = to,
        .actor = actor,
        .rollout_pct = rollout_pct,
        .events_topic = CANARY_EVENTS,
        .hook = hook,
        .hook_arg = (void *)pl_deploy_actor_name(actor),
    };
    return pl_deploy_transition(conn, &ch, NULL, current, err);
}

/* shipped -> monitoring as the monitor does it; the stack's pl-monitor, when it runs, may
 * have done it first (then this move is a conflict). Either way it must get there. */
static void canary_monitoring(const struct canary *c)
{
    char current[16] = "";
    struct pl_pg_error err;
    enum pl_transition_result r =
        canary_move(db, c, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, NULL, NULL, current, &err);
    assert_true(r == PL_TRANSITION_OK || r == PL_TRANSITION_CONFLICT);
    assert_true(itest_wait_sql(db, STATUS_SQL, c->id, "monitoring", 20000));
}

static enum pl_transition_result canary_promote(PGconn *conn, const struct canary *c,
                                                char current[16], struct pl_pg_error *err)
{
    return canary_move(conn, c, PL_DEPLOY_MONITORING, PL_ACTOR_CANARY_PROMOTE, "100",
                       pl_registry_promote_hook, current, err);
}

/* The version (1 or 2) a reply's system message shows, -1 when it is neither. */
static int canary_version_of_system(const char *s)
{
    return !s ? -1 : strcmp(s, V1_SYSTEM) == 0 ? 1 : strcmp(s, V2_SYSTEM) == 0 ? 2 : -1;
}

static void canary_key_param(char *buf, size_t bufsz, const char *key)
{
    snprintf(buf, bufsz, "%s%s", key ? "&routing_key=" : "", key ? key : "");
}

/* The version the Adaline read of deployment (a row id, or "current") answers to key (NULL:
 * keyless); -1 when it fails. Makes no assertion: threads use it. */
static int canary_adaline_of(struct canary_http *h, const struct canary *c, const char *deployment,
                             const char *key)
{
    char path[512], kp[300];
    canary_key_param(kp, sizeof(kp), key);
    snprintf(path, sizeof(path),
             "/v2/deployments?promptId=%s&deploymentId=%s&deploymentEnvironmentId=%s%s",
             c->prompt_id, deployment, c->env, kp);
    json_object *o;
    long st = canary_get(h, path, c->t.viewer_key, &o);
    json_object *v = st == 200 ? jp(o, "prompt.messages[0].content[0].value") : NULL;
    int version = canary_version_of_system(v ? json_object_get_string(v) : NULL);
    json_object_put(o);
    return version;
}

static int canary_adaline(struct canary_http *h, const struct canary *c, const char *key)
{
    return canary_adaline_of(h, c, "current", key);
}

/* The live entry of the prompt in GET /v1/environments for key (caller puts *root). */
static json_object *canary_env_live(struct canary_http *h, const struct canary *c, const char *key,
                                    json_object **root)
{
    char path[512], kp[300];
    canary_key_param(kp, sizeof(kp), key);
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s%s", c->t.project_id, kp);
    long st = canary_get(h, path, c->t.viewer_key, root);
    if (st != 200)
        fail_msg("GET %s: %ld %s", path, st, h->body);
    json_object *items = jp(*root, "items");
    for (size_t i = 0; items && i < json_object_array_length(items); i++) {
        json_object *e = json_object_array_get_idx(items, i), *live = jp(e, "live");
        if (strcmp(json_object_get_string(jp(e, "id")), c->env) != 0)
            continue;
        for (size_t k = 0; live && k < json_object_array_length(live); k++) {
            json_object *l = json_object_array_get_idx(live, k);
            if (strcmp(json_object_get_string(jp(l, "prompt_id")), c->prompt_id) == 0)
                return l;
        }
    }
    fail_msg("prompt %s is not live in %s: %s", c->prompt_id, c->env, h->body);
    return NULL;
}

static int canary_env(struct canary_http *h, const struct canary *c, const char *key)
{
    json_object *root;
    json_object *l = canary_env_live(h, c, key, &root);
    int v = json_object_get_int(jp(l, "version"));
    const char *id = json_object_get_string(jp(l, "version_id"));
    assert_string_equal(id, v == 1 ? c->v1 : c->v2);
    json_object_put(root);
    return v;
}

/* The version TrueFoundry's list answers for the prompt and key (the one production serves). */
static int canary_tf(struct canary_http *h, const struct canary *c, const char *key)
{
    char path[512], kp[300];
    canary_key_param(kp, sizeof(kp), key);
    snprintf(path, sizeof(path), "/api/ml/v1/prompt-versions?prompt_id=%s%s", c->prompt_id, kp);
    json_object *o;
    long st = canary_get(h, path, c->t.viewer_key, &o);
    if (st != 200 || json_object_get_int(jp(o, "pagination.total")) != 1)
        fail_msg("GET %s: %ld %s", path, st, h->body);
    int v = json_object_get_int(jp(o, "data[0].manifest.version"));
    json_object_put(o);
    return v;
}

/* Every key of n ("user-K") and a keyless read answer version want through the Adaline read,
 * and a sample through the other two. */
static void canary_all_get(struct canary_http *h, const struct canary *c, int n, int want)
{
    char key[32];
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        if (canary_adaline(h, c, key) != want)
            fail_msg("key %s is not served version %d", key, want);
        if (k % 25 == 0) {
            assert_int_equal(canary_env(h, c, key), want);
            assert_int_equal(canary_tf(h, c, key), want);
        }
    }
    assert_int_equal(canary_adaline(h, c, NULL), want);
    assert_int_equal(canary_env(h, c, NULL), want);
}

/* "version@rollout_pct" of every production row of the prompt, oldest first. */
static char *canary_rows(const struct canary *c)
{
    return canary_sql1("SELECT string_agg(v.version || '@' || d.rollout_pct || '/' ||"
                       "   coalesce((SELECT s.version FROM prompt_versions s"
                       "             WHERE s.id = d.stable_version_id)::text, '-'), ','"
                       "   ORDER BY d.seq)"
                       " FROM environment_deployments d JOIN prompt_versions v"
                       "   ON v.id = d.version_id WHERE d.prompt_id = $1",
                       c->prompt_id);
}

/* Outbox rows and audit entries of the deployment. */
#define EVENTS_SQL "SELECT count(*) FROM outbox WHERE key = $1"
#define AUDIT_SQL  "SELECT count(*) FROM audit_log WHERE target = $1"

static void test_canary_routing_is_stable_and_split(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 10);
    struct canary c;
    canary_prompt(&c, &t, "split");
    assert_int_equal(canary_ship(&c), 10);
    char *rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@10/1"); /* the canary row keeps v1 for the others */
    free(rows);

    /* 10,000 distinct keys through the Adaline read: each gets what pl_route_bucket says */
    struct canary_http h;
    canary_http_init(&h);
    char *served = calloc(SPLIT_KEYS + 1, 1);
    int canary = 0;
    for (int k = 0; k < SPLIT_KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%d", k);
        int v = canary_adaline(&h, &c, key);
        if (v < 1)
            fail_msg("Adaline read for %s failed: %s", key, h.body);
        served[k] = (char)('0' + v);
        canary += v == 2;
    }
    print_message("%d of %d keys are served the canary\n", canary, SPLIT_KEYS);
    assert_true(canary >= 800 && canary <= 1200); /* 10 % +- 2 % */
    char *want = canary_sql1("SELECT string_agg(CASE WHEN pl_route_bucket($1::uuid, 'key-' || k)"
                             "   < 10 THEN '2' ELSE '1' END, '' ORDER BY k)"
                             " FROM generate_series(0, 9999) k",
                             c.prompt_id);
    assert_string_equal(served, want);
    free(want);

    /* the same key gets the same version on every read of every endpoint (the Adaline read
     * also by the canary row's id) */
    char *row = canary_sql1("SELECT id FROM environment_deployments WHERE prompt_id = $1"
                            " ORDER BY seq DESC LIMIT 1",
                            c.prompt_id);
    int checked[3] = {0, 0, 0};
    for (int k = 0; k < SPLIT_KEYS && (checked[1] < 20 || checked[2] < 20); k++) {
        int v = served[k] - '0';
        if (checked[v] >= 20)
            continue;
        checked[v]++;
        char key[32];
        snprintf(key, sizeof(key), "key-%d", k);
        for (int round = 0; round < 3; round++) {
            assert_int_equal(canary_adaline(&h, &c, key), v);
            assert_int_equal(canary_adaline_of(&h, &c, row, key), v);
            assert_int_equal(canary_env(&h, &c, key), v);
            assert_int_equal(canary_tf(&h, &c, key), v);
        }
    }
    assert_int_equal(canary_adaline_of(&h, &c, row, NULL), 1);
    free(row);

    /* keyless: the stable version; the listing shows the canary's rollout */
    assert_int_equal(canary_adaline(&h, &c, NULL), 1);
    json_object *root;
    json_object *l = canary_env_live(&h, &c, NULL, &root);
    assert_int_equal(json_object_get_int(jp(l, "version")), 1);
    assert_string_equal(json_object_get_string(jp(l, "version_id")), c.v1);
    assert_int_equal(json_object_get_int(jp(l, "rollout_pct")), 10);
    assert_string_equal(json_object_get_string(jp(l, "stable_version_id")), c.v1);
    assert_string_equal(json_object_get_string(jp(l, "canary_version_id")), c.v2);
    json_object_put(root);
    /* TrueFoundry without a key has no notion of live: every version, as before */
    char path[1024];
    snprintf(path, sizeof(path), "/api/ml/v1/prompt-versions?prompt_id=%s", c.prompt_id);
    json_object *o;
    assert_int_equal(canary_get(&h, path, c.t.viewer_key, &o), 200);
    assert_int_equal(json_object_get_int(jp(o, "pagination.total")), 2);
    json_object_put(o);
    /* the history shows the rollout of each row */
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments?prompt_id=%s", c.env,
             c.prompt_id);
    assert_int_equal(canary_get(&h, path, c.t.viewer_key, &o), 200);
    assert_int_equal(json_object_get_int(jp(o, "items[0].rollout_pct")), 10);
    assert_string_equal(json_object_get_string(jp(o, "items[0].version_id")), c.v2);
    assert_string_equal(json_object_get_string(jp(o, "items[0].stable_version_id")), c.v1);
    assert_int_equal(json_object_get_int(jp(o, "items[1].rollout_pct")), 100);
    assert_true(jnull(jp(o, "items[1]"), "stable_version_id"));
    json_object_put(o);

    /* a bad routing_key is 400 naming it, on every read */
    const char *bad[] = {"", "a%01b", "caf%C3%A9", "a%7Fb"};
    char prefix[3][256];
    snprintf(prefix[0], sizeof(prefix[0]),
             "/v2/deployments?promptId=%s&deploymentId=current&deploymentEnvironmentId=%s",
             c.prompt_id, c.env);
    snprintf(prefix[1], sizeof(prefix[1]), "/v1/environments?project_id=%s", c.t.project_id);
    snprintf(prefix[2], sizeof(prefix[2]), "/api/ml/v1/prompt-versions?prompt_id=%s", c.prompt_id);
    char *long_key = malloc(PL_REGISTRY_ROUTING_KEY_MAX + 2);
    memset(long_key, 'k', PL_REGISTRY_ROUTING_KEY_MAX + 1);
    long_key[PL_REGISTRY_ROUTING_KEY_MAX + 1] = '\0';
    for (int e = 0; e < 3; e++) {
        for (size_t b = 0; b <= sizeof(bad) / sizeof(bad[0]); b++) {
            snprintf(path, sizeof(path), "%s&routing_key=%s", prefix[e],
                     b < sizeof(bad) / sizeof(bad[0]) ? bad[b] : long_key);
            long st = canary_get(&h, path, c.t.viewer_key, &o);
            json_object *err = jp(o, "error");
            if (st != 400 || !err || !strstr(json_object_get_string(err), "routing_key"))
                fail_msg("GET %s: want 400 naming routing_key, got %ld %s", path, st, h.body);
            json_object_put(o);
        }
        /* exactly the longest key is fine */
        long_key[PL_REGISTRY_ROUTING_KEY_MAX] = '\0';
        snprintf(path, sizeof(path), "%s&routing_key=%s", prefix[e], long_key);
        assert_int_equal(canary_get(&h, path, c.t.viewer_key, &o), 200);
        json_object_put(o);
        long_key[PL_REGISTRY_ROUTING_KEY_MAX] = 'k';
    }
    free(long_key);
    /* TrueFoundry: routing_key selects the version itself */
    const char *clash[] = {"&version=1", "&version=latest", "&tag=prod"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s&routing_key=u1%s", prefix[2], clash[i]);
        long st = canary_get(&h, path, c.t.viewer_key, &o);
        json_object *err = jp(o, "error");
        if (st != 400 || !err || !strstr(json_object_get_string(err), "routing_key"))
            fail_msg("GET %s: want 400, got %ld %s", path, st, h.body);
        json_object_put(o);
    }
    free(served);
    canary_http_free(&h);
}

static void test_no_canary_answers_the_newest(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 0);
    struct canary c;
    canary_prompt(&c, &t, "direct");
    struct canary_http h;
    canary_http_init(&h);
    canary_all_get(&h, &c, 50, 1);
    assert_int_equal(canary_ship(&c), 100);
    char *rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@100/-");
    free(rows);
    canary_all_get(&h, &c, 300, 2);
    json_object *root;
    json_object *l = canary_env_live(&h, &c, "user-1", &root);
    assert_int_equal(json_object_get_int(jp(l, "rollout_pct")), 100);
    assert_true(jnull(l, "stable_version_id"));
    assert_true(jnull(l, "canary_version_id"));
    json_object_put(root);
    canary_http_free(&h);
}

static void test_canary_promotion(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 10);
    struct canary c;
    canary_prompt(&c, &t, "promoted");
    assert_int_equal(canary_ship(&c), 10);
    canary_monitoring(&c);
    canary_sql_is("SELECT rollout_pct FROM prompt_deployments WHERE id = $1", c.id, "10");

    char *events = canary_sql1(EVENTS_SQL, c.id), *audits = canary_sql1(AUDIT_SQL, c.id);
    long long nevents = strtoll(events, NULL, 10), naudits = strtoll(audits, NULL, 10);
    free(events);
    free(audits);
    char current[16] = "";
    struct pl_pg_error err;
    assert_int_equal(canary_promote(db, &c, current, &err), PL_TRANSITION_OK);

    /* one event (monitoring -> monitoring at 100, by system:canary_promote), one audit entry */
    char want[32];
    snprintf(want, sizeof(want), "%lld", nevents + 1);
    canary_sql_is(EVENTS_SQL, c.id, want);
    snprintf(want, sizeof(want), "%lld", naudits + 1);
    canary_sql_is(AUDIT_SQL, c.id, want);
    canary_sql_is("SELECT topic || '|' || (payload->>'from') || '|' || (payload->>'to') || '|' ||"
                  " (payload->>'rollout_pct') || '|' || (payload->>'actor') FROM outbox"
                  " WHERE key = $1 ORDER BY id DESC LIMIT 1",
                  c.id, CANARY_EVENTS "|monitoring|monitoring|100|system:canary_promote");
    canary_sql_is("SELECT actor || '|' || action || '|' || (detail->>'from') || '|' ||"
                  " (detail->>'to') FROM audit_log WHERE target = $1 ORDER BY id DESC LIMIT 1",
                  c.id, "system:canary_promote|deployment.transition|monitoring|monitoring");
    canary_sql_is("SELECT status || '|' || rollout_pct FROM prompt_deployments WHERE id = $1", c.id,
                  "monitoring|100");
    char *rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@10/1,2@100/-");
    free(rows);

    /* every key gets the new version now */
    struct canary_http h;
    canary_http_init(&h);
    canary_all_get(&h, &c, 300, 2);

    /* a second promotion is a conflict and writes nothing */
    assert_int_equal(canary_promote(db, &c, current, &err), PL_TRANSITION_CONFLICT);
    assert_string_equal(current, "monitoring");
    snprintf(want, sizeof(want), "%lld", nevents + 1);
    canary_sql_is(EVENTS_SQL, c.id, want);
    snprintf(want, sizeof(want), "%lld", naudits + 1);
    canary_sql_is(AUDIT_SQL, c.id, want);
    rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@10/1,2@100/-");
    free(rows);
    canary_http_free(&h);
}

static void test_promotion_refused_when_something_else_is_live(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 10);
    struct canary c;
    canary_prompt(&c, &t, "overtaken");
    assert_int_equal(canary_ship(&c), 10);
    canary_monitoring(&c);
    /* an owner makes version 1 live for everyone by hand: the canary is over */
    char path[128], body[160];
    snprintf(path, sizeof(path), "/v1/environments/%s/deployments", c.env);
    snprintf(body, sizeof(body), "{\"prompt_id\":\"%s\",\"version_id\":\"%s\"}", c.prompt_id, c.v1);
    struct itest_response r = itest_api("POST", path, c.t.owner_key, body);
    assert_int_equal(r.status, 201);
    assert_int_equal(json_object_get_int(jp(r.json, "rollout_pct")), 100);
    itest_response_free(&r);
    char *events = canary_sql1(EVENTS_SQL, c.id);
    char current[16] = "";
    struct pl_pg_error err;
    assert_int_equal(canary_promote(db, &c, current, &err), PL_TRANSITION_CONFLICT);
    assert_non_null(strstr(err.message, "version 1 of the prompt is live now"));
    canary_sql_is(EVENTS_SQL, c.id, events);
    canary_sql_is("SELECT status || '|' || rollout_pct FROM prompt_deployments WHERE id = $1", c.id,
                  "monitoring|10");
    char *rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@10/1,1@100/-");
    free(rows);
    free(events);
}

static void test_canary_rollback(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 10);
    struct canary c;
    canary_prompt(&c, &t, "rolled");
    assert_int_equal(canary_ship(&c), 10);
    char path[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", c.id);
    struct itest_response r = itest_api("POST", path, c.t.owner_key, NULL);
    if (r.status != 200)
        fail_msg("rollback: %ld %s", r.status, r.body);
    assert_string_equal(itest_json_str(&r, "status"), "rolled_back");
    assert_int_equal(json_object_get_int(jp(r.json, "rollout_pct")), 0);
    itest_response_free(&r);
    canary_sql_is("SELECT count(*) FROM outbox WHERE key = $1 AND payload->>'to' = 'rolled_back'",
                  c.id, "1");
    canary_sql_is("SELECT topic || '|' || (payload->>'rollout_pct') FROM outbox WHERE key = $1"
                  " AND payload->>'to' = 'rolled_back'",
                  c.id, CANARY_EVENTS "|0");
    canary_sql_is("SELECT count(*) FROM audit_log WHERE target = $1"
                  " AND action = 'deployment.transition' AND detail->>'to' = 'rolled_back'",
                  c.id, "1");
    canary_sql_is("SELECT status || '|' || rollout_pct FROM prompt_deployments WHERE id = $1", c.id,
                  "rolled_back|0");
    char *rows = canary_rows(&c);
    assert_string_equal(rows, "1@100/-,2@10/1,1@100/-");
    free(rows);
    struct canary_http h;
    canary_http_init(&h);
    canary_all_get(&h, &c, 300, 1);
    canary_http_free(&h);
}

/* Reject works on any non-terminal deployment: a live one (here a canary at 10 %, and one
 * fully shipped and watched) is taken back like a rollback, in the same guarded move, and ends
 * rejected with the reason; when something newer is live the reject is refused (409) and
 * nothing changes. */
static void test_reject_of_a_live_deployment(void **state)
{
    (void)state;
    for (int watched = 0; watched < 2; watched++) {
        struct itest_tenant t;
        canary_tenant(&t, watched ? 0 : 10);
        struct canary c;
        canary_prompt(&c, &t, "rejected-live");
        assert_int_equal(canary_ship(&c), watched ? 100 : 10);
        if (watched)
            canary_monitoring(&c);
        char path[128];
        snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/reject", c.id);
        struct itest_response r =
            itest_api("POST", path, c.t.owner_key, "{\"reason\": \"the tone is wrong\"}");
        if (r.status != 200)
            fail_msg("reject: %ld %s", r.status, r.body);
        assert_string_equal(itest_json_str(&r, "status"), "rejected");
        assert_string_equal(itest_json_str(&r, "rejection_reason"), "the tone is wrong");
        assert_non_null(itest_json_str(&r, "rolled_back_at"));
        assert_int_equal(json_object_get_int(jp(r.json, "rollout_pct")), 0);
        itest_response_free(&r);
        char *rows = canary_rows(&c);
        assert_string_equal(rows, watched ? "1@100/-,2@100/-,1@100/-" : "1@100/-,2@10/1,1@100/-");
        free(rows);
        canary_sql_is("SELECT count(*) || '|' || min(detail->>'reason') FROM audit_log"
                      " WHERE target = $1 AND detail->>'to' = 'rejected'",
                      c.id, "1|the tone is wrong");
        struct canary_http h;
        canary_http_init(&h);
        canary_all_get(&h, &c, 100, 1);
        canary_http_free(&h);
    }
    /* something newer is live: the reject is refused and the deployment stays shipped */
    struct itest_tenant t;
    canary_tenant(&t, 0);
    struct canary c;
    canary_prompt(&c, &t, "rejected-late");
    assert_int_equal(canary_ship(&c), 100);
    struct pl_pg_error err;
    char v3[37];
    int number;
    assert_int_equal(pl_pg_exec(db, "BEGIN", 0, NULL, &err), 0);
    assert_int_equal(pl_registry_add_version(db, t.id, c.prompt_id,
                                             "{\"messages\":[{\"role\":\"system\","
                                             "\"content\":\"v3\"}]}",
                                             "itest", v3, &number, &err),
                     0);
    assert_int_equal(pl_registry_deploy(db, t.id, c.env, c.prompt_id, v3, "itest", &err), 0);
    assert_int_equal(pl_pg_exec(db, "COMMIT", 0, NULL, &err), 0);
    char path[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/reject", c.id);
    struct itest_response r = itest_api("POST", path, c.t.owner_key, "{\"reason\": \"too late\"}");
    assert_int_equal(r.status, 409);
    itest_response_free(&r);
    canary_sql_is(STATUS_SQL, c.id, "shipped");
}

/* The race: a promotion (on its own connection) and an owner's rollback through the api,
 * released together, one of them after a random head start of the other (0 to 5 ms, about
 * the time each move takes) so that the rounds see both orders and transactions waiting on
 * each other; a reader checks that once the
 * deployment reads rolled_back, the registry never serves the new version to a canary key. */
struct race {
    const struct canary *c;
    pthread_barrier_t *start;
    PGconn *conn;
    int promote_delay_ms, rollback_delay_ms;
    enum pl_transition_result promoted;
    char current[16];
    struct pl_pg_error err;
    long rollback_status;
    const char *canary_key;
    atomic_int stop;
    int reads_after, violations;
};

static void *race_promote(void *arg)
{
    struct race *r = arg;
    pthread_barrier_wait(r->start);
    if (r->promote_delay_ms)
        pl_sleep_ms(r->promote_delay_ms);
    r->promoted = canary_promote(r->conn, r->c, r->current, &r->err);
    return NULL;
}

static void *race_rollback(void *arg)
{
    struct race *r = arg;
    struct canary_http h;
    canary_http_init(&h);
    char path[160], url[2048], auth[128];
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", r->c->id);
    snprintf(url, sizeof(url), "%s%s", getenv("PL_API_URL"), path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->c->t.owner_key);
    struct curl_slist *hdr = curl_slist_append(NULL, auth);
    curl_easy_setopt(h.c, CURLOPT_URL, url);
    curl_easy_setopt(h.c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h.c, CURLOPT_CUSTOMREQUEST, "POST");
    curl_easy_setopt(h.c, CURLOPT_WRITEFUNCTION, canary_http_write);
    curl_easy_setopt(h.c, CURLOPT_WRITEDATA, &h);
    curl_easy_setopt(h.c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h.c, CURLOPT_NOSIGNAL, 1L);
    pthread_barrier_wait(r->start);
    if (r->rollback_delay_ms)
        pl_sleep_ms(r->rollback_delay_ms);
    if (curl_easy_perform(h.c) == CURLE_OK)
        curl_easy_getinfo(h.c, CURLINFO_RESPONSE_CODE, &r->rollback_status);
    curl_slist_free_all(hdr);
    canary_http_free(&h);
    return NULL;
}

static void *race_read(void *arg)
{
    struct race *r = arg;
    struct canary_http h;
    canary_http_init(&h);
    PGconn *conn = PQconnectdb(getenv("PL_PG_DSN"));
    const char *p[1] = {r->c->id};
    while (PQstatus(conn) == CONNECTION_OK) {
        bool last = atomic_load(&r->stop) != 0; /* one more pass after the movers are done */
        PGresult *res = PQexecParams(conn, STATUS_SQL, 1, NULL, p, NULL, NULL, 0);
        bool rolled_back = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                           strcmp(PQgetvalue(res, 0, 0), "rolled_back") == 0;
        PQclear(res);
        /* the status was read (committed) before this read began */
        int v = canary_adaline(&h, r->c, r->canary_key);
        if (rolled_back) {
            r->reads_after++;
            r->violations += v != 1;
        }
        if (last)
            break;
    }
    PQfinish(conn);
    canary_http_free(&h);
    return NULL;
}

static void test_promotion_racing_rollback(void **state)
{
    (void)state;
    struct itest_tenant t;
    canary_tenant(&t, 10);
    int promoted_first = 0, rolled_back_first = 0;
    /* one connection for every promotion: a new backend's first statements are slower than
     * the api's pooled ones, which would hand every race to the rollback */
    PGconn *promote_conn = itest_pg(NULL);
    for (int round = 0; round < 24; round++) {
        struct canary c;
        char name[32];
        snprintf(name, sizeof(name), "race-%d", round);
        canary_prompt(&c, &t, name);
        assert_int_equal(canary_ship(&c), 10);
        canary_monitoring(&c);
        /* a key inside the canary: served version 2 until the rollback */
        char *key = canary_sql1("SELECT 'user-' || k FROM generate_series(0, 999) k"
                                " WHERE pl_route_bucket($1::uuid, 'user-' || k) < 10"
                                " ORDER BY k LIMIT 1",
                                c.prompt_id);
        struct canary_http h;
        canary_http_init(&h);
        assert_int_equal(canary_adaline(&h, &c, key), 2);

        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        unsigned char head;
        pl_random_bytes(&head, 1);
        struct race r = {.c = &c,
                         .start = &start,
                         .conn = promote_conn,
                         .canary_key = key,
                         .promote_delay_ms = head & 0x80 ? head % 6 : 0,
                         .rollback_delay_ms = head & 0x80 ? 0 : head % 6};
        atomic_init(&r.stop, 0);
        pthread_t tp, tr, tread;
        pthread_create(&tread, NULL, race_read, &r);
        pthread_create(&tp, NULL, race_promote, &r);
        pthread_create(&tr, NULL, race_rollback, &r);
        pthread_join(tp, NULL);
        pthread_join(tr, NULL);
        atomic_store(&r.stop, 1);
        pthread_join(tread, NULL);
        pthread_barrier_destroy(&start);

        /* the rollback always wins its move: from monitoring at 10 % or at 100 % */
        assert_int_equal(r.rollback_status, 200);
        bool promoted = r.promoted == PL_TRANSITION_OK;
        if (!promoted) {
            assert_int_equal(r.promoted, PL_TRANSITION_CONFLICT);
            assert_string_equal(r.current, "rolled_back");
        }
        promoted ? promoted_first++ : rolled_back_first++;
        canary_sql_is("SELECT status || '|' || rollout_pct FROM prompt_deployments"
                      " WHERE id = $1",
                      c.id, "rolled_back|0");
        /* exactly one event and one audit entry per successful move, promotion first */
        canary_sql_is("SELECT count(*) FROM outbox WHERE key = $1 AND payload->>'to' = "
                      "'monitoring' AND payload->>'from' = 'monitoring'",
                      c.id, promoted ? "1" : "0");
        canary_sql_is("SELECT count(*) FROM audit_log WHERE target = $1 AND"
                      " detail->>'to' = 'monitoring' AND detail->>'from' = 'monitoring'",
                      c.id, promoted ? "1" : "0");
        canary_sql_is("SELECT count(*) FROM outbox WHERE key = $1"
                      " AND payload->>'to' = 'rolled_back'",
                      c.id, "1");
        canary_sql_is("SELECT count(*) FROM audit_log WHERE target = $1"
                      " AND detail->>'to' = 'rolled_back'",
                      c.id, "1");
        canary_sql_is("SELECT string_agg(payload->>'to', ',' ORDER BY id) FROM outbox"
                      " WHERE key = $1 AND (payload->>'to' = 'rolled_back'"
                      "   OR payload->>'from' = 'monitoring' AND payload->>'to' = 'monitoring')",
                      c.id, promoted ? "monitoring,rolled_back" : "rolled_back");
        char *rows = canary_rows(&c);
        assert_string_equal(rows,
                            promoted ? "1@100/-,2@10/1,2@100/-,1@100/-" : "1@100/-,2@10/1,1@100/-");
        free(rows);
        /* the base version for every key, and never the new one once rolled back */
        assert_int_equal(r.violations, 0);
        assert_true(r.reads_after >= 1);
        canary_all_get(&h, &c, 100, 1);
        assert_int_equal(canary_adaline(&h, &c, key), 1);
        canary_http_free(&h);
        free(key);
    }
    PQfinish(promote_conn);
    print_message("promotion committed first in %d rounds, the rollback in %d\n", promoted_first,
                  rolled_back_first);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    db = itest_pg(NULL);
    itest_topic("canary-proposals", proposals_topic);
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
        cmocka_unit_test(test_canary_routing_is_stable_and_split),
        cmocka_unit_test(test_no_canary_answers_the_newest),
        cmocka_unit_test(test_canary_promotion),
        cmocka_unit_test(test_promotion_refused_when_something_else_is_live),
        cmocka_unit_test(test_canary_rollback),
        cmocka_unit_test(test_reject_of_a_live_deployment),
        cmocka_unit_test(test_promotion_racing_rollback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
