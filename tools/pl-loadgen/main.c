/* pl-loadgen: plays the user's LLM application. Each request comes from one of --users
 * simulated users (round robin), whose id is the routing key: the application takes the live
 * system prompt served to that user from the API, as applications do (GET /v2/deployments?...
 * deploymentId=current&routing_key=<user>, cached per user for 2 s like the SDKs of the
 * anchors), so a canary reaches the same users on every request. It asks the LLM a customer
 * question with it and sends the trace to the ingest API with prompt: {name, version} and
 * metadata.user, so the loop sees which prompt version produced which output for whom. */
#include "config.h"
#include "llm.h"
#include "log.h"
#include "registry.h"
#include "service.h"
#include "util.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOADGEN_CACHE_MS  2000
#define LOADGEN_TICK_MS   200
#define LOADGEN_USERS_MAX 100000

static const char loadgen_usage[] =
    "usage: pl-loadgen [options]\n"
    "  --api URL          ingest API (default $PL_API_URL)\n"
    "  --key KEY          member or owner API key (default $PL_MEMBER_KEY)\n"
    "  --project ID       (default $PL_PROJECT_ID)\n"
    "  --prompt NAME      registry prompt the application uses (default support-chat)\n"
    "  --rate N           requests per second (default 20)\n"
    "  --requests N       stop after N requests (default 0: no limit)\n"
    "  --duration S       stop after S seconds (default 0: no limit)\n"
    "  --run-id ID        trace id prefix (default: random)\n"
    "  --users N          simulated users, each its own routing key (default 100)\n"
    "  --scenario NAME    what the users ask: support (default) or travel\n"
    "LLM settings come from PL_LLM_* (PL_LLM_BASE_URL, PL_LLM_API_KEY, ...) like the services'.\n";

/* What the simulated users ask: questions around a number (before, number, after). */
struct loadgen_question {
    const char *before, *after;
};

static const struct loadgen_question loadgen_support[] = {
    {"What is the status of order ", "?"},
    {"Can I return the jacket from order ", "? I bought it 20 days ago."},
    {"How long does shipping to Norway take for order ", "?"},
    {"Do you have the blue kettle (item ", ") in stock?"},
    {"How do I change the delivery address of order ", "?"},
    {"Was I charged twice for order ", "?"},
    {"Can I add a gift note to order ", "?"},
    {"Which payment methods can I use for order ", "?"},
};

static const struct loadgen_question loadgen_travel[] = {
    {"Is flight ", " on time?"},
    {"Can I change the seat on booking ", "?"},
    {"How much luggage is included in fare ", "?"},
    {"Can I cancel hotel reservation ", " for free?"},
};

static const struct {
    const char *name;
    const struct loadgen_question *questions;
    size_t n;
} loadgen_scenarios[] = {
    {"support", loadgen_support, sizeof(loadgen_support) / sizeof(loadgen_support[0])},
    {"travel", loadgen_travel, sizeof(loadgen_travel) / sizeof(loadgen_travel[0])},
};
#define LOADGEN_NSCENARIOS (sizeof(loadgen_scenarios) / sizeof(loadgen_scenarios[0]))

/* A simulated user: its routing key and the live prompt it was served, cached. */
struct loadgen_user {
    char key[32];
    int64_t fetched_at;
    char deployment_id[64];
    int version; /* 0 until first served */
    char *system, *model;
};

struct loadgen {
    const char *api, *key, *project, *prompt, *run_id;
    const struct loadgen_question *questions;
    size_t nquestions;
    long long rate, requests, duration_s;
    struct pl_config cfg;
    struct pl_llm_client *llm;
    CURL *http;
    char prompt_id[37], environment_id[37]; /* looked up once by name */
    struct loadgen_user *users;
    long long nusers;
    char served[256]; /* the versions being served ("1" or "1, 2"), for the log */
    long long sent, failed, llm_failed;
};

