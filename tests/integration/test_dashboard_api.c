/* The API reads and writes the dashboard's pages rest on, over HTTP from the stack's api:
 * failure clusters with their 24 h trend, samples, deployment link and owners' triage
 * (audited); the audit log's pages, filters and chain verification; the regression and
 * kill-switch banners; a deployment's post-ship chart; the HITL queue with what a reviewer
 * needs to decide; a rollback's reason. */
#include "itest.h"

#include "action.h"
#include "audit.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static PGconn *db;

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

/* GET path as key: the parsed body, after asserting status 200. */
static json_object *get_json(const char *path, const char *key)
{
    struct itest_response r = itest_api("GET", path, key, NULL);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_object *o = json_tokener_parse(r.body);
    assert_non_null(o);
    itest_response_free(&r);
    return o;
}

static long status_of(const char *method, const char *path, const char *key, const char *body)
{
    struct itest_response r = itest_api(method, path, key, body);
    long s = r.status;
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

static const char *str(json_object *o, const char *name)
{
    return json_object_get_string(member(o, name));
}

static void test_clusters_trend_detail_and_triage(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    struct itest_cluster c;
    itest_cluster_new(db, &t, "triage", "You are a helpful assistant.", 12, 0, &c);
    /* 4 of the 12 joined 5 hours ago: they count in the hour 5 places before the current one */
    free(sql1("WITH m AS (SELECT trace_id FROM cluster_members WHERE cluster_id = $1"
              " ORDER BY trace_id LIMIT 4) UPDATE cluster_members SET added_at = now()"
              " - interval '5 hours' WHERE cluster_id = $1 AND trace_id IN (SELECT trace_id"
              " FROM m) RETURNING 1",
              c.cluster_id));
    char path[256], dep[37];
    itest_deployment_new(db, &t, "proposed", dep);
    const char *pd[2] = {dep, c.cluster_id};
    free(itest_sql(db, "UPDATE prompt_deployments SET cluster_id = $2 WHERE id = $1 RETURNING 1", 2,
                   pd));

    snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s", t.project_id);
    json_object *list = get_json(path, t.viewer_key);
    json_object *items = member(list, "clusters");
    assert_int_equal(json_object_array_length(items), 1);
    json_object *one = json_object_array_get_idx(items, 0);
    assert_string_equal(str(one, "id"), c.cluster_id);
    assert_string_equal(str(one, "status"), "new");
    assert_string_equal(str(one, "deployment_id"), dep);
    assert_string_equal(str(one, "deployment_status"), "proposed");
    json_object *trend = member(one, "trend_24h");
    assert_int_equal(json_object_array_length(trend), 24);
    int sum = 0;
    for (int i = 0; i < 24; i++)
        sum += json_object_get_int(json_object_array_get_idx(trend, (size_t)i));
    assert_int_equal(sum, 12);
    assert_int_equal(json_object_get_int(json_object_array_get_idx(trend, 23)), 8);
    assert_int_equal(json_object_get_int(json_object_array_get_idx(trend, 18)), 4);
    assert_true(json_object_is_type(member(list, "next_offset"), json_type_null));
    json_object_put(list);

    /* the detail: samples with their text, newest first, and the deployments */
    snprintf(path, sizeof(path), "/v1/failures/clusters/%s", c.cluster_id);
    json_object *d = get_json(path, t.viewer_key);
    json_object *samples = member(d, "samples");
    assert_int_equal(json_object_array_length(samples), 12);
    json_object *s0 = json_object_array_get_idx(samples, 0);
    assert_non_null(strstr(str(s0, "output"), "Here is a prose answer"));
    assert_non_null(member(s0, "input"));
    json_object *deps = member(d, "deployments");
    assert_int_equal(json_object_array_length(deps), 1);
    assert_string_equal(str(json_object_array_get_idx(deps, 0), "id"), dep);
    json_object_put(d);

    /* triage: owners only, validated, audited once per change */
    assert_int_equal(status_of("PATCH", path, t.viewer_key, "{\"status\":\"resolved\"}"), 403);
    assert_int_equal(status_of("PATCH", path, t.member_key, "{\"status\":\"resolved\"}"), 403);
    assert_int_equal(status_of("PATCH", path, t.owner_key, "{\"status\":\"done\"}"), 422);
    assert_int_equal(status_of("PATCH", path, t.owner_key, "{}"), 422);
    assert_int_equal(status_of("PATCH", path, t.owner_key, "{\"status\":\"resolved\",\"x\":1}"),
                     400);
    assert_int_equal(status_of("PATCH", path, t.owner_key, "{\"status\":3}"), 400);
    for (int i = 0; i < 2; i++) {
        struct itest_response r =
            itest_api("PATCH", path, t.owner_key, "{\"status\":\"acknowledged\"}");
        assert_int_equal(r.status, 200);
        assert_string_equal(itest_json_str(&r, "status"), "acknowledged");
        itest_response_free(&r);
    }
    expect_sql("SELECT count(*) || ':' || min(detail->>'from') || '>' || min(detail->>'to')"
               " FROM audit_log WHERE target = $1 AND action = 'cluster.status'",
               c.cluster_id, "1:new>acknowledged");
    struct itest_tenant other;
    itest_tenant_new(db, "team", &other);
    assert_int_equal(status_of("PATCH", path, other.owner_key, "{\"status\":\"resolved\"}"), 404);
    assert_int_equal(status_of("GET", path, other.owner_key, NULL), 404);
    assert_int_equal(
        status_of("PATCH", "/v1/failures/clusters/not-a-uuid", t.owner_key, "{\"status\":\"new\"}"),
        404);

    /* the status filters the list */
    snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s&status=new", t.project_id);
    list = get_json(path, t.viewer_key);
    assert_int_equal(json_object_array_length(member(list, "clusters")), 0);
    json_object_put(list);
    snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s&status=acknowledged",
             t.project_id);
    list = get_json(path, t.viewer_key);
    assert_int_equal(json_object_array_length(member(list, "clusters")), 1);
    json_object_put(list);
    assert_int_equal(status_of("GET", "/v1/failures/clusters?status=open", t.viewer_key, NULL),
                     400);
    assert_int_equal(status_of("GET", "/v1/failures/clusters?offset=-1", t.viewer_key, NULL), 400);
}

