/* pl-llmsim as a real process over loopback HTTP: rule matching, reply templates, phases,
 * deterministic probabilities, usage, request validation, fault injection, stats, scenario
 * errors, parallel latency and clean shutdown. Needs only $PL_BIN_DIR, not the stack. */
#include "itest.h"

#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIM_START_MS 10000
#define SIM_STOP_MS  10000

/* ---- a simulator process ---------------------------------------------------------------- */

struct simproc {
    pid_t pid;
    int port;
    char base[64];
    char scenario[64];
    char log[128];
};

/* Writes text to a new temporary file; path gets its name (64 bytes). */
static void scenario_write(const char *text, char path[64])
{
    snprintf(path, 64, "/tmp/pl-itest-llmsim-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Spawns pl-llmsim on scenario text with up to two extra arguments; does not wait. */
static void simproc_spawn(struct simproc *p, const char *scenario, const char *a1, const char *a2)
{
    char bin[512], port[16];
    memset(p, 0, sizeof(*p));
    itest_bin("pl-llmsim", bin, sizeof(bin));
    scenario_write(scenario, p->scenario);
    p->port = itest_free_port();
    snprintf(port, sizeof(port), "%d", p->port);
    snprintf(p->base, sizeof(p->base), "http://127.0.0.1:%d", p->port);
    snprintf(p->log, sizeof(p->log), "/tmp/pl-itest-llmsim-%d-%d.log", (int)getpid(), p->port);
    const char *argv[] = {bin, "--scenario", p->scenario, "--port", port, a1, a2, NULL};
    p->pid = itest_spawn(argv, NULL, p->log);
}

static void simproc_start(struct simproc *p, const char *scenario, const char *a1, const char *a2)
{
    simproc_spawn(p, scenario, a1, a2);
    char url[128];
    snprintf(url, sizeof(url), "%s/healthz", p->base);
    if (!itest_wait_http_ok(url, SIM_START_MS)) {
        kill(p->pid, SIGKILL);
        itest_wait(p->pid, SIM_STOP_MS);
        fail_msg("pl-llmsim did not answer /healthz within %d ms (log: %s)", SIM_START_MS, p->log);
    }
}

/* SIGTERM; true when the process exited 0 within the deadline. Removes its files. */
static bool simproc_stop(struct simproc *p)
{
    kill(p->pid, SIGTERM);
    int st = itest_wait(p->pid, SIM_STOP_MS);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (st == -1) {
        kill(p->pid, SIGKILL);
        itest_wait(p->pid, SIM_STOP_MS);
    }
    if (ok) {
        unlink(p->log);
        unlink(p->scenario);
    } else {
        fprintf(stderr, "pl-llmsim did not exit 0 (status %d); log kept: %s\n", st, p->log);
    }
    return ok;
}

static void simproc_stop_ok(struct simproc *p)
{
    assert_true(simproc_stop(p));
}

/* ---- HTTP -------------------------------------------------------------------------------- */

struct res {
    long status; /* 0 on a transport error */
    char *body;
    json_object *json;
    char retry_after[32];
    char content_type[128];
    int64_t ms;
};

struct membuf {
    char *data;
    size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct membuf *b = userdata;
    size_t n = size * nmemb;
    char *nd = realloc(b->data, b->len + n + 1);
    if (!nd)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->data = nd;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct res *r = userdata;
    size_t n = size * nmemb;
    static const char name[] = "Retry-After:";
    if (n > sizeof(name) - 1 && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        size_t i = sizeof(name) - 1, j = 0;
        while (i < n && ptr[i] == ' ')
            i++;
        while (i < n && ptr[i] != '\r' && ptr[i] != '\n' && j + 1 < sizeof(r->retry_after))
            r->retry_after[j++] = ptr[i++];
        r->retry_after[j] = '\0';
    }
    return n;
}

static struct res http(const char *base, const char *method, const char *path, const char *body)
{
    struct res r = {0};
    struct membuf b = {0};
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = NULL;
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    int64_t t0 = pl_now_ms();
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r.content_type, sizeof(r.content_type), "%s", ct ? ct : "");
    }
    r.ms = pl_now_ms() - t0;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.body = b.data ? b.data : strdup("");
    r.json = json_tokener_parse(r.body);
    return r;
}

