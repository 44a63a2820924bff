/* The LLM client against a real HTTP server on loopback (libmicrohttpd in this process)
 * whose behaviour is chosen by the first path segment: retries on 429 (with Retry-After),
 * 500 and timeouts, giving up, malformed and huge replies, and the concurrency cap. */
#include "config.h"
#include "llm.h"
#include "util.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SECRET "sk-test-secret-4242"

static struct {
    pthread_mutex_t lock;
    int requests;     /* chat requests seen since the last reset */
    int inflight;     /* now */
    int max_inflight; /* the most at once */
    int unauthorised; /* requests without the right bearer key */
    char last_body[4096];
} server = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct MHD_Daemon *daemon_;
static int port_;

static void server_reset(void)
{
    pthread_mutex_lock(&server.lock);
    server.requests = server.inflight = server.max_inflight = server.unauthorised = 0;
    server.last_body[0] = '\0';
    pthread_mutex_unlock(&server.lock);
}

static const char ok_reply[] =
    "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
    "{\"role\":\"assistant\",\"content\":\"hello\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}";

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             const char *retry_after)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)cls;
    (void)method;
    (void)version;
    if (*state == NULL) { /* first call: headers only */
        *state = calloc(1, 1);
        return MHD_YES;
    }
    if (*upload_size) {
        pthread_mutex_lock(&server.lock);
        size_t have = strlen(server.last_body), n = *upload_size;
        if (have + n >= sizeof(server.last_body))
            n = sizeof(server.last_body) - 1 - have;
        memcpy(server.last_body + have, upload, n);
        server.last_body[have + n] = '\0';
        pthread_mutex_unlock(&server.lock);
        *upload_size = 0;
        return MHD_YES;
    }
    free(*state);
    *state = NULL;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&server.lock);
    int nth = ++server.requests;
    if (!auth || strcmp(auth, "Bearer " SECRET) != 0)
        server.unauthorised++;
    if (++server.inflight > server.max_inflight)
        server.max_inflight = server.inflight;
    pthread_mutex_unlock(&server.lock);

    enum MHD_Result ret;
    if (strncmp(url, "/r429/", 6) == 0 && nth == 1)
        ret = reply(conn, 429, "{\"error\":{\"message\":\"slow down\"}}", "1");
    else if (strncmp(url, "/r500/", 6) == 0 && nth == 1)
        ret = reply(conn, 500, "{\"error\":{\"message\":\"boom\"}}", NULL);
    else if (strncmp(url, "/fail500/", 9) == 0)
        ret = reply(conn, 503, "{\"error\":{\"message\":\"overloaded\"}}", NULL);
    else if (strncmp(url, "/r400/", 6) == 0)
        ret = reply(conn, 400, "{\"error\":{\"message\":\"model not found\"}}", NULL);
    else if (strncmp(url, "/bad/", 5) == 0)
        ret = reply(conn, 200, "{\"choices\":[{\"message\":", NULL);
    else if (strncmp(url, "/nocontent/", 11) == 0)
        ret = reply(conn, 200, "{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}", NULL);
    else if (strncmp(url, "/huge/", 6) == 0) {
        size_t n = 3 * 1024 * 1024;
        char *big = malloc(n + 200);
        int k = snprintf(big, 200, "{\"choices\":[{\"message\":{\"content\":\"");
        memset(big + k, 'a', n);
        snprintf(big + k + n, 200, "\"}}]}");
        struct MHD_Response *r =
            MHD_create_response_from_buffer(strlen(big), big, MHD_RESPMEM_MUST_FREE);
        ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
    } else {
        if (strncmp(url, "/slow/", 6) == 0 && nth == 1)
            pl_sleep_ms(1500);
        if (strncmp(url, "/conc/", 6) == 0)
            pl_sleep_ms(100);
        ret = reply(conn, 200, ok_reply, NULL);
    }
    pthread_mutex_lock(&server.lock);
    server.inflight--;
    pthread_mutex_unlock(&server.lock);
    return ret;
}

