/* Ingest over real HTTP, Kafka and PostgreSQL: validation, duplicates, acknowledgement, and
 * the broker going away (mock cluster's broker-down control). */
#include "itest.h"

#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static PGconn *db;
static struct itest_tenant t, other;

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    itest_tenant_new(db, "team", &other);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static long post(const char *path, const char *key, const char *body, char *error_out, size_t errsz)
{
    struct itest_response r = itest_api("POST", path, key, body);
    long st = r.status;
    if (error_out) {
        const char *e = itest_json_str(&r, "error");
        snprintf(error_out, errsz, "%s", e ? e : "");
    }
    itest_response_free(&r);
    return st;
}

static void test_validation(void **state)
{
    (void)state;
    static const struct {
        const char *fields; /* members besides project_id */
        long status;
        const char *names;
    } cases[] = {
        {"\"id\":5", 400, "id"},
        {"\"id\":\"\"", 422, "id"},
        {"\"latency_ms\":-1", 422, "latency_ms"},
        {"\"latency_ms\":\"5\"", 400, "latency_ms"},
        {"\"cost\":-0.5", 422, "cost"},
        {"\"error\":42", 400, "error"},
        {"\"colour\":\"red\"", 400, "colour"},
        {"\"tags\":[1]", 400, "tags"},
        {"\"tags\":{\"k\":1}", 400, "tags"},
        {"\"spans\":{}", 400, "spans"},
        {"\"spans\":[{\"type\":\"llm\"}]", 400, "spans[0].name"},
        {"\"spans\":[{\"name\":\"a\",\"type\":\"db\"}]", 422, "spans[0].type"},
        {"\"spans\":[{\"name\":\"a\",\"extra\":1}]", 400, "extra"},
        {"\"prompt\":{\"version\":1}", 400, "prompt.name"},
        {"\"prompt\":{\"name\":\"p\",\"version\":0}", 400, "prompt.version"},
        {"\"eval_scores\":{\"m\":\"high\"}", 400, "eval_scores"},
        {"\"output\":\"a\\u0000b\"", 422, "NUL"},
        {"\"cost\":1e-400", 400, "out of range"},
        {"\"name\":\"a\",\"name\":\"b\"", 400, "name is given twice"},
        {"\"error\":\"\\udc00\"", 400, "surrogate"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[512], err[512];
        snprintf(body, sizeof(body), "{\"project_id\":\"%s\",%s}", t.project_id, cases[i].fields);
        long st = post("/v1/ingest", t.member_key, body, err, sizeof(err));
        if (st != cases[i].status || !strstr(err, cases[i].names))
            fail_msg("%s: expected %ld naming %s, got %ld \"%s\"", body, cases[i].status,
                     cases[i].names, st, err);
    }
    char err[256];
    assert_int_equal(post("/v1/ingest", t.member_key, "{\"id\":\"x\"}", err, sizeof(err)), 400);
    assert_non_null(strstr(err, "project_id"));
    assert_int_equal(post("/v1/ingest", t.member_key, "[]", err, sizeof(err)), 400);
    assert_int_equal(post("/v1/ingest", t.viewer_key, "{}", err, sizeof(err)), 403);
    assert_int_equal(post("/v1/ingest", NULL, "{}", err, sizeof(err)), 401);
    /* another tenant's project is not found */
    char body[256];
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"id\":\"x\"}", other.project_id);
    assert_int_equal(post("/v1/ingest", t.member_key, body, err, sizeof(err)), 404);
    /* batch: empty, too many, bad element, mixed projects */
    assert_int_equal(post("/v1/ingest/batch", t.member_key, "{\"traces\":[]}", err, sizeof(err)),
                     422);
    assert_int_equal(post("/v1/ingest/batch", t.member_key, "{\"traces\":{}}", err, sizeof(err)),
                     400);
    char *big = malloc(101 * 64 + 32);
    size_t len = (size_t)snprintf(big, 32, "{\"traces\":[");
    for (int i = 0; i < 101; i++)
        len += (size_t)snprintf(big + len, 64, "%s{\"project_id\":\"%s\"}", i ? "," : "",
                                t.project_id);
    snprintf(big + len, 8, "]}");
    assert_int_equal(post("/v1/ingest/batch", t.member_key, big, err, sizeof(err)), 422);
    free(big);
    snprintf(body, sizeof(body),
             "{\"traces\":[{\"project_id\":\"%s\"},{\"project_id\":\"%s\","
             "\"latency_ms\":true}]}",
             t.project_id, t.project_id);
    assert_int_equal(post("/v1/ingest/batch", t.member_key, body, err, sizeof(err)), 400);
    assert_non_null(strstr(err, "traces[1].latency_ms"));
    /* nothing of the refused requests was recorded */
    const char *p[1] = {t.project_id};
    char *n = itest_sql(db, "SELECT count(*) FROM ingest_ids WHERE project_id = $1", 1, p);
    assert_string_equal(n, "0");
    free(n);
}

