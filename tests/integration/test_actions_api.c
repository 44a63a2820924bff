/* The actions API over HTTP: the tenant's actions and the HITL queue paged by a
 * cursor that visits every row once, filters and their refusals, one action, reject as a
 * guarded transition (owner only, one winner of two racing rejects, event and audit entry),
 * the plan gate, and a trace with its fresh evaluations and remediation history. */
#include "action.h"
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC "pl.actions"

static PGconn *db;
static struct itest_tenant team, other;
static char policy_a[37], policy_b[37], second_project[37];

static char *sql1(const char *sql, const char *param)
{
    const char *p[1] = {param};
    return itest_sql(db, sql, 1, p);
}

static void expect_sql(const char *sql, const char *param, const char *want)
{
    char *v = sql1(sql, param);
    if (strcmp(v, want) != 0)
        fail_msg("%s\n  with %s: got \"%s\", want \"%s\"", sql, param, v, want);
    free(v);
}

static void policy_new(const struct itest_tenant *t, const char *name, char id[37])
{
    const char *p[3] = {t->id, t->project_id, name};
    char *v = itest_sql(db,
                        "INSERT INTO policies (tenant_id, project_id, name, trigger_type,"
                        " action_type, status, created_by)"
                        " VALUES ($1, $2, $3, 'eval_score', 'retry', 'active', 'itest')"
                        " RETURNING id",
                        3, p);
    snprintf(id, 37, "%s", v);
    free(v);
}

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &team);
    itest_tenant_new(db, "enterprise", &other);
    policy_new(&team, "a", policy_a);
    policy_new(&team, "b", policy_b);
    char *v =
        sql1("INSERT INTO projects (tenant_id, name) VALUES ($1, 'second') RETURNING id", team.id);
    snprintf(second_project, sizeof(second_project), "%s", v);
    free(v);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

/* An action as the controller would record it; project NULL: the tenant's first project. */
static void action_new(const struct itest_tenant *t, const char *project, const char *trace,
                       const char *policy, int attempt, const char *type,
                       enum pl_action_status status, char id[37])
{
    struct pl_action_new a = {
        .tenant_id = t->id,
        .project_id = project ? project : t->project_id,
        .trace_id = trace,
        .policy_id = policy,
        .attempt = attempt,
        .action_type = type,
        .status = status,
        .escalation_reason =
            status == PL_ACTION_PENDING_APPROVAL ? "retry_threshold_exceeded" : NULL,
        .require_approval = status == PL_ACTION_PENDING_APPROVAL,
        .events_topic = TOPIC,
    };
    struct pl_pg_error err;
    if (pl_action_create(db, &a, id, NULL, &err) != PL_TRANSITION_OK)
        fail_msg("pl_action_create %s/%d: %s", trace, attempt, err.message);
}

static struct itest_response get(const char *path, const char *key)
{
    return itest_api("GET", path, key, NULL);
}

static long status_of(const char *method, const char *path, const char *key, const char *body)
{
    struct itest_response r = itest_api(method, path, key, body);
    long s = r.status;
    if (s >= 400)
        assert_non_null(itest_json_str(&r, "error"));
    itest_response_free(&r);
    return s;
}

static json_object *member(json_object *o, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, name, &v))
        fail_msg("no member %s in %s", name, json_object_to_json_string(o));
    return v;
}

#define WALK_MAX (40 * 64) /* room for the ids of every walk here */

/*
 * Walks a list from its first page with limit, checking each page's size against sizes
 * (npages of them) and that the last one has a null next_cursor. @returns the ids in the
 * order seen, comma-separated (caller frees).
 */