static void res_free(struct res *r)
{
    free(r->body);
    json_object_put(r->json);
    memset(r, 0, sizeof(*r));
}

/* The JSON value at a dotted path of object keys ("error.param"), or NULL. */
static json_object *jget(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        if (!json_object_object_get_ex(o, k, &o))
            return NULL;
    return o;
}

static const char *jstr(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static int64_t jint(json_object *o, const char *path)
{
    json_object *v = jget(o, path);
    if (!v || !json_object_is_type(v, json_type_int))
        fail_msg("%s is not an integer in %s", path, json_object_to_json_string(o));
    return json_object_get_int64(v);
}

/* A chat request body: system may be NULL. Caller frees. */
static char *chat_body(const char *model, const char *system, const char *user)
{
    json_object *msgs = json_object_new_array();
    if (system) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("system"));
        json_object_object_add(m, "content", json_object_new_string(system));
        json_object_array_add(msgs, m);
    }
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("user"));
    json_object_object_add(m, "content", json_object_new_string(user));
    json_object_array_add(msgs, m);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model", json_object_new_string(model));
    json_object_object_add(o, "messages", msgs);
    json_object_object_add(o, "temperature", json_object_new_double(0.2));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

/* The reply text of a successful completion (caller frees). */
static char *chat(const char *base, const char *model, const char *system, const char *user)
{
    char *body = chat_body(model, system, user);
    struct res r = http(base, "POST", "/v1/chat/completions", body);
    free(body);
    if (r.status != 200)
        fail_msg("chat: status %ld: %s", r.status, r.body);
    json_object *choices = jget(r.json, "choices");
    assert_non_null(choices);
    assert_int_equal(json_object_array_length(choices), 1);
    const char *content = jstr(json_object_array_get_idx(choices, 0), "message.content");
    assert_non_null(content);
    char *out = strdup(content);
    res_free(&r);
    return out;
}

static void assert_chat(const char *base, const char *model, const char *system, const char *user,
                        const char *expect)
{
    char *got = chat(base, model, system, user);
    assert_string_equal(got, expect);
    free(got);
}

/* ---- the shared simulator ---------------------------------------------------------------- */

static const char main_scenario[] =
    "{\n"
    "  \"seed\": 7,\n"
    "  \"latency_ms\": 0,\n"
    "  \"rules\": [\n"
    "    {\"name\": \"slow\", \"match\": {\"user\": \"^slow \"}, \"latency_ms\": 200,\n"
    "     \"reply\": \"slow\"},\n"
    "    {\"name\": \"degraded\", \"phase\": \"degraded\", \"match\": {\"system\": \"JSON\"},\n"
    "     \"reply\": \"not json at all\"},\n"
    "    {\"name\": \"json\", \"match\": {\"system\": \"(?i)answer in json\"},\n"
    "     \"reply\": \"{\\\"answer\\\": \\\"{{user_json}}\\\", \\\"system\\\": "
    "\\\"{{system_json}}\\\"}\"},\n"
    "    {\"name\": \"first\", \"match\": {\"user\": \"^order \"},\n"
    "     \"reply\": \"first {{user}} {{unknown}}\"},\n"
    "    {\"name\": \"second\", \"match\": {\"user\": \"^order \"}, \"reply\": \"second\"},\n"
    "    {\"name\": \"model\", \"match\": {\"model\": \"^sim-special$\"}, \"reply\": "
    "\"special\"},\n"
    "    {\"name\": \"coin\", \"match\": {\"user\": \"^coin \"}, \"p\": 0.7, \"reply\": "
    "\"heads\"}\n"
    "  ],\n"
    "  \"default_reply\": \"I am a simulator.\"\n"
    "}\n";