static void test_clusters_pages(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    const char *p[2] = {t.id, t.project_id};
    free(itest_sql(db,
                   "INSERT INTO failure_clusters (tenant_id, project_id, signature, template,"
                   " error_type, count, first_seen, last_seen, grouping_version)"
                   " SELECT $1, $2, 'sha256:page' || k, 'error <*> ' || k, 'error', k, now(),"
                   " now() - k * interval '1 minute', 1 FROM generate_series(1, 5) k RETURNING 1",
                   2, p));
    char path[256];
    int seen = 0, pages = 0;
    long long offset = 0;
    for (;;) {
        snprintf(path, sizeof(path), "/v1/failures/clusters?project_id=%s&limit=2&offset=%lld",
                 t.project_id, offset);
        json_object *list = get_json(path, t.viewer_key);
        json_object *items = member(list, "clusters");
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            char want[32];
            snprintf(want, sizeof(want), "sha256:page%d", ++seen); /* newest first */
            assert_string_equal(str(json_object_array_get_idx(items, i), "signature"), want);
        }
        pages++;
        json_object *next = member(list, "next_offset");
        bool more = !json_object_is_type(next, json_type_null);
        if (more)
            offset = json_object_get_int64(next);
        json_object_put(list);
        if (!more)
            break;
    }
    assert_int_equal(seen, 5);
    assert_int_equal(pages, 3);
}