static char *walk(const char *base, const char *key, int limit, const int *sizes, int npages)
{
    char *seen = calloc(1, WALK_MAX);
    char path[512], cursor[128] = "";
    for (int page = 0; page < npages; page++) {
        snprintf(path, sizeof(path), "%s%climit=%d%s%s", base, strchr(base, '?') ? '&' : '?', limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        struct itest_response r = get(path, key);
        if (r.status != 200)
            fail_msg("GET %s: %ld %s", path, r.status, r.body);
        json_object *items = member(r.json, "items");
        if ((int)json_object_array_length(items) != sizes[page])
            fail_msg("page %d of %s: %zu items, want %d", page, base,
                     json_object_array_length(items), sizes[page]);
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            const char *id =
                json_object_get_string(member(json_object_array_get_idx(items, i), "id"));
            size_t used = strlen(seen);
            snprintf(seen + used, WALK_MAX - used, "%s%s", used ? "," : "", id);
        }
        json_object *next = member(r.json, "next_cursor");
        if (page == npages - 1) {
            assert_null(next);
        } else {
            assert_true(json_object_is_type(next, json_type_string));
            snprintf(cursor, sizeof(cursor), "%s", json_object_get_string(next));
        }
        itest_response_free(&r);
    }
    return seen;
}

/* Seven actions, four of them created at the same instant (the id breaks the tie): limit 3
 * gives 3 + 3 + 1, each action once, in (created_at, id) descending order. */
static void test_list_pages_and_filters(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char ids[7][37], policy[37];
    policy_new(&t, "p", policy);
    for (int i = 0; i < 7; i++) {
        char trace[32];
        snprintf(trace, sizeof(trace), "page-%d", i % 3);
        action_new(&t, NULL, trace, i < 2 ? policy : NULL, i + 1, i % 2 ? "retry" : "escalate",
                   i % 2 ? PL_ACTION_EXECUTED : PL_ACTION_PENDING_APPROVAL, ids[i]);
    }
    free(sql1("UPDATE control_actions SET created_at = '2026-01-01T00:00:00Z'"
              " WHERE tenant_id = $1 AND attempt BETWEEN 2 AND 5",
              t.id));
    char *want = sql1("SELECT string_agg(id::text, ',' ORDER BY created_at DESC, id DESC)"
                      " FROM control_actions WHERE tenant_id = $1",
                      t.id);
    char *seen = walk("/v1/control/actions", t.viewer_key, 3, (const int[]){3, 3, 1}, 3);
    assert_string_equal(seen, want);
    free(seen);
    free(want);
    seen = walk("/v1/control/actions", t.member_key, 200, (const int[]){7}, 1);
    free(seen);

    /* filters, alone and together */
    static const struct {
        const char *query;
        int n;
    } filters[] = {
        {"?status=executed", 3},
        {"?status=pending_approval", 4},
        {"?status=dry_run", 0},
        {"?trace_id=page-0", 3},
        {"?trace_id=page-0&status=pending_approval", 2},
        {"?trace_id=nope", 0},
    };
    for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/control/actions%s", filters[i].query);
        seen = walk(path, t.owner_key, 50, (const int[]){filters[i].n}, 1);
        free(seen);
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/control/actions?policy_id=%s", policy);
    free(walk(path, t.owner_key, 50, (const int[]){2}, 1));
    snprintf(path, sizeof(path), "/v1/control/actions?project_id=%s", t.project_id);
    free(walk(path, t.owner_key, 50, (const int[]){7}, 1));
    /* another tenant's project and policy filter to nothing, never to its rows */
    snprintf(path, sizeof(path), "/v1/control/actions?project_id=%s", t.project_id);
    free(walk(path, team.owner_key, 50, (const int[]){0}, 1));
    snprintf(path, sizeof(path), "/v1/control/actions?policy_id=%s", policy);
    free(walk(path, team.owner_key, 50, (const int[]){0}, 1));

    static const char *const bad[] = {
        "?status=done",
        "?status=",
        "?policy_id=nope",
        "?project_id=nope",
        "?trace_id=",
        "?cursor=!!!",
        "?cursor=bm90IGEgY3Vyc29y", /* base64url of "not a cursor" */
        "?cursor=cXwxfDEyMw",       /* a queue cursor with no uuid */
        "?limit=0",
        "?limit=201",
        "?offset=3",
        "?sort=id",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/control/actions%s", bad[i]);
        if (status_of("GET", path, t.viewer_key, NULL) != 400)
            fail_msg("GET %s is not a 400", path);
    }
    struct itest_response r = get("/v1/control/actions?status=done", t.viewer_key);
    assert_non_null(strstr(itest_json_str(&r, "error"), "status"));
    itest_response_free(&r);
    r = get("/v1/control/actions?policy_id=nope", t.viewer_key);
    assert_non_null(strstr(itest_json_str(&r, "error"), "policy_id"));
    itest_response_free(&r);
    /* a trace id of 512 bytes is a filter; 513 is refused */
    char longq[600];
    int n = snprintf(longq, sizeof(longq), "/v1/control/actions?trace_id=");
    memset(longq + n, 'x', 512);
    longq[n + 512] = '\0';
    assert_int_equal(status_of("GET", longq, t.viewer_key, NULL), 200);
    longq[n + 512] = 'x';
    longq[n + 513] = '\0';
    assert_int_equal(status_of("GET", longq, t.viewer_key, NULL), 400);
}