static struct simproc main_sim;

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    simproc_start(&main_sim, main_scenario, NULL, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bool ok = simproc_stop(&main_sim);
    curl_global_cleanup();
    return ok ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_system_rule_embeds_user_json(void **state)
{
    (void)state;
    const char *system = "You are a bot.\nAnswer in JSON, please.";
    const char *user = "He said \"hi\"\n\tand left \\ a note: {{user}} é";
    char *reply = chat(main_sim.base, "gpt-sim", system, user);
    json_object *o = json_tokener_parse(reply);
    if (!o)
        fail_msg("reply is not JSON: %s", reply);
    assert_string_equal(jstr(o, "answer"), user);
    assert_string_equal(jstr(o, "system"), system);
    json_object_put(o);
    free(reply);
}

static void test_user_rule_first_match_wins(void **state)
{
    (void)state;
    /* "first" and "second" both match: the earlier rule answers; unknown placeholders stay. */
    assert_chat(main_sim.base, "gpt-sim", NULL, "order pizza", "first order pizza {{unknown}}");
    /* The user pattern is tested against the LAST user message only. */
    const char *body = "{\"model\":\"m\",\"messages\":["
                       "{\"role\":\"user\",\"content\":\"order tea\"},"
                       "{\"role\":\"assistant\",\"content\":\"ok\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"order \"},"
                       "{\"type\":\"text\",\"text\":\"via parts\"}]}]}";
    struct res r = http(main_sim.base, "POST", "/chat/completions", body);
    assert_int_equal(r.status, 200);
    json_object *choice = json_object_array_get_idx(jget(r.json, "choices"), 0);
    assert_string_equal(jstr(choice, "message.content"), "first order via parts {{unknown}}");
    res_free(&r);
}

static void test_model_rule_and_default_reply(void **state)
{
    (void)state;
    assert_chat(main_sim.base, "sim-special", NULL, "hello", "special");
    assert_chat(main_sim.base, "gpt-sim", NULL, "hello", "I am a simulator.");
    assert_chat(main_sim.base, "gpt-sim", "Be brief.", "what time is it?", "I am a simulator.");
}

static void post_phase(const char *phase)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"phase\":\"%s\"}", phase);
    struct res r = http(main_sim.base, "POST", "/sim/phase", body);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "phase"), phase);
    res_free(&r);
}

static void test_phase_switching(void **state)
{
    (void)state;
    const char *system = "Answer in JSON.";
    char *before = chat(main_sim.base, "gpt-sim", system, "q1");
    assert_string_equal(before, "{\"answer\": \"q1\", \"system\": \"Answer in JSON.\"}");

    post_phase("degraded");
    struct res r = http(main_sim.base, "GET", "/sim/stats", NULL);
    assert_string_equal(jstr(r.json, "phase"), "degraded");
    res_free(&r);
    r = http(main_sim.base, "GET", "/sim/phase", NULL);
    assert_string_equal(jstr(r.json, "phase"), "degraded");
    res_free(&r);
    assert_chat(main_sim.base, "gpt-sim", system, "q1", "not json at all");
    /* Rules without a phase still apply in every phase. */
    assert_chat(main_sim.base, "gpt-sim", NULL, "order soup", "first order soup {{unknown}}");

    r = http(main_sim.base, "POST", "/sim/phase", "{\"phase\": 3}");
    assert_int_equal(r.status, 400);
    assert_string_equal(jstr(r.json, "error.param"), "phase");
    res_free(&r);
    r = http(main_sim.base, "POST", "/sim/phase", "{\"phase\": \"x\", \"extra\": 1}");
    assert_int_equal(r.status, 400);
    res_free(&r);

    post_phase("default");
    char *after = chat(main_sim.base, "gpt-sim", system, "q1");
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static void test_probability_is_deterministic_with_rate(void **state)
{
    (void)state;
    enum { N = 400 };
    static bool heads[N];
    int applied = 0;
    char user[32];
    for (int i = 0; i < N; i++) {
        snprintf(user, sizeof(user), "coin %d", i);
        char *reply = chat(main_sim.base, "gpt-sim", NULL, user);
        heads[i] = strcmp(reply, "heads") == 0;
        if (!heads[i])
            assert_string_equal(reply, "I am a simulator.");
        applied += heads[i];
        free(reply);
    }
    double share = (double)applied / N;
    if (share < 0.6 || share > 0.8)
        fail_msg("p=0.7 applied to %d of %d requests (%.3f)", applied, N, share);
    /* The same content gets the same decision, whatever happened in between. */
    for (int i = 0; i < 60; i++) {
        snprintf(user, sizeof(user), "coin %d", i);
        char *reply = chat(main_sim.base, "gpt-sim", NULL, user);
        assert_int_equal(strcmp(reply, "heads") == 0, heads[i]);
        free(reply);
    }
}

static void test_completion_shape_and_usage(void **state)
{
    (void)state;
    /* 9 + 5 prompt characters -> ceil(14/4) = 4; "I am a simulator." (17) -> 5. */
    char *body = chat_body("gpt-usage", "abcd efgh", "12345");
    struct res r = http(main_sim.base, "POST", "/v1/chat/completions", body);
    free(body);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.content_type, "application/json"));
    const char *id = jstr(r.json, "id");
    assert_non_null(id);
    assert_int_equal(strncmp(id, "chatcmpl-sim-", 13), 0);
    assert_string_equal(jstr(r.json, "object"), "chat.completion");
    assert_string_equal(jstr(r.json, "model"), "gpt-usage");
    assert_true(jint(r.json, "created") > 1600000000);
    json_object *choice = json_object_array_get_idx(jget(r.json, "choices"), 0);
    assert_int_equal(jint(choice, "index"), 0);
    assert_string_equal(jstr(choice, "message.role"), "assistant");
    assert_string_equal(jstr(choice, "finish_reason"), "stop");
    assert_int_equal(jint(r.json, "usage.prompt_tokens"), 4);
    assert_int_equal(jint(r.json, "usage.completion_tokens"), 5);
    assert_int_equal(jint(r.json, "usage.total_tokens"), 9);
    res_free(&r);
}