static const char *loadgen_opt(int argc, char **argv, const char *name, const char *env)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return env ? getenv(env) : NULL;
}

struct loadgen_body {
    char *data;
    size_t len;
};

static size_t loadgen_collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct loadgen_body *b = arg;
    size_t n = size * nmemb;
    if (b->len + n > 4 * 1024 * 1024)
        return 0;
    char *p = realloc(b->data, b->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, data, n);
    b->data = p;
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* GET api + path; @returns the parsed JSON of a 200 answer (caller puts it), or NULL. */
static json_object *loadgen_get(struct loadgen *g, const char *path)
{
    char url[1024], auth[300];
    snprintf(url, sizeof(url), "%s%s", g->api, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", g->key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    struct loadgen_body body = {0};
    curl_easy_reset(g->http);
    curl_easy_setopt(g->http, CURLOPT_URL, url);
    curl_easy_setopt(g->http, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(g->http, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(g->http, CURLOPT_WRITEFUNCTION, loadgen_collect);
    curl_easy_setopt(g->http, CURLOPT_WRITEDATA, &body);
    long status = 0;
    if (curl_easy_perform(g->http) == CURLE_OK)
        curl_easy_getinfo(g->http, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    json_object *o = status == 200 && body.data ? json_tokener_parse(body.data) : NULL;
    if (status != 200)
        pl_warn("loadgen: GET %s answered %ld", path, status);
    free(body.data);
    return o;
}

/* The prompt's id (by name) and the production environment's id, once. */
static int loadgen_resolve(struct loadgen *g)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/prompts?project_id=%s&limit=200", g->project);
    json_object *prompts = loadgen_get(g, path), *items, *name, *id;
    if (prompts && json_object_object_get_ex(prompts, "items", &items))
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *p = json_object_array_get_idx(items, i);
            if (json_object_object_get_ex(p, "name", &name) &&
                strcmp(json_object_get_string(name), g->prompt) == 0 &&
                json_object_object_get_ex(p, "id", &id))
                snprintf(g->prompt_id, sizeof(g->prompt_id), "%s", json_object_get_string(id));
        }
    json_object_put(prompts);
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s", g->project);
    json_object *envs = loadgen_get(g, path);
    if (envs && json_object_object_get_ex(envs, "items", &items))
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *e = json_object_array_get_idx(items, i);
            if (json_object_object_get_ex(e, "name", &name) &&
                strcmp(json_object_get_string(name), "production") == 0 &&
                json_object_object_get_ex(e, "id", &id))
                snprintf(g->environment_id, sizeof(g->environment_id), "%s",
                         json_object_get_string(id));
        }
    json_object_put(envs);
    if (!g->prompt_id[0] || !g->environment_id[0]) {
        pl_warn("loadgen: prompt %s or the production environment not found", g->prompt);
        return -1;
    }
    return 0;
}

/* The version the environment's "live" list serves to the user, and the deployment row it
 * comes from (deployment_id, 64 bytes). @returns the version, or 0 when not found. */
static int loadgen_version_of(struct loadgen *g, const struct loadgen_user *u,
                              char deployment_id[64])
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/environments?project_id=%s&routing_key=%s", g->project,
             u->key);
    json_object *envs = loadgen_get(g, path), *items, *id, *live, *pid, *version, *row;
    int v = 0;
    deployment_id[0] = '\0';
    if (envs && json_object_object_get_ex(envs, "items", &items))
        for (size_t i = 0; i < json_object_array_length(items); i++) {
            json_object *e = json_object_array_get_idx(items, i);
            if (!json_object_object_get_ex(e, "id", &id) ||
                strcmp(json_object_get_string(id), g->environment_id) != 0 ||
                !json_object_object_get_ex(e, "live", &live))
                continue;
            for (size_t k = 0; k < json_object_array_length(live); k++) {
                json_object *l = json_object_array_get_idx(live, k);
                if (json_object_object_get_ex(l, "prompt_id", &pid) &&
                    strcmp(json_object_get_string(pid), g->prompt_id) == 0 &&
                    json_object_object_get_ex(l, "version", &version) &&
                    json_object_object_get_ex(l, "deployment_id", &row)) {
                    v = json_object_get_int(version);
                    snprintf(deployment_id, 64, "%s", json_object_get_string(row));
                }
            }
        }
    json_object_put(envs);
    return v;
}