/* The queue holds escalations only, oldest first (by created_at, not by insertion), and
 * pages the same way; a list cursor is not a queue cursor. */
static void test_pending_queue(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "enterprise", &t);
    char ids[5][37];
    action_new(&t, NULL, "q-1", NULL, 1, "escalate", PL_ACTION_PENDING_APPROVAL, ids[0]);
    action_new(&t, NULL, "q-2", NULL, 1, "escalate", PL_ACTION_PENDING_APPROVAL, ids[1]);
    action_new(&t, NULL, "q-3", NULL, 1, "retry", PL_ACTION_EXECUTED, ids[2]);
    action_new(&t, NULL, "q-4", NULL, 1, "escalate", PL_ACTION_PENDING_APPROVAL, ids[3]);
    char *proj =
        sql1("INSERT INTO projects (tenant_id, name) VALUES ($1, 'q2') RETURNING id", t.id);
    action_new(&t, proj, "q-5", NULL, 1, "escalate", PL_ACTION_PENDING_APPROVAL, ids[4]);
    /* the last one created is the oldest */
    free(sql1("UPDATE control_actions SET created_at = created_at - interval '1 hour'"
              " WHERE id = $1",
              ids[4]));
    char want[4 * 40];
    snprintf(want, sizeof(want), "%s,%s,%s,%s", ids[4], ids[0], ids[1], ids[3]);
    char *seen = walk("/v1/control/actions/pending", t.viewer_key, 3, (const int[]){3, 1}, 2);
    assert_string_equal(seen, want);
    free(seen);
    seen = walk("/v1/control/actions/pending", t.owner_key, 1, (const int[]){1, 1, 1, 1}, 4);
    assert_string_equal(seen, want);
    free(seen);
    char path[256];
    snprintf(path, sizeof(path), "/v1/control/actions/pending?project_id=%s", proj);
    seen = walk(path, t.member_key, 50, (const int[]){1}, 1);
    assert_string_equal(seen, ids[4]);
    free(seen);
    /* the other tenant's queue does not show these */
    snprintf(path, sizeof(path), "/v1/control/actions/pending?project_id=%s", t.project_id);
    free(walk(path, team.owner_key, 50, (const int[]){0}, 1));
    free(proj);

    struct itest_response r = get("/v1/control/actions?limit=1", t.viewer_key);
    assert_int_equal(r.status, 200);
    snprintf(path, sizeof(path), "/v1/control/actions/pending?cursor=%s",
             json_object_get_string(member(r.json, "next_cursor")));
    itest_response_free(&r);
    assert_int_equal(status_of("GET", path, t.viewer_key, NULL), 400);
    assert_int_equal(
        status_of("GET", "/v1/control/actions/pending?status=executed", t.viewer_key, NULL), 400);
    assert_int_equal(
        status_of("GET", "/v1/control/actions/pending?project_id=x", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("POST", "/v1/control/actions/pending", t.owner_key, NULL), 405);
}