static void test_accept_duplicate_and_kafka(void **state)
{
    (void)state;
    char id[64], body[512];
    snprintf(id, sizeof(id), "ingest-%d-%lld", (int)getpid(), (long long)pl_now_ms());
    snprintf(body, sizeof(body),
             "{\"project_id\":\"%s\",\"id\":\"%s\",\"output\":\"hi\",\"tags\":{\"env\":\"ci\"},"
             "\"spans\":[{\"name\":\"llm\",\"type\":\"llm\",\"error\":null}],"
             "\"prompt\":{\"name\":\"support\",\"version\":3},\"eval_scores\":{\"q\":0.5}}",
             t.project_id, id);
    struct itest_response r = itest_api("POST", "/v1/ingest", t.member_key, body);
    assert_int_equal(r.status, 201);
    assert_string_equal(itest_json_str(&r, "id"), id);
    assert_non_null(itest_json_str(&r, "created_at"));
    itest_response_free(&r);
    /* 201 came after the ack: the message is already in the topic */
    const char *keys[1] = {id};
    json_object *msgs = itest_kafka_read("pl.traces", keys, 1, 10000);
    assert_int_equal(json_object_array_length(msgs), 1);
    json_object *env = json_object_array_get_idx(msgs, 0);
    assert_int_equal(json_object_get_int(json_object_object_get(env, "schema_version")), 1);
    assert_string_equal(json_object_get_string(json_object_object_get(env, "tenant_id")), t.id);
    assert_string_equal(
        json_object_get_string(json_object_object_get(json_object_object_get(env, "trace"), "id")),
        id);
    json_object_put(msgs);

    r = itest_api("POST", "/v1/ingest", t.member_key, body);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "status"), "duplicate");
    itest_response_free(&r);
    msgs = itest_kafka_read("pl.traces", keys, 1, 10000);
    assert_int_equal(json_object_array_length(msgs), 1); /* not sent again */
    json_object_put(msgs);

    /* batch: new, generated id, duplicate of the first, same id twice */
    snprintf(body, sizeof(body),
             "{\"traces\":[{\"project_id\":\"%s\",\"id\":\"%s-b\"},{\"project_id\":\"%s\"},"
             "{\"project_id\":\"%s\",\"id\":\"%s\"},{\"project_id\":\"%s\",\"id\":\"%s-b\"}]}",
             t.project_id, id, t.project_id, t.project_id, id, t.project_id, id);
    r = itest_api("POST", "/v1/ingest/batch", t.member_key, body);
    assert_int_equal(r.status, 201);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "created")), 2);
    assert_int_equal(json_object_get_int(json_object_object_get(r.json, "duplicates")), 2);
    json_object *items = json_object_object_get(r.json, "items");
    assert_string_equal(json_object_get_string(
                            json_object_object_get(json_object_array_get_idx(items, 3), "status")),
                        "duplicate");
    assert_true(pl_uuid_valid(
        json_object_get_string(json_object_object_get(json_object_array_get_idx(items, 1), "id"))));
    itest_response_free(&r);
}

/* What the api accepts, the detector stores: edge cases of the one-pass checks on both sides
 * (nesting as deep as POST /v1/ingest takes, an escaped backslash before "u0000", a subnormal
 * cost, an upper-case project id, a generated id). */