static int setup(void **st)
{
    (void)st;
    daemon_ = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                               NULL, NULL, handle, NULL, MHD_OPTION_END);
    if (!daemon_)
        return -1;
    port_ = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    MHD_stop_daemon(daemon_);
    return 0;
}

static struct pl_llm_client *client_for(const char *mode, int attempts, int timeout_ms,
                                        int budget_ms)
{
    struct pl_config cfg;
    pl_config_defaults(&cfg, "differ");
    snprintf(cfg.llm_base_url, sizeof(cfg.llm_base_url), "http://127.0.0.1:%d/%s/v1/", port_, mode);
    snprintf(cfg.llm_api_key, sizeof(cfg.llm_api_key), SECRET);
    cfg.llm_max_attempts = attempts;
    cfg.llm_timeout_ms = timeout_ms;
    cfg.llm_budget_ms = budget_ms;
    cfg.llm_backoff_ms = 20;
    cfg.llm_max_concurrency = 4;
    cfg.llm_price_prompt_microusd_per_mtok = 150000;     /* $0.15 per 1M */
    cfg.llm_price_completion_microusd_per_mtok = 600000; /* $0.60 per 1M */
    char err[256];
    struct pl_llm_client *c = pl_llm_client_new(&cfg, err, sizeof(err));
    assert_non_null(c);
    server_reset();
    return c;
}

static const struct pl_llm_message msgs[] = {{"system", "You are terse."}, {"user", "Hi"}};

static struct pl_llm_call one_call(void)
{
    struct pl_llm_call call = {.messages = msgs, .nmessages = 2, .temperature = 0};
    return call;
}