static void test_get_one(void **state)
{
    (void)state;
    char id[37], path[128];
    action_new(&team, NULL, "get-1", policy_a, 1, "retry", PL_ACTION_EXECUTED, id);
    snprintf(path, sizeof(path), "/v1/control/actions/%s", id);
    struct itest_response r = get(path, team.viewer_key);
    assert_int_equal(r.status, 200);
    static const char *const fields[] = {"id",
                                         "tenant_id",
                                         "project_id",
                                         "trace_id",
                                         "policy_id",
                                         "rule_id",
                                         "action_type",
                                         "status",
                                         "payload",
                                         "result",
                                         "escalation_reason",
                                         "retry_count",
                                         "require_approval",
                                         "executed_at",
                                         "created_at",
                                         "updated_at"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        member(r.json, fields[i]);
    assert_string_equal(itest_json_str(&r, "id"), id);
    assert_string_equal(itest_json_str(&r, "status"), "executed");
    assert_string_equal(itest_json_str(&r, "policy_id"), policy_a);
    itest_response_free(&r);
    assert_int_equal(status_of("GET", path, other.owner_key, NULL), 404);
    assert_int_equal(status_of("GET", "/v1/control/actions/not-a-uuid", team.owner_key, NULL), 404);
    assert_int_equal(status_of("GET", "/v1/control/actions/00000000-0000-4000-8000-000000000000",
                               team.owner_key, NULL),
                     404);
}

#define EVENTS_SQL "SELECT count(*) FROM outbox WHERE key = $1"
#define AUDIT_SQL  "SELECT count(*) FROM audit_log WHERE target = $1"

static void test_reject(void **state)
{
    (void)state;
    char id[37], path[128];
    action_new(&team, NULL, "rej-1", policy_a, 4, "escalate", PL_ACTION_PENDING_APPROVAL, id);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", id);
    expect_sql(EVENTS_SQL, id, "1");
    expect_sql(AUDIT_SQL, id, "1");

    /* refused before anything changes */
    assert_int_equal(status_of("POST", path, team.member_key, NULL), 403);
    assert_int_equal(status_of("POST", path, team.viewer_key, NULL), 403);
    assert_int_equal(status_of("POST", path, other.owner_key, NULL), 404);
    assert_int_equal(status_of("POST", "/v1/control/actions/x/reject", team.owner_key, NULL), 404);
    static const struct {
        const char *body;
        long status;
    } bodies[] = {
        {"{\"reason\": 5}", 400},    {"{\"why\": \"no\"}", 400},
        {"[\"no\"]", 400},           {"{\"reason\": \"a\"", 400},
        {"{\"reason\": \"\"}", 422}, {"{\"reason\": \"a\\u0000b\"}", 400},
        {"{\"reason\": null}", 400},
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        long s = status_of("POST", path, team.owner_key, bodies[i].body);
        if (s != bodies[i].status)
            fail_msg("reject with %s: %ld, want %ld", bodies[i].body, s, bodies[i].status);
    }
    char big[2100] = "{\"reason\": \"";
    size_t n = strlen(big);
    memset(big + n, 'r', 2001);
    snprintf(big + n + 2001, sizeof(big) - n - 2001, "\"}");
    assert_int_equal(status_of("POST", path, team.owner_key, big), 422);
    expect_sql("SELECT status FROM control_actions WHERE id = $1", id, "pending_approval");
    expect_sql(EVENTS_SQL, id, "1");

    /* the kill switch stops execution, not a rejection */
    assert_int_equal(status_of("POST", "/v1/control/killswitch/enable", team.owner_key, NULL), 200);
    struct itest_response r =
        itest_api("POST", path, team.owner_key, "{\"reason\": \"wrong escalation\"}");
    assert_int_equal(status_of("POST", "/v1/control/killswitch/disable", team.owner_key, NULL),
                     200);
    if (r.status != 200)
        fail_msg("reject: %ld %s", r.status, r.body);
    assert_string_equal(itest_json_str(&r, "status"), "failed");
    json_object *result = member(r.json, "result");
    const char *by = json_object_get_string(member(result, "rejected_by"));
    assert_true(strncmp(by, "key:", 4) == 0);
    assert_string_equal(json_object_get_string(member(result, "reason")), "wrong escalation");
    expect_sql("SELECT status || '|' || (result->>'reason') FROM control_actions WHERE id = $1", id,
               "failed|wrong escalation");
    expect_sql("SELECT result->>'rejected_by' FROM control_actions WHERE id = $1", id, by);
    expect_sql(EVENTS_SQL, id, "2");
    expect_sql("SELECT payload->>'from' || '>' || (payload->>'to') FROM outbox WHERE key = $1"
               " ORDER BY id DESC LIMIT 1",
               id, "pending_approval>failed");
    expect_sql(AUDIT_SQL, id, "2");
    char audit[128];
    snprintf(audit, sizeof(audit), "%s|wrong escalation", by);
    expect_sql("SELECT actor || '|' || (detail->>'reason') FROM audit_log WHERE target = $1"
               " AND action = 'action.transition'",
               id, audit);
    itest_response_free(&r);

    /* only pending_approval can be rejected; the answer says what the action is now */
    r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 409);
    assert_string_equal(itest_json_str(&r, "status"), "failed");
    assert_string_equal(itest_json_str(&r, "error"),
                        "cannot reject: the action is failed, not pending_approval");
    itest_response_free(&r);
    char done[37];
    action_new(&team, NULL, "rej-2", policy_a, 1, "retry", PL_ACTION_EXECUTED, done);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", done);
    r = itest_api("POST", path, team.owner_key, "{}");
    assert_int_equal(r.status, 409);
    assert_string_equal(itest_json_str(&r, "status"), "executed");
    assert_string_equal(itest_json_str(&r, "error"),
                        "cannot reject: the action is executed, not pending_approval");
    itest_response_free(&r);
    expect_sql(EVENTS_SQL, id, "2");
    expect_sql(EVENTS_SQL, done, "1");

    /* no body: a rejection without a reason */
    action_new(&team, NULL, "rej-3", policy_a, 4, "escalate", PL_ACTION_PENDING_APPROVAL, id);
    snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", id);
    r = itest_api("POST", path, team.owner_key, NULL);
    assert_int_equal(r.status, 200);
    result = member(r.json, "result");
    assert_null(member(result, "reason"));
    itest_response_free(&r);
}