static void test_accepted_is_stored(void **state)
{
    (void)state;
    char upper[40], nested[256] = "", closing[64] = "", body[1024], ids[4][80];
    snprintf(upper, sizeof(upper), "%s", t.project_id);
    for (char *c = upper; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    for (int i = 0; i < 31; i++) { /* the trace and 31 objects in it: 32 levels, the most */
        snprintf(nested + 5 * i, sizeof(nested) - 5 * (size_t)i, "{\"a\":");
        closing[i] = '}';
    }
    for (int i = 0; i < 4; i++) {
        snprintf(ids[i], sizeof(ids[i]), "stored-%d-%lld-%d", (int)getpid(), (long long)pl_now_ms(),
                 i);
        if (i == 0)
            snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"id\":\"%s\",\"metadata\":%s1%s}",
                     t.project_id, ids[i], nested, closing);
        else if (i == 1)
            snprintf(body, sizeof(body),
                     "{\"project_id\":\"%s\",\"id\":\"%s\",\"output\":\"\\\\u0000 is text\"}",
                     t.project_id, ids[i]);
        else if (i == 2)
            snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"id\":\"%s\",\"cost\":4.9e-324}",
                     upper, ids[i]);
        else
            snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"name\":\"generated id\"}",
                     upper);
        struct itest_response r = itest_api("POST", "/v1/ingest", t.member_key, body);
        if (r.status != 201)
            fail_msg("trace %d: %ld %s", i, r.status, r.body);
        snprintf(ids[i], sizeof(ids[i]), "%s", itest_json_str(&r, "id"));
        itest_response_free(&r);
    }
    for (int i = 0; i < 4; i++) {
        const char *p[2] = {t.project_id, ids[i]};
        char *n = NULL;
        for (int64_t deadline = pl_now_ms() + 30000; pl_now_ms() < deadline; pl_sleep_ms(100)) {
            free(n);
            n = itest_sql(db, "SELECT count(*) FROM traces WHERE project_id = $1 AND id = $2", 2,
                          p);
            if (strcmp(n, "1") == 0)
                break;
        }
        if (strcmp(n, "1") != 0)
            fail_msg("trace %d (%s) was not stored by the detector", i, ids[i]);
        free(n);
    }
    const char *p[2] = {t.project_id, ids[1]};
    char *out = itest_sql(db, "SELECT output FROM traces WHERE project_id = $1 AND id = $2", 2, p);
    assert_string_equal(out, "\\u0000 is text");
    free(out);
}

static void broker(const char *state)
{
    char path[64];
    snprintf(path, sizeof(path), "/brokers/1/%s", state);
    struct itest_response r =
        itest_http(itest_env("PL_DEVKAFKA_CONTROL_URL"), "POST", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
}

static void test_broker_down_is_503(void **state)
{
    (void)state;
    char id[64], body[256];
    snprintf(id, sizeof(id), "down-%d-%lld", (int)getpid(), (long long)pl_now_ms());
    snprintf(body, sizeof(body), "{\"project_id\":\"%s\",\"id\":\"%s\"}", t.project_id, id);
    broker("down");
    struct itest_response r = itest_api("POST", "/v1/ingest", t.member_key, body);
    broker("up");
    assert_int_equal(r.status, 503);
    assert_non_null(itest_json_str(&r, "error"));
    itest_response_free(&r);
    /* nothing half-written: the id was not claimed, so the retry is accepted */
    const char *p[1] = {id};
    char *n = itest_sql(db, "SELECT count(*) FROM ingest_ids WHERE trace_id = $1", 1, p);
    assert_string_equal(n, "0");
    free(n);
    int64_t deadline = pl_now_ms() + 30000;
    long st = 0;
    while (pl_now_ms() < deadline && (st = post("/v1/ingest", t.member_key, body, NULL, 0)) == 503)
        pl_sleep_ms(200);
    assert_int_equal(st, 201);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_accept_duplicate_and_kafka),
        cmocka_unit_test(test_accepted_is_stored),
        cmocka_unit_test(test_broker_down_is_503),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