static void test_audit_pages_filters_and_verify(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    struct pl_pg_error err;
    assert_int_equal(pl_pg_exec(db, "BEGIN", 0, NULL, &err), 0);
    for (int i = 0; i < 7; i++)
        assert_int_equal(pl_audit_append(db, t.id, i % 2 ? "key:odd" : "key:even", "itest.page",
                                         i < 3 ? "target-a" : "target-b", "{\"n\": 1}", &err),
                         0);
    assert_int_equal(pl_pg_exec(db, "COMMIT", 0, NULL, &err), 0);
    char *total = sql1("SELECT count(*) FROM audit_log WHERE tenant_id = $1", t.id);

    /* pages of 3, newest first, cover every entry once */
    char path[256], cursor[32] = "";
    long long last_id = 0;
    int seen = 0;
    for (;;) {
        snprintf(path, sizeof(path), "/v1/audit-log?limit=3%s%s", cursor[0] ? "&cursor=" : "",
                 cursor);
        json_object *page = get_json(path, t.viewer_key);
        json_object *items = member(page, "items");
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            long long id = json_object_get_int64(member(json_object_array_get_idx(items, i), "id"));
            assert_true(last_id == 0 || id < last_id);
            last_id = id;
            seen++;
        }
        json_object *next = member(page, "next_cursor");
        bool more = !json_object_is_type(next, json_type_null);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_object_get_string(next));
        json_object_put(page);
        if (!more)
            break;
    }
    assert_int_equal(seen, strtol(total, NULL, 10));

    json_object *f = get_json("/v1/audit-log?action=itest.page&actor=key:odd", t.viewer_key);
    assert_int_equal(json_object_array_length(member(f, "items")), 3);
    json_object_put(f);
    f = get_json("/v1/audit-log?action=itest.page&target=target-a", t.viewer_key);
    assert_int_equal(json_object_array_length(member(f, "items")), 3);
    json_object_put(f);
    /* by time: everything up to now, nothing from tomorrow on */
    f = get_json("/v1/audit-log?action=itest.page&to=2999-01-01T00:00:00Z", t.viewer_key);
    assert_int_equal(json_object_array_length(member(f, "items")), 7);
    json_object_put(f);
    f = get_json("/v1/audit-log?action=itest.page&from=2999-01-01T00:00:00%2B02:00", t.viewer_key);
    assert_int_equal(json_object_array_length(member(f, "items")), 0);
    json_object_put(f);
    assert_int_equal(status_of("GET", "/v1/audit-log?limit=0", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/audit-log?cursor=x", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/audit-log?actor=", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/audit-log?from=yesterday", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/audit-log?project_id=x", t.viewer_key, NULL), 400);
    assert_int_equal(status_of("GET", "/v1/audit-log", NULL, NULL), 401);

    json_object *v = get_json("/v1/audit/verify", t.viewer_key);
    assert_true(json_object_get_boolean(member(v, "verified")));
    assert_int_equal(json_object_get_int64(member(v, "row_count")), strtol(total, NULL, 10));
    assert_true(json_object_is_type(member(v, "hash_matches"), json_type_null));
    char head[65];
    snprintf(head, sizeof(head), "%s", str(v, "head_hash"));
    assert_int_equal(strlen(head), 64);
    json_object_put(v);
    /* the head published now stays in the chain as it grows; deleting the newest entries
     * leaves a chain that verifies, but without that head */
    assert_int_equal(pl_pg_exec(db, "BEGIN", 0, NULL, &err), 0);
    assert_int_equal(pl_audit_append(db, t.id, "key:even", "itest.later", "target-c", "{}", &err),
                     0);
    assert_int_equal(pl_pg_exec(db, "COMMIT", 0, NULL, &err), 0);
    snprintf(path, sizeof(path), "/v1/audit/verify?expected_head_hash=%s", head);
    v = get_json(path, t.viewer_key);
    assert_true(json_object_get_boolean(member(v, "hash_matches")));
    json_object_put(v);
    free(sql1("DELETE FROM audit_log WHERE tenant_id = $1 AND id >= (SELECT max(id) - 1"
              " FROM audit_log WHERE tenant_id = $1) RETURNING 1",
              t.id));
    v = get_json(path, t.viewer_key);
    assert_true(json_object_get_boolean(member(v, "verified")));
    assert_false(json_object_get_boolean(member(v, "hash_matches")));
    json_object_put(v);
    assert_int_equal(
        status_of("GET", "/v1/audit/verify?expected_head_hash=abc", t.viewer_key, NULL), 400);
    /* an edited entry breaks the chain, and the answer names it */
    char *id = sql1("UPDATE audit_log SET actor = 'key:forged' WHERE id = (SELECT min(id)"
                    " FROM audit_log WHERE tenant_id = $1 AND action = 'itest.page')"
                    " RETURNING id",
                    t.id);
    v = get_json("/v1/audit/verify", t.viewer_key);
    assert_false(json_object_get_boolean(member(v, "verified")));
    char want[64];
    snprintf(want, sizeof(want), "audit entry %s:", id);
    assert_non_null(strstr(str(v, "error"), want));
    json_object_put(v);
    free(id);
    free(total);
}