/* Starter and pro plans have no control loop: 402 before the role check. */
static void test_plan_gate(void **state)
{
    (void)state;
    static const char *const plans[] = {"starter", "pro"};
    for (size_t i = 0; i < 2; i++) {
        struct itest_tenant t;
        itest_tenant_new(db, plans[i], &t);
        char id[37], path[128];
        action_new(&t, NULL, "gate", NULL, 1, "escalate", PL_ACTION_PENDING_APPROVAL, id);
        assert_int_equal(status_of("GET", "/v1/control/actions", t.viewer_key, NULL), 402);
        assert_int_equal(status_of("GET", "/v1/control/actions/pending", t.owner_key, NULL), 402);
        snprintf(path, sizeof(path), "/v1/control/actions/%s", id);
        assert_int_equal(status_of("GET", path, t.owner_key, NULL), 402);
        snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", id);
        assert_int_equal(status_of("POST", path, t.owner_key, NULL), 402);
        assert_int_equal(status_of("POST", path, t.member_key, NULL), 402);
        expect_sql("SELECT status FROM control_actions WHERE id = $1", id, "pending_approval");
    }
    assert_int_equal(status_of("GET", "/v1/control/actions", NULL, NULL), 401);
}

struct rejecter {
    const char *path;
    pthread_barrier_t *start;
    long status;
    char current[24];
};

static void *reject_once(void *arg)
{
    struct rejecter *r = arg;
    pthread_barrier_wait(r->start);
    struct itest_response res =
        itest_api("POST", r->path, team.owner_key, "{\"reason\": \"race\"}");
    r->status = res.status;
    const char *s = itest_json_str(&res, "status");
    snprintf(r->current, sizeof(r->current), "%s", s ? s : "");
    itest_response_free(&res);
    return NULL;
}

/* Two owners reject the same escalation at once, 10 times: one 200, one 409 that says
 * failed; one transition event and one audit entry. */