static void assert_invalid(const char *path, const char *body, const char *param,
                           const char *message_part)
{
    struct res r = http(main_sim.base, "POST", path, body);
    if (r.status != 400)
        fail_msg("%s: status %ld, want 400: %s", body, r.status, r.body);
    assert_string_equal(jstr(r.json, "error.type"), "invalid_request_error");
    if (param)
        assert_string_equal(jstr(r.json, "error.param"), param);
    if (message_part && !strstr(jstr(r.json, "error.message"), message_part))
        fail_msg("error message \"%s\" lacks \"%s\"", jstr(r.json, "error.message"), message_part);
    res_free(&r);
}

static void test_request_validation(void **state)
{
    (void)state;
    const char *c = "/v1/chat/completions";
    assert_invalid(c, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", NULL);
    assert_invalid(c, "{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                   "model", NULL);
    assert_invalid(c, "{\"model\":\"m\",\"messages\":[]}", "messages", NULL);
    assert_invalid(c,
                   "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                   "{\"role\":\"robot\",\"content\":\"y\"}]}",
                   "messages[1].role", "robot");
    assert_invalid(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
                   "messages[0].content", NULL);
    assert_invalid(c,
                   "{\"model\":\"m\",\"stream\":true,"
                   "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                   "stream", "stream is not supported by the simulator");
    assert_invalid("/chat/completions",
                   "{\"model\":\"m\",\"temperature\":\"hot\","
                   "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                   "temperature", NULL);
    assert_invalid(c, "{\"model\":\"m\",", NULL, "not valid JSON");

    struct res r = http(main_sim.base, "POST", "/v1/nothing", "{}");
    assert_int_equal(r.status, 404);
    assert_string_equal(jstr(r.json, "error.type"), "invalid_request_error");
    res_free(&r);
    r = http(main_sim.base, "GET", "/v1/chat/completions", NULL);
    assert_int_equal(r.status, 405);
    assert_non_null(jstr(r.json, "error.message"));
    res_free(&r);
    r = http(main_sim.base, "DELETE", "/healthz", NULL);
    assert_int_equal(r.status, 405);
    res_free(&r);

    /* Over the 4 MiB body limit. */
    size_t big = (size_t)5 << 20;
    char *body = malloc(big + 1);
    assert_non_null(body);
    memset(body, ' ', big);
    body[big] = '\0';
    body[0] = '{';
    body[big - 1] = '}';
    r = http(main_sim.base, "POST", c, body);
    free(body);
    assert_int_equal(r.status, 413);
    assert_string_equal(jstr(r.json, "error.type"), "invalid_request_error");
    res_free(&r);
}

static void test_stats_counts(void **state)
{
    (void)state;
    struct simproc p;
    simproc_start(&p,
                  "{\"rules\":[{\"name\":\"a\",\"match\":{\"user\":\"^a\"},\"reply\":\"A\"},"
                  "{\"name\":\"b\",\"match\":{\"user\":\"^b\"},\"reply\":\"B\"}],"
                  "\"default_reply\":\"D\"}",
                  NULL, NULL);
    for (int i = 0; i < 3; i++)
        assert_chat(p.base, "m", NULL, "apple", "A");
    assert_chat(p.base, "m", NULL, "zebra", "D");
    assert_chat(p.base, "m", NULL, "yak", "D");
    struct res r = http(p.base, "POST", "/v1/chat/completions", "{\"model\":\"m\"}");
    assert_int_equal(r.status, 400);
    res_free(&r);
    r = http(p.base, "GET", "/sim/stats", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "requests"), 6);
    assert_int_equal(jint(r.json, "replies"), 5);
    assert_int_equal(jint(r.json, "rules.a"), 3);
    assert_int_equal(jint(r.json, "rules.b"), 0);
    assert_int_equal(jint(r.json, "default_hits"), 2);
    assert_int_equal(jint(r.json, "faults.http_429"), 0);
    assert_int_equal(jint(r.json, "faults.http_500"), 0);
    assert_int_equal(jint(r.json, "faults.timeout"), 0);
    assert_int_equal(jint(r.json, "faults.garbage"), 0);
    assert_string_equal(jstr(r.json, "phase"), "default");
    res_free(&r);
    r = http(p.base, "GET", "/healthz", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    res_free(&r);
    simproc_stop_ok(&p);
}

/* Starts a simulator with only the given faults object and sends one chat request. */
static struct res one_fault(struct simproc *p, const char *faults)
{
    char scenario[512];
    snprintf(scenario, sizeof(scenario), "{\"seed\":1,\"faults\":%s,\"rules\":[]}", faults);
    simproc_start(p, scenario, NULL, NULL);
    char *body = chat_body("m", NULL, "hi");
    struct res r = http(p->base, "POST", "/v1/chat/completions", body);
    free(body);
    return r;
}

static void assert_fault_count(struct simproc *p, const char *which)
{
    char path[64];
    snprintf(path, sizeof(path), "faults.%s", which);
    struct res r = http(p->base, "GET", "/sim/stats", NULL);
    assert_int_equal(jint(r.json, path), 1);
    assert_int_equal(jint(r.json, "requests"), 1);
    assert_int_equal(jint(r.json, "replies"), 0);
    res_free(&r);
}

static void test_fault_429(void **state)
{
    (void)state;
    struct simproc p;
    struct res r = one_fault(&p, "{\"http_429\":1,\"retry_after_s\":3}");
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "3");
    assert_string_equal(jstr(r.json, "error.type"), "rate_limit_error");
    res_free(&r);
    assert_fault_count(&p, "http_429");
    simproc_stop_ok(&p);
}

static void test_fault_500(void **state)
{
    (void)state;
    struct simproc p;
    struct res r = one_fault(&p, "{\"http_500\":1}");
    assert_int_equal(r.status, 500);
    assert_string_equal(jstr(r.json, "error.type"), "server_error");
    res_free(&r);
    assert_fault_count(&p, "http_500");
    simproc_stop_ok(&p);
}

static void test_fault_garbage(void **state)
{
    (void)state;
    struct simproc p;
    struct res r = one_fault(&p, "{\"garbage\":1}");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.content_type, "application/json"));
    assert_true(r.body[0] == '{');
    assert_null(r.json); /* the body does not parse */
    res_free(&r);
    assert_fault_count(&p, "garbage");
    simproc_stop_ok(&p);
}

static void test_fault_timeout(void **state)
{
    (void)state;
    struct simproc p;
    struct res r = one_fault(&p, "{\"timeout\":1,\"timeout_ms\":300}");
    assert_int_equal(r.status, 504);
    if (r.ms < 300)
        fail_msg("timeout answered after %lld ms, want at least 300", (long long)r.ms);
    res_free(&r);
    assert_fault_count(&p, "timeout");
    simproc_stop_ok(&p);
}

/* The fault sequence is a function of the seed and the arrival order alone. */
static void test_fault_sequence_is_reproducible(void **state)
{
    (void)state;
    const char *scenario = "{\"seed\":3,\"faults\":{\"http_500\":0.5},\"rules\":[]}";
    long first[24];
    for (int run = 0; run < 2; run++) {
        struct simproc p;
        simproc_start(&p, scenario, NULL, NULL);
        int n500 = 0;
        for (int i = 0; i < 24; i++) {
            char user[16];
            snprintf(user, sizeof(user), "q%d", i);
            char *body = chat_body("m", NULL, user);
            struct res r = http(p.base, "POST", "/v1/chat/completions", body);
            free(body);
            assert_true(r.status == 200 || r.status == 500);
            n500 += r.status == 500;
            if (run == 0)
                first[i] = r.status;
            else
                assert_int_equal(r.status, first[i]);
            res_free(&r);
        }
        assert_true(n500 > 0 && n500 < 24);
        simproc_stop_ok(&p);
    }
}

static void test_latency_override(void **state)
{
    (void)state;
    struct simproc p;
    simproc_start(&p, "{\"latency_ms\":0,\"rules\":[]}", "--latency-ms", "250");
    char *body = chat_body("m", NULL, "hi");
    struct res r = http(p.base, "POST", "/v1/chat/completions", body);
    free(body);
    assert_int_equal(r.status, 200);
    if (r.ms < 250)
        fail_msg("answered after %lld ms, want at least 250", (long long)r.ms);
    res_free(&r);
    simproc_stop_ok(&p);
}

struct inflight {
    const char *base;
    const char *user;
    struct res r;
};

static void *inflight_run(void *arg)
{
    struct inflight *f = arg;
    char *body = chat_body("m", NULL, f->user);
    f->r = http(f->base, "POST", "/v1/chat/completions", body);
    free(body);
    return NULL;
}

/* SIGTERM ends a request that sleeps in a long simulated timeout, and the exit is clean. */
static void test_shutdown_interrupts_sleep(void **state)
{
    (void)state;
    struct simproc p;
    simproc_start(&p, "{\"faults\":{\"timeout\":1,\"timeout_ms\":600000},\"rules\":[]}", NULL,
                  NULL);
    struct inflight f = {.base = p.base, .user = "hang"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, inflight_run, &f), 0);
    int64_t deadline = pl_now_ms() + 10000, sleeping = 0;
    while (sleeping == 0 && pl_now_ms() < deadline) {
        struct res r = http(p.base, "GET", "/sim/stats", NULL);
        sleeping = r.json ? jint(r.json, "faults.timeout") : 0;
        res_free(&r);
        if (sleeping == 0)
            pl_sleep_ms(20);
    }
    assert_int_equal(sleeping, 1);
    int64_t t0 = pl_now_ms();
    simproc_stop_ok(&p);
    pthread_join(t, NULL);
    assert_true(pl_now_ms() - t0 < 5000);
    assert_true(f.r.status == 504 || f.r.status == 0); /* answered, or cut off by the exit */
    res_free(&f.r);
}

static void test_parallel_latency(void **state)
{
    (void)state;
    enum { N = 32 };
    struct inflight f[N];
    char users[N][32];
    pthread_t t[N];
    int64_t t0 = pl_now_ms();
    for (int i = 0; i < N; i++) {
        snprintf(users[i], sizeof(users[i]), "slow %d", i);
        f[i] = (struct inflight){.base = main_sim.base, .user = users[i]};
        assert_int_equal(pthread_create(&t[i], NULL, inflight_run, &f[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int64_t total = pl_now_ms() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(f[i].r.status, 200);
        if (f[i].r.ms < 200)
            fail_msg("request %d answered after %lld ms, before its 200 ms latency", i,
                     (long long)f[i].r.ms);
        res_free(&f[i].r);
    }
    if (total >= 2000)
        fail_msg("%d requests of 200 ms took %lld ms: not served in parallel", N, (long long)total);
}

/* Runs pl-llmsim to its exit; returns the exit code, its output in out. */
static int run_to_exit(const char *scenario, const char *a1, const char *a2, char *out,
                       size_t outsz)
{
    struct simproc p;
    simproc_spawn(&p, scenario, a1, a2);
    int st = itest_wait(p.pid, SIM_START_MS);
    if (st == -1) {
        kill(p.pid, SIGKILL);
        itest_wait(p.pid, SIM_STOP_MS);
        fail_msg("pl-llmsim kept running on a bad scenario or flag");
    }
    FILE *fp = fopen(p.log, "r");
    size_t n = fp ? fread(out, 1, outsz - 1, fp) : 0;
    out[n] = '\0';
    if (fp)
        fclose(fp);
    unlink(p.log);
    unlink(p.scenario);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void assert_rejected(const char *scenario, const char *a1, const char *a2,
                            const char *needle1, const char *needle2)
{
    char out[4096];
    int code = run_to_exit(scenario, a1, a2, out, sizeof(out));
    if (code != 2)
        fail_msg("exit %d, want 2, for %s: %s", code, scenario, out);
    if (!strstr(out, needle1) || (needle2 && !strstr(out, needle2)))
        fail_msg("message lacks \"%s\"/\"%s\": %s", needle1, needle2 ? needle2 : "", out);
}

static void test_bad_scenarios_and_flags(void **state)
{
    (void)state;
    assert_rejected("{\"rules\": [", NULL, NULL, "invalid JSON", NULL);
    assert_rejected("{\"rules\": [], \"latency\": 5}", NULL, NULL, "latency", "unknown key");
    assert_rejected("{\"rules\": [{\"name\": \"r\", \"reply\": \"x\", \"colour\": 1}]}", NULL, NULL,
                    "rules[0].colour", "unknown key");
    assert_rejected("{\"rules\": [{\"name\": \"ok\", \"reply\": \"x\"},"
                    " {\"name\": \"broken\", \"reply\": \"x\", \"match\": {\"system\": \"(a\"}}]}",
                    NULL, NULL, "rules[1].match.system", "broken");
    assert_rejected("{\"rules\": [], \"faults\": {\"http_429\": 0.5, \"http_500\": 0.3,"
                    " \"timeout\": 0.3}}",
                    NULL, NULL, "faults", "sum");
    assert_rejected("{\"rules\": [{\"name\": \"r\", \"reply\": \"x\", \"p\": 1.5}]}", NULL, NULL,
                    "rules[0].p", NULL);
    assert_rejected("{\"rules\": [{\"name\": \"r\", \"reply\": \"x\", \"latency_ms\": -1}]}", NULL,
                    NULL, "rules[0].latency_ms", NULL);
    assert_rejected("{\"rules\": []}", "--port", "http", "--port", NULL);
    assert_rejected("{\"rules\": []}", "--latency", "5", "unknown option", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_system_rule_embeds_user_json),
        cmocka_unit_test(test_user_rule_first_match_wins),
        cmocka_unit_test(test_model_rule_and_default_reply),
        cmocka_unit_test(test_phase_switching),
        cmocka_unit_test(test_probability_is_deterministic_with_rate),
        cmocka_unit_test(test_completion_shape_and_usage),
        cmocka_unit_test(test_request_validation),
        cmocka_unit_test(test_parallel_latency),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_fault_429),
        cmocka_unit_test(test_fault_500),
        cmocka_unit_test(test_fault_garbage),
        cmocka_unit_test(test_fault_timeout),
        cmocka_unit_test(test_fault_sequence_is_reproducible),
        cmocka_unit_test(test_latency_override),
        cmocka_unit_test(test_shutdown_interrupts_sleep),
        cmocka_unit_test(test_bad_scenarios_and_flags),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