static void test_alerts(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char path[128];
    snprintf(path, sizeof(path), "/v1/alerts?project_id=%s", t.project_id);
    json_object *a = get_json(path, t.viewer_key);
    assert_int_equal(json_object_array_length(member(a, "regressions")), 0);
    assert_false(json_object_get_boolean(member(member(a, "killswitch"), "active")));
    json_object_put(a);

    char regressed[37], auto_recent[37], auto_old[37], by_owner[37];
    itest_deployment_new(db, &t, "regressed", regressed);
    itest_deployment_new(db, &t, "rolled_back", auto_recent);
    itest_deployment_new(db, &t, "rolled_back", auto_old);
    itest_deployment_new(db, &t, "rolled_back", by_owner);
    free(sql1("UPDATE prompt_deployments SET approved_by = 'system:auto_rollback',"
              " rolled_back_at = now() - interval '1 hour' WHERE id = $1 RETURNING 1",
              auto_recent));
    free(sql1("UPDATE prompt_deployments SET approved_by = 'system:auto_rollback',"
              " rolled_back_at = now() - interval '25 hours' WHERE id = $1 RETURNING 1",
              auto_old));
    free(sql1("UPDATE prompt_deployments SET approved_by = 'key:someone',"
              " rolled_back_at = now() WHERE id = $1 RETURNING 1",
              by_owner));
    free(sql1("INSERT INTO control_killswitch (tenant_id, active, updated_by)"
              " VALUES ($1, true, 'key:owner') RETURNING 1",
              t.id));
    a = get_json(path, t.viewer_key);
    json_object *r = member(a, "regressions");
    assert_int_equal(json_object_array_length(r), 2);
    bool saw_regressed = false, saw_auto = false;
    for (size_t i = 0; i < 2; i++) {
        json_object *e = json_object_array_get_idx(r, i);
        if (strcmp(str(e, "deployment_id"), regressed) == 0)
            saw_regressed = !json_object_get_boolean(member(e, "auto"));
        if (strcmp(str(e, "deployment_id"), auto_recent) == 0)
            saw_auto = json_object_get_boolean(member(e, "auto"));
    }
    assert_true(saw_regressed && saw_auto);
    assert_true(json_object_get_boolean(member(member(a, "killswitch"), "active")));
    json_object_put(a);
    /* another project of the tenant has no regression; another tenant sees nothing */
    char *p2 =
        sql1("INSERT INTO projects (tenant_id, name) VALUES ($1, 'quiet') RETURNING id", t.id);
    snprintf(path, sizeof(path), "/v1/alerts?project_id=%s", p2);
    a = get_json(path, t.viewer_key);
    assert_int_equal(json_object_array_length(member(a, "regressions")), 0);
    json_object_put(a);
    free(p2);
    struct itest_tenant other;
    itest_tenant_new(db, "team", &other);
    a = get_json("/v1/alerts", other.viewer_key);
    assert_int_equal(json_object_array_length(member(a, "regressions")), 0);
    assert_false(json_object_get_boolean(member(member(a, "killswitch"), "active")));
    json_object_put(a);
    assert_int_equal(status_of("GET", "/v1/alerts?project_id=x", t.viewer_key, NULL), 400);
}