static void test_reject_race(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        char trace[32], id[37], path[128];
        snprintf(trace, sizeof(trace), "race-%d", round);
        action_new(&team, NULL, trace, policy_b, 3, "escalate", PL_ACTION_PENDING_APPROVAL, id);
        snprintf(path, sizeof(path), "/v1/control/actions/%s/reject", id);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        struct rejecter r[2] = {{.path = path, .start = &start}, {.path = path, .start = &start}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, reject_once, &r[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        int winner = r[0].status == 200 ? 0 : 1;
        if (r[winner].status != 200 || r[1 - winner].status != 409)
            fail_msg("round %d: %ld and %ld", round, r[0].status, r[1].status);
        assert_string_equal(r[winner].current, "failed");
        assert_string_equal(r[1 - winner].current, "failed");
        expect_sql(EVENTS_SQL, id, "2");
        expect_sql(AUDIT_SQL, id, "2");
    }
}

static void trace_new(const struct itest_tenant *t, const char *trace, const char *eval)
{
    const char *p[4] = {t->id, t->project_id, trace, eval};
    free(itest_sql(db,
                   "INSERT INTO traces (tenant_id, project_id, id, name, model, input, output,"
                   " spans, eval, tags, metadata, latency_ms, cost, prompt_name, prompt_version,"
                   " received_at)"
                   " VALUES ($1, $2, $3, 'answer', 'gpt-4o-mini',"
                   " '[{\"role\":\"user\",\"content\":\"hi\"}]', 'hello', '[]', $4::jsonb,"
                   " '[\"prod\"]', '{\"user\":\"u1\"}', 120, 0.002, 'support', '3',"
                   " '2026-02-01T10:00:00Z')",
                   4, p));
}

/* A trace with its fresh evaluations, its depth (executed retries only) and its history in
 * attempt order (created out of order here). */
static void test_trace(void **state)
{
    (void)state;
    trace_new(&team, "tr-1",
              "{\"tone\": {\"passed\": true, \"feedback\": null},"
              " \"correctness\": {\"passed\": false, \"feedback\": \"wrong total\"}}");
    char ids[6][37];
    action_new(&team, NULL, "tr-1", policy_b, 3, "fallback_model", PL_ACTION_EXECUTED, ids[2]);
    action_new(&team, NULL, "tr-1", policy_a, 1, "retry", PL_ACTION_EXECUTED, ids[0]);
    action_new(&team, NULL, "tr-1", policy_a, 2, "retry", PL_ACTION_FAILED, ids[1]);
    action_new(&team, NULL, "tr-1", policy_a, 5, "escalate", PL_ACTION_PENDING_APPROVAL, ids[4]);
    action_new(&team, NULL, "tr-1", policy_a, 4, "retry", PL_ACTION_EXECUTED, ids[3]);
    action_new(&team, NULL, "tr-1", policy_b, 1, "retry", PL_ACTION_DRY_RUN, ids[5]);
    /* the same trace id in another project is another trace */
    action_new(&team, second_project, "tr-1", NULL, 1, "retry", PL_ACTION_EXECUTED, (char[37]){0});

    char path[256];
    snprintf(path, sizeof(path), "/v1/traces/tr-1?project_id=%s", team.project_id);
    struct itest_response r = get(path, team.viewer_key);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    assert_string_equal(itest_json_str(&r, "id"), "tr-1");
    assert_string_equal(itest_json_str(&r, "project_id"), team.project_id);
    assert_string_equal(itest_json_str(&r, "model"), "gpt-4o-mini");
    assert_string_equal(itest_json_str(&r, "output"), "hello");
    assert_string_equal(itest_json_str(&r, "received_at"), "2026-02-01T10:00:00.000000Z");
    assert_int_equal(json_object_get_int(member(r.json, "latency_ms")), 120);
    assert_null(member(r.json, "error"));
    json_object *prompt = member(r.json, "prompt");
    assert_string_equal(json_object_get_string(member(prompt, "name")), "support");
    assert_string_equal(json_object_get_string(member(prompt, "version")), "3");
    assert_int_equal(json_object_array_length(member(r.json, "input")), 1);
    member(r.json, "spans");
    member(r.json, "tags");
    member(r.json, "metadata");
    member(r.json, "cost");

    json_object *ev = member(r.json, "evaluations");
    assert_int_equal(json_object_array_length(ev), 2);
    json_object *e0 = json_object_array_get_idx(ev, 0), *e1 = json_object_array_get_idx(ev, 1);
    assert_string_equal(json_object_get_string(member(e0, "metric_name")), "correctness");
    assert_false(json_object_get_boolean(member(e0, "passed")));
    assert_string_equal(json_object_get_string(member(e0, "feedback")), "wrong total");
    assert_string_equal(json_object_get_string(member(e0, "context")), "fresh");
    assert_string_equal(json_object_get_string(member(e1, "metric_name")), "tone");
    assert_true(json_object_get_boolean(member(e1, "passed")));
    assert_null(member(e1, "feedback"));

    /* retries executed at attempts 1 and 4: the failed retry, the dry run and the fallback
     * do not count */
    assert_int_equal(json_object_get_int(member(r.json, "control_loop_depth")), 2);
    json_object *h = member(r.json, "remediation_history");
    assert_int_equal(json_object_array_length(h), 6);
    /* attempt order; policy b's dry run at attempt 1 sits beside policy a's retry */
    const char *h0 = json_object_get_string(member(json_object_array_get_idx(h, 0), "id"));
    const char *h1 = json_object_get_string(member(json_object_array_get_idx(h, 1), "id"));
    assert_true((strcmp(h0, ids[0]) == 0 && strcmp(h1, ids[5]) == 0) ||
                (strcmp(h0, ids[5]) == 0 && strcmp(h1, ids[0]) == 0));
    for (int i = 1; i < 5; i++)
        assert_string_equal(
            json_object_get_string(member(json_object_array_get_idx(h, (size_t)i + 1), "id")),
            ids[i]);
    assert_string_equal(json_object_get_string(member(json_object_array_get_idx(h, 5), "status")),
                        "pending_approval");
    itest_response_free(&r);

    /* no evaluations, no actions: empty lists and depth 0 */
    trace_new(&team, "tr-2", "null");
    snprintf(path, sizeof(path), "/v1/traces/tr-2?project_id=%s", team.project_id);
    r = get(path, team.member_key);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_object_array_length(member(r.json, "evaluations")), 0);
    assert_int_equal(json_object_array_length(member(r.json, "remediation_history")), 0);
    assert_int_equal(json_object_get_int(member(r.json, "control_loop_depth")), 0);
    itest_response_free(&r);

    assert_int_equal(status_of("GET", "/v1/traces/tr-1", team.owner_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/traces/tr-1?project_id=x", team.owner_key, NULL), 400);
    snprintf(path, sizeof(path), "/v1/traces/tr-1?project_id=%s&x=1", team.project_id);
    assert_int_equal(status_of("GET", path, team.owner_key, NULL), 400);
    snprintf(path, sizeof(path), "/v1/traces/tr-1?project_id=%s", second_project);
    assert_int_equal(status_of("GET", path, team.owner_key, NULL), 404);
    snprintf(path, sizeof(path), "/v1/traces/tr-1?project_id=%s", team.project_id);
    assert_int_equal(status_of("GET", path, other.owner_key, NULL), 404);
    snprintf(path, sizeof(path), "/v1/traces/nope?project_id=%s", team.project_id);
    assert_int_equal(status_of("GET", path, team.owner_key, NULL), 404);

    /* reading a trace is not a control-loop action: every plan */
    struct itest_tenant starter;
    itest_tenant_new(db, "starter", &starter);
    trace_new(&starter, "tr-s", "{}");
    snprintf(path, sizeof(path), "/v1/traces/tr-s?project_id=%s", starter.project_id);
    assert_int_equal(status_of("GET", path, starter.viewer_key, NULL), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_pages_and_filters),
        cmocka_unit_test(test_pending_queue),
        cmocka_unit_test(test_get_one),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_plan_gate),
        cmocka_unit_test(test_reject_race),
        cmocka_unit_test(test_trace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