/* The text of the system message of an Adaline prompt snapshot (caller frees). */
static char *loadgen_system_of(json_object *msgs)
{
    char *system = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&system, &len);
    if (!f)
        return NULL;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i), *role, *content;
        if (!json_object_object_get_ex(m, "role", &role) ||
            strcmp(json_object_get_string(role), "system") != 0 ||
            !json_object_object_get_ex(m, "content", &content))
            continue;
        for (size_t k = 0; k < json_object_array_length(content); k++) {
            json_object *v;
            if (json_object_object_get_ex(json_object_array_get_idx(content, k), "value", &v))
                fputs(json_object_get_string(v), f);
        }
        break;
    }
    fclose(f);
    return system;
}

/* Logs when the set of versions served to the users changes (a version reaching or leaving
 * some users), not every user's move: "is now version N" once every served user has N. */
static void loadgen_served_update(struct loadgen *g)
{
    char served[256] = "";
    size_t len = 0;
    int count = 0, last = 0;
    for (;;) { /* the distinct versions, ascending */
        int next = 0;
        for (long long i = 0; i < g->nusers; i++)
            if (g->users[i].version > last && (next == 0 || g->users[i].version < next))
                next = g->users[i].version;
        if (next == 0)
            break;
        if (len < sizeof(served))
            len += (size_t)snprintf(served + len, sizeof(served) - len, "%s%d", count ? ", " : "",
                                    next);
        count++;
        last = next;
    }
    if (count == 0 || strcmp(served, g->served) == 0)
        return;
    if (g->served[0] && count == 1)
        pl_info("loadgen: prompt %s is now version %s", g->prompt, served);
    else if (g->served[0])
        pl_info("loadgen: prompt %s is now served as versions %s (a canary or a rollout in "
                "progress)",
                g->prompt, served);
    snprintf(g->served, sizeof(g->served), "%s", served);
}

/* Refreshes the user's cached live prompt when older than LOADGEN_CACHE_MS. @returns 0, or -1
 * when the user has no prompt to use. */
static int loadgen_live_prompt(struct loadgen *g, struct loadgen_user *u)
{
    if (u->system && pl_now_ms() - u->fetched_at < LOADGEN_CACHE_MS)
        return 0;
    if (!g->prompt_id[0] && loadgen_resolve(g) != 0)
        return -1;
    char path[320];
    snprintf(path, sizeof(path),
             "/v2/deployments?promptId=%s&deploymentId=current&deploymentEnvironmentId=%s"
             "&routing_key=%s",
             g->prompt_id, g->environment_id, u->key);
    /* The version number comes from a second read; a deployment between the two reads would
     * pair one version's text with another's number, so both must name the same row. */
    for (int attempt = 0; attempt < 3; attempt++) {
        json_object *d = loadgen_get(g, path), *id, *prompt, *msgs, *config, *model;
        if (!d || !json_object_object_get_ex(d, "id", &id) ||
            !json_object_object_get_ex(d, "prompt", &prompt) ||
            !json_object_object_get_ex(prompt, "messages", &msgs)) {
            json_object_put(d);
            return u->system ? 0 : -1; /* keep serving the cached prompt */
        }
        int version = u->version;
        if (strcmp(json_object_get_string(id), u->deployment_id) != 0) {
            char row[64];
            version = loadgen_version_of(g, u, row);
            if (strcmp(row, json_object_get_string(id)) != 0) {
                json_object_put(d);
                continue;
            }
        }
        char *system = loadgen_system_of(msgs);
        if (!system) {
            json_object_put(d);
            return u->system ? 0 : -1;
        }
        free(u->system);
        free(u->model);
        u->system = system;
        /* a manifest without a model configuration gives "": the LLM client's default then */
        u->model = json_object_object_get_ex(prompt, "config", &config) &&
                           json_object_object_get_ex(config, "model", &model) &&
                           json_object_is_type(model, json_type_string) &&
                           json_object_get_string_len(model) > 0
                       ? strdup(json_object_get_string(model))
                       : NULL;
        snprintf(u->deployment_id, sizeof(u->deployment_id), "%s", json_object_get_string(id));
        u->fetched_at = pl_now_ms();
        json_object_put(d);
        if (version != u->version) {
            u->version = version;
            loadgen_served_update(g);
        }
        return 0;
    }
    return u->system ? 0 : -1; /* the prompt keeps changing: the cached one for now */
}