static void test_ok_tokens_cost_and_request_shape(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("ok", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    call.json_object = true;
    call.max_tokens = 64;
    assert_int_equal(pl_llm_run(c, &call, 1), 0);
    assert_true(call.ok);
    assert_string_equal(call.content, "hello");
    assert_int_equal(call.prompt_tokens, 10);
    assert_int_equal(call.completion_tokens, 5);
    assert_true(call.cost_usd > 4.4e-6 && call.cost_usd < 4.6e-6); /* 10*.15e-6 + 5*.6e-6 */
    assert_int_equal(call.attempts, 1);
    assert_int_equal(server.unauthorised, 0);
    assert_non_null(strstr(server.last_body, "\"model\":\"gpt-4o-mini\""));
    assert_non_null(strstr(server.last_body, "\"response_format\":{\"type\":\"json_object\"}"));
    assert_non_null(strstr(server.last_body, "\"max_tokens\":64"));
    assert_non_null(strstr(server.last_body, "{\"role\":\"user\",\"content\":\"Hi\"}"));
    pl_llm_call_clear(&call);
    pl_llm_client_free(c);
}

static void test_retry_429_honours_retry_after(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("r429", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    int64_t t0 = pl_now_ms();
    assert_int_equal(pl_llm_run(c, &call, 1), 0);
    int64_t took = pl_now_ms() - t0;
    assert_true(call.ok);
    assert_int_equal(call.attempts, 2);
    assert_true(took >= 950); /* waited the server's Retry-After: 1, not the 20 ms backoff */
    pl_llm_call_clear(&call);
    pl_llm_client_free(c);
}

static void test_retry_500(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("r500", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 0);
    assert_true(call.ok);
    assert_int_equal(call.attempts, 2);
    pl_llm_call_clear(&call);
    pl_llm_client_free(c);
}

static void test_retry_timeout(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("slow", 3, 300, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 0);
    assert_true(call.ok);
    assert_int_equal(call.attempts, 2);
    pl_llm_call_clear(&call);
    pl_llm_client_free(c);
}

static void test_gives_up_after_attempts_without_the_key(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("fail500", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_false(call.ok);
    assert_null(call.content);
    assert_int_equal(call.attempts, 3);
    assert_int_equal(server.requests, 3);
    assert_non_null(strstr(call.error, "gave up after 3 attempts"));
    assert_non_null(strstr(call.error, "HTTP 503: overloaded"));
    assert_null(strstr(call.error, SECRET));
    pl_llm_client_free(c);
}

static void test_gives_up_when_budget_spent(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("r429", 5, 5000, 500); /* Retry-After 1 s > budget */
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_int_equal(call.attempts, 1);
    assert_non_null(strstr(call.error, "time budget"));
    pl_llm_client_free(c);
}

static void test_client_error_is_not_retried(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("r400", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_int_equal(call.attempts, 1);
    assert_string_equal(call.error, "HTTP 400: model not found");
    pl_llm_client_free(c);
}

static void test_malformed_replies(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("bad", 2, 5000, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_int_equal(call.attempts, 2);
    assert_non_null(strstr(call.error, "malformed reply"));
    pl_llm_client_free(c);

    c = client_for("nocontent", 1, 5000, 10000);
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_non_null(strstr(call.error, "choices[0].message.content is not a string"));
    pl_llm_client_free(c);
}

static void test_huge_reply_refused(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("huge", 3, 5000, 10000);
    struct pl_llm_call call = one_call();
    assert_int_equal(pl_llm_run(c, &call, 1), 1);
    assert_int_equal(call.attempts, 1);
    assert_non_null(strstr(call.error, "larger than llm.max_reply_bytes"));
    pl_llm_client_free(c);
}

static void test_concurrency_cap(void **st)
{
    (void)st;
    struct pl_llm_client *c = client_for("conc", 1, 5000, 10000); /* cap 4 */
    struct pl_llm_call calls[20];
    for (int i = 0; i < 20; i++)
        calls[i] = one_call();
    assert_int_equal(pl_llm_run(c, calls, 20), 0);
    assert_int_equal(server.requests, 20);
    assert_int_equal(server.max_inflight, 4); /* used, and never exceeded */
    for (int i = 0; i < 20; i++) {
        assert_true(calls[i].ok);
        pl_llm_call_clear(&calls[i]);
    }
    pl_llm_client_free(c);
}

/* The reply parser on its own, as the client runs it on every 2xx body. */
static void test_parse_reply(void **st)
{
    (void)st;
    struct pl_llm_call call = {0};
    char why[200];
    assert_int_equal(pl_llm_parse_reply(ok_reply, strlen(ok_reply), &call, why, sizeof(why)), 0);
    assert_string_equal(call.content, "hello");
    assert_int_equal(call.prompt_tokens, 10);
    assert_int_equal(call.completion_tokens, 5);
    pl_llm_call_clear(&call);
    const char *bad[] = {"",
                         "[]",
                         "{\"choices\":[]}",
                         "{\"choices\":[{\"message\":{}}]}",
                         "{\"choices\":[{\"message\":{\"content\":\"a\",\"content\":\"b\"}}]}",
                         "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":3}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pl_llm_parse_reply(bad[i], strlen(bad[i]), &call, why, sizeof(why)), -1);
        assert_null(call.content);
        assert_non_null(strstr(why, "malformed reply"));
    }
    char ex[128];
    pl_llm_error_excerpt("{\"error\":{\"message\":\"slow\\ndown\"}}", ex, sizeof(ex));
    assert_string_equal(ex, "slow down");
    pl_llm_error_excerpt("<html>502</html>", ex, sizeof(ex));
    assert_string_equal(ex, "");
}

static void test_bad_base_url(void **st)
{
    (void)st;
    struct pl_config cfg;
    pl_config_defaults(&cfg, "differ");
    snprintf(cfg.llm_base_url, sizeof(cfg.llm_base_url), "ftp://example.com");
    char err[256];
    assert_null(pl_llm_client_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "llm.base_url"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_tokens_cost_and_request_shape),
        cmocka_unit_test(test_retry_429_honours_retry_after),
        cmocka_unit_test(test_retry_500),
        cmocka_unit_test(test_retry_timeout),
        cmocka_unit_test(test_gives_up_after_attempts_without_the_key),
        cmocka_unit_test(test_gives_up_when_budget_spent),
        cmocka_unit_test(test_client_error_is_not_retried),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_huge_reply_refused),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_bad_base_url),
        cmocka_unit_test(test_parse_reply),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