static void test_series(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char dep[37], path[160];
    itest_deployment_new(db, &t, "monitoring", dep);
    /* 120 live traces over 10 minutes, every third fails; a canary at 10 %, then 100 % */
    const char *p[2] = {dep, t.id};
    free(itest_sql(db,
                   "INSERT INTO monitor_observations (deployment_id, trace_id, tenant_id, passed,"
                   " observed_at) SELECT $1, 'obs-' || k, $2, k % 3 <> 0,"
                   " now() - interval '10 minutes' + k * interval '5 seconds'"
                   " FROM generate_series(0, 119) k RETURNING 1",
                   2, p));
    free(sql1("UPDATE prompt_deployments SET shipped_at = now() - interval '11 minutes',"
              " monitor_report = '{\"baseline\": {\"pass_rate\": 0.5}}' WHERE id = $1"
              " RETURNING 1",
              dep));
    struct pl_pg_error err;
    assert_int_equal(pl_pg_exec(db, "BEGIN", 0, NULL, &err), 0);
    assert_int_equal(pl_audit_append(db, t.id, "key:owner", "deployment.transition", dep,
                                     "{\"to\": \"shipped\", \"rollout_pct\": 10}", &err),
                     0);
    assert_int_equal(pl_audit_append(db, t.id, "system:canary_promote", "deployment.transition",
                                     dep, "{\"to\": \"monitoring\", \"rollout_pct\": 100}", &err),
                     0);
    assert_int_equal(pl_pg_exec(db, "COMMIT", 0, NULL, &err), 0);

    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/series", dep);
    json_object *s = get_json(path, t.viewer_key);
    assert_true(json_object_get_double(member(s, "baseline_pass_rate")) == 0.5);
    json_object *points = member(s, "points");
    size_t n = json_object_array_length(points);
    assert_true(n >= 50 && n <= 60);
    long traces = 0, passed = 0;
    const char *prev = "";
    for (size_t i = 0; i < n; i++) {
        json_object *pt = json_object_array_get_idx(points, i);
        traces += json_object_get_int(member(pt, "traces"));
        passed += json_object_get_int(member(pt, "passed"));
        assert_true(strcmp(str(pt, "at"), prev) > 0); /* in time order */
        prev = str(pt, "at");
    }
    assert_int_equal(traces, 120);
    assert_int_equal(passed, 80);
    json_object *rollout = member(s, "rollout");
    assert_int_equal(json_object_array_length(rollout), 2);
    assert_int_equal(
        json_object_get_int(member(json_object_array_get_idx(rollout, 0), "rollout_pct")), 10);
    assert_int_equal(
        json_object_get_int(member(json_object_array_get_idx(rollout, 1), "rollout_pct")), 100);
    assert_true(json_object_is_type(member(s, "decision"), json_type_null));
    json_object_put(s);

    struct itest_tenant other;
    itest_tenant_new(db, "team", &other);
    assert_int_equal(status_of("GET", path, other.viewer_key, NULL), 404);
    struct itest_tenant starter;
    itest_tenant_new(db, "starter", &starter);
    assert_int_equal(status_of("GET", path, starter.viewer_key, NULL), 402);
}