static size_t loadgen_discard(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

static long loadgen_post(struct loadgen *g, const char *body)
{
    char url[600], auth[300];
    snprintf(url, sizeof(url), "%s/v1/ingest/batch", g->api);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", g->key);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    curl_easy_reset(g->http);
    curl_easy_setopt(g->http, CURLOPT_URL, url);
    curl_easy_setopt(g->http, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(g->http, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(g->http, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(g->http, CURLOPT_WRITEFUNCTION, loadgen_discard);
    long status = 0;
    if (curl_easy_perform(g->http) == CURLE_OK)
        curl_easy_getinfo(g->http, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return status;
}

/* Sends n requests: n LLM calls at once, then one ingest batch of their traces. Request k
 * comes from user k mod --users, with the prompt that user is served. */
static void loadgen_tick(struct loadgen *g, int n)
{
    char questions[100][160];
    struct pl_llm_message msgs[100][2];
    struct pl_llm_call calls[100];
    struct loadgen_user *who[100];
    long long ks[100];
    int m = 0;
    for (int i = 0; i < n; i++) {
        long long k = g->sent + i;
        struct loadgen_user *u = &g->users[k % g->nusers];
        if (loadgen_live_prompt(g, u) != 0) {
            g->failed++;
            continue;
        }
        const struct loadgen_question *q = &g->questions[(size_t)k % g->nquestions];
        snprintf(questions[m], sizeof(questions[m]), "%s%lld%s", q->before, 1000 + k * 7 % 9000,
                 q->after);
        msgs[m][0] = (struct pl_llm_message){"system", u->system};
        msgs[m][1] = (struct pl_llm_message){"user", questions[m]};
        calls[m] = (struct pl_llm_call){
            .model = u->model, .messages = msgs[m], .nmessages = 2, .temperature = -1};
        who[m] = u;
        ks[m++] = k;
    }
    if (m == 0) {
        g->sent += n; /* ids move on: a retry is a new request of the app */
        return;
    }
    pl_llm_run(g->llm, calls, (size_t)m);
    json_object *batch = json_object_new_object(), *traces = json_object_new_array();
    for (int i = 0; i < m; i++) {
        char id[128];
        snprintf(id, sizeof(id), "%s-%lld", g->run_id, ks[i]);
        json_object *t = json_object_new_object(), *input = json_object_new_object(),
                    *conv = json_object_new_array(), *u = json_object_new_object(),
                    *pr = json_object_new_object(), *meta = json_object_new_object();
        json_object_object_add(t, "project_id", json_object_new_string(g->project));
        json_object_object_add(t, "id", json_object_new_string(id));
        json_object_object_add(t, "name", json_object_new_string("support-chat"));
        json_object_object_add(
            t, "model", json_object_new_string(who[i]->model ? who[i]->model : g->cfg.llm_model));
        json_object_object_add(u, "role", json_object_new_string("user"));
        json_object_object_add(u, "content", json_object_new_string(questions[i]));
        json_object_array_add(conv, u);
        json_object_object_add(input, "messages", conv);
        json_object_object_add(t, "input", input);
        if (calls[i].ok) {
            json_object_object_add(t, "output", json_object_new_string(calls[i].content));
            json_object_object_add(t, "latency_ms", json_object_new_int64(calls[i].latency_ms));
        } else {
            json_object_object_add(t, "error", json_object_new_string(calls[i].error));
            g->llm_failed++;
        }
        json_object_object_add(pr, "name", json_object_new_string(g->prompt));
        json_object_object_add(pr, "version", json_object_new_int(who[i]->version));
        json_object_object_add(t, "prompt", pr);
        json_object_object_add(meta, "user", json_object_new_string(who[i]->key));
        json_object_object_add(t, "metadata", meta);
        json_object_array_add(traces, t);
        pl_llm_call_clear(&calls[i]);
    }
    json_object_object_add(batch, "traces", traces);
    long status = loadgen_post(g, json_object_to_json_string_ext(batch, JSON_C_TO_STRING_PLAIN));
    json_object_put(batch);
    if (status != 201 && status != 200) {
        pl_warn("loadgen: ingest answered %ld", status);
        g->failed += m;
    }
    g->sent += n; /* ids move on either way: a retry is a new request of the app */
}

/* "1 (90 users), 2 (10 users)": how many users each version is served to, for the report. */
static void loadgen_served_counts(const struct loadgen *g, char *buf, size_t bufsz)
{
    size_t len = 0;
    int last = 0;
    buf[0] = '\0';
    for (;;) {
        int next = 0;
        long long users = 0;
        for (long long i = 0; i < g->nusers; i++)
            if (g->users[i].version > last && (next == 0 || g->users[i].version < next))
                next = g->users[i].version;
        if (next == 0)
            break;
        for (long long i = 0; i < g->nusers; i++)
            users += g->users[i].version == next;
        if (len < bufsz)
            len += (size_t)snprintf(buf + len, bufsz - len, "%s%d (%lld users)", last ? ", " : "",
                                    next, users);
        last = next;
    }
    if (!buf[0])
        snprintf(buf, bufsz, "none yet");
}

static void loadgen_on_signal(int sig)
{
    (void)sig;
    pl_running = 0;
}

int main(int argc, char **argv)
{
    pl_log_init("loadgen", PL_LOG_INFO);
    struct loadgen g = {0};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(loadgen_usage, stdout);
            return 0;
        }
    g.api = loadgen_opt(argc, argv, "--api", "PL_API_URL");
    g.key = loadgen_opt(argc, argv, "--key", "PL_MEMBER_KEY");
    g.project = loadgen_opt(argc, argv, "--project", "PL_PROJECT_ID");
    g.prompt = loadgen_opt(argc, argv, "--prompt", NULL);
    g.run_id = loadgen_opt(argc, argv, "--run-id", NULL);
    const char *scenario = loadgen_opt(argc, argv, "--scenario", NULL);
    for (size_t i = 0; i < LOADGEN_NSCENARIOS; i++)
        if (strcmp(loadgen_scenarios[i].name, scenario ? scenario : "support") == 0) {
            g.questions = loadgen_scenarios[i].questions;
            g.nquestions = loadgen_scenarios[i].n;
        }
    if (!g.questions) {
        fprintf(stderr, "pl-loadgen: --scenario must be support or travel\n");
        return 2;
    }
    const char *rate = loadgen_opt(argc, argv, "--rate", NULL),
               *requests = loadgen_opt(argc, argv, "--requests", NULL),
               *duration = loadgen_opt(argc, argv, "--duration", NULL),
               *users = loadgen_opt(argc, argv, "--users", NULL);
    g.prompt = g.prompt ? g.prompt : "support-chat";
    g.rate = 20;
    g.nusers = 100;
    if ((rate && (pl_parse_ll(rate, &g.rate) != 0 || g.rate < 1 || g.rate > 10000)) ||
        (requests && (pl_parse_ll(requests, &g.requests) != 0 || g.requests < 0)) ||
        (duration && (pl_parse_ll(duration, &g.duration_s) != 0 || g.duration_s < 0)) ||
        (users &&
         (pl_parse_ll(users, &g.nusers) != 0 || g.nusers < 1 || g.nusers > LOADGEN_USERS_MAX))) {
        fprintf(stderr,
                "pl-loadgen: --rate must be 1..10000, --users 1..%d, --requests and "
                "--duration >= 0\n",
                LOADGEN_USERS_MAX);
        return 2;
    }
    if (!g.api || !g.key || !g.project || !pl_uuid_valid(g.project)) {
        fprintf(stderr,
                "pl-loadgen: needs --api, --key and --project (or the PL_* "
                "variables from scripts/stack up)\n%s",
                loadgen_usage);
        return 2;
    }
    char run_id[32];
    if (!g.run_id) {
        unsigned char rnd[6];
        pl_random_bytes(rnd, sizeof(rnd));
        snprintf(run_id, sizeof(run_id), "lg-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
                 rnd[3], rnd[4], rnd[5]);
        g.run_id = run_id;
    }
    char err[512];
    pl_config_defaults(&g.cfg, "loadgen");
    if (pl_config_load(&g.cfg, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "pl-loadgen: %s\n", err);
        return 2;
    }
    signal(SIGINT, loadgen_on_signal);
    signal(SIGTERM, loadgen_on_signal);
    g.llm = pl_llm_client_new(&g.cfg, err, sizeof(err));
    g.http = curl_easy_init();
    g.users = calloc((size_t)g.nusers, sizeof(*g.users));
    int rc = 1;
    if (!g.llm || !g.http || !g.users) {
        fprintf(stderr, "pl-loadgen: %s\n",
                !g.llm    ? err
                : g.users ? "cannot initialise libcurl"
                          : "out of memory");
        goto out;
    }
    for (long long i = 0; i < g.nusers; i++) /* URL-safe: they go into query strings */
        snprintf(g.users[i].key, sizeof(g.users[i].key), "user-%lld", i + 1);
    int64_t start = pl_now_ms(), next = start, last_report = start;
    double per_tick = (double)g.rate * LOADGEN_TICK_MS / 1000.0, owed = 0;
    while (pl_running) {
        if (g.requests && g.sent >= g.requests)
            break;
        if (g.duration_s && pl_now_ms() - start >= g.duration_s * 1000)
            break;
        owed += per_tick;
        int n = (int)owed;
        if (n > 100)
            n = 100;
        if (g.requests && g.sent + n > g.requests)
            n = (int)(g.requests - g.sent);
        owed -= n;
        if (n > 0)
            loadgen_tick(&g, n);
        if (pl_now_ms() - last_report >= 5000) {
            char counts[512];
            loadgen_served_counts(&g, counts, sizeof(counts));
            pl_info("loadgen: %lld requests sent (%lld failed), prompt %s versions %s", g.sent,
                    g.failed, g.prompt, counts);
            last_report = pl_now_ms();
        }
        next += LOADGEN_TICK_MS;
        int64_t wait = next - pl_now_ms();
        if (wait > 0)
            pl_sleep_ms((int)wait);
    }
    char counts[512];
    loadgen_served_counts(&g, counts, sizeof(counts));
    printf("loadgen: %lld requests sent, %lld failed, %lld LLM errors, last prompt versions %s\n",
           g.sent, g.failed, g.llm_failed, counts);
    rc = g.failed ? 1 : 0;
out:
    if (g.http)
        curl_easy_cleanup(g.http);
    pl_llm_client_free(g.llm);
    for (long long i = 0; g.users && i < g.nusers; i++) {
        free(g.users[i].system);
        free(g.users[i].model);
    }
    free(g.users);
    return rc;
}