static void test_queue_carries_the_trace_and_its_steps(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    const char *pp[2] = {t.id, t.project_id};
    char *policy = itest_sql(db,
                             "INSERT INTO policies (tenant_id, project_id, name, trigger_type,"
                             " action_type, status, created_by) VALUES ($1, $2, 'retry once',"
                             " 'eval_score', 'retry', 'active', 'itest') RETURNING id",
                             2, pp);
    free(itest_sql(db,
                   "INSERT INTO traces (tenant_id, project_id, id, input, output, model)"
                   " VALUES ($1, $2, 'hitl-1', '{\"messages\": [{\"role\": \"user\","
                   " \"content\": \"Why twice?\"}]}', 'prose', 'gpt-4o-mini') RETURNING 1",
                   2, pp));
    struct pl_action_new steps[2] = {
        {.tenant_id = t.id,
         .project_id = t.project_id,
         .trace_id = "hitl-1",
         .policy_id = policy,
         .attempt = 1,
         .action_type = "retry",
         .status = PL_ACTION_EXECUTED,
         .events_topic = "pl.actions"},
        {.tenant_id = t.id,
         .project_id = t.project_id,
         .trace_id = "hitl-1",
         .policy_id = policy,
         .attempt = 2,
         .action_type = "escalate",
         .status = PL_ACTION_PENDING_APPROVAL,
         .escalation_reason = "retry_threshold_exceeded",
         .require_approval = true,
         .events_topic = "pl.actions"},
    };
    char ids[2][37];
    struct pl_pg_error err;
    for (int i = 0; i < 2; i++)
        if (pl_action_create(db, &steps[i], ids[i], NULL, &err) != PL_TRANSITION_OK)
            fail_msg("pl_action_create: %s", err.message);
    free(sql1("UPDATE control_actions SET result = '{\"output\": \"still prose\", \"passed\":"
              " false}' WHERE id = $1 RETURNING 1",
              ids[0]));
    char path[160];
    snprintf(path, sizeof(path), "/v1/control/actions/pending?project_id=%s", t.project_id);
    json_object *q = get_json(path, t.viewer_key);
    json_object *items = member(q, "items");
    assert_int_equal(json_object_array_length(items), 1);
    json_object *e = json_object_array_get_idx(items, 0);
    assert_string_equal(str(e, "id"), ids[1]);
    assert_string_equal(str(e, "policy_name"), "retry once");
    assert_string_equal(str(e, "escalation_reason"), "retry_threshold_exceeded");
    json_object *trace = member(e, "trace");
    assert_string_equal(str(trace, "output"), "prose");
    assert_string_equal(str(trace, "model"), "gpt-4o-mini");
    assert_non_null(strstr(json_object_to_json_string(member(trace, "input")), "Why twice?"));
    json_object *history = member(e, "history");
    assert_int_equal(json_object_array_length(history), 1);
    json_object *h0 = json_object_array_get_idx(history, 0);
    assert_string_equal(str(h0, "action_type"), "retry");
    assert_string_equal(str(member(h0, "result"), "output"), "still prose");
    json_object_put(q);
    free(policy);
}

static void test_rollback_reason(void **state)
{
    (void)state;
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char dep[37], path[160];
    itest_deployment_new(db, &t, "monitoring", dep);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", dep);
    assert_int_equal(status_of("POST", path, t.owner_key, "{\"reason\": 5}"), 400);
    assert_int_equal(status_of("POST", path, t.owner_key, "{\"why\": \"x\"}"), 400);
    struct itest_response r =
        itest_api("POST", path, t.owner_key, "{\"reason\": \"answers lost their JSON\"}");
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "rolled_back");
    assert_string_equal(itest_json_str(&r, "rejection_reason"), "answers lost their JSON");
    itest_response_free(&r);
    expect_sql("SELECT detail->>'reason' FROM audit_log WHERE target = $1"
               " AND detail->>'to' = 'rolled_back'",
               dep, "answers lost their JSON");
    /* without a body, as before */
    itest_deployment_new(db, &t, "shipped", dep);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/rollback", dep);
    assert_int_equal(status_of("POST", path, t.owner_key, NULL), 200);
}

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clusters_trend_detail_and_triage),
        cmocka_unit_test(test_clusters_pages),
        cmocka_unit_test(test_audit_pages_filters_and_verify),
        cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_queue_carries_the_trace_and_its_steps),
        cmocka_unit_test(test_rollback_reason),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
