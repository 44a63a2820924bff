/* The LLM client: OpenAI-compatible chat completions with retries and budgets. */
#include "llm.h"

#include "log.h"
#include "metrics.h"
#include "params.h"
#include "service.h"
#include "util.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct pl_llm_client {
    struct pl_config cfg;
    char url[600];
    CURLM *multi;
    struct curl_slist *headers; /* holds the Authorization header: never printed */
    pthread_mutex_t lock;
    uint64_t jitter; /* PRNG state for backoff jitter */
};

enum llm_slot_state { LLM_WAITING, LLM_RUNNING, LLM_DONE };

/* One call's transfer state across its attempts. */
struct llm_slot {
    struct pl_llm_call *call;
    enum llm_slot_state state;
    CURL *easy;
    char *body;
    char *reply;
    size_t reply_len, reply_cap;
    size_t max_reply;
    bool reply_too_big;
    long long retry_after_ms; /* from the last reply's Retry-After, -1 if none */
    int64_t deadline, next_at, started;
    char last_error[200];
};

static pthread_once_t llm_curl_once = PTHREAD_ONCE_INIT;
static void llm_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct pl_llm_client *pl_llm_client_new(const struct pl_config *cfg, char *err, size_t errsz)
{
    pthread_once(&llm_curl_once, llm_curl_init);
    struct pl_llm_client *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    size_t blen = strlen(cfg->llm_base_url);
    while (blen > 0 && cfg->llm_base_url[blen - 1] == '/')
        blen--;
    if (strncmp(cfg->llm_base_url, "http://", 7) != 0 &&
        strncmp(cfg->llm_base_url, "https://", 8) != 0) {
        snprintf(err, errsz, "llm.base_url must start with http:// or https://");
        free(c);
        return NULL;
    }
    snprintf(c->url, sizeof(c->url), "%.*s/chat/completions", (int)blen, cfg->llm_base_url);
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (cfg->llm_api_key[0]) {
        char auth[600];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cfg->llm_api_key);
        c->headers = curl_slist_append(c->headers, auth);
        memset(auth, 0, sizeof(auth));
    }
    c->multi = curl_multi_init();
    if (!c->headers || !c->multi) {
        snprintf(err, errsz, "cannot initialise libcurl");
        pl_llm_client_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->llm_max_concurrency);
    pthread_mutex_init(&c->lock, NULL);
    pl_random_bytes(&c->jitter, sizeof(c->jitter));
    c->jitter |= 1;
    return c;
}

void pl_llm_client_free(struct pl_llm_client *c)
{
    if (!c)
        return;
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->headers);
    pthread_mutex_destroy(&c->lock);
    memset(&c->cfg.llm_api_key, 0, sizeof(c->cfg.llm_api_key));
    free(c);
}

const char *pl_llm_client_model(const struct pl_llm_client *c)
{
    return c->cfg.llm_model;
}

void pl_llm_call_clear(struct pl_llm_call *call)
{
    free(call->content);
    call->content = NULL;
    call->ok = false;
    call->prompt_tokens = call->completion_tokens = 0;
    call->cost_usd = 0;
    call->attempts = 0;
    call->latency_ms = 0;
    call->error[0] = '\0';
}

static char *llm_request_body(const struct pl_llm_client *c, const struct pl_llm_call *call)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "model",
                           json_object_new_string(call->model ? call->model : c->cfg.llm_model));
    json_object *msgs = json_object_new_array();
    for (size_t i = 0; i < call->nmessages; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(call->messages[i].role));
        json_object_object_add(m, "content", json_object_new_string(call->messages[i].content));
        json_object_array_add(msgs, m);
    }
    json_object_object_add(o, "messages", msgs);
    if (call->temperature >= 0)
        json_object_object_add(o, "temperature", json_object_new_double(call->temperature));
    if (call->max_tokens > 0)
        json_object_object_add(o, "max_tokens", json_object_new_int(call->max_tokens));
    if (call->json_object) {
        json_object *rf = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("json_object"));
        json_object_object_add(o, "response_format", rf);
    }
    char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return body;
}

static size_t llm_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct llm_slot *s = arg;
    size_t n = size * nmemb;
    if (s->reply_len + n > s->max_reply) { /* refuse a huge reply instead of buffering it */
        s->reply_too_big = true;
        return 0;
    }
    if (s->reply_len + n + 1 > s->reply_cap) {
        size_t cap = s->reply_cap ? s->reply_cap : 4096;
        while (cap < s->reply_len + n + 1)
            cap *= 2;
        char *p = realloc(s->reply, cap);
        if (!p)
            return 0;
        s->reply = p;
        s->reply_cap = cap;
    }
    memcpy(s->reply + s->reply_len, data, n);
    s->reply_len += n;
    s->reply[s->reply_len] = '\0';
    return n;
}

/* Retry-After is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
static size_t llm_on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct llm_slot *s = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        char v[64];
        size_t len = n - (sizeof(name) - 1);
        if (len >= sizeof(v))
            len = sizeof(v) - 1;
        memcpy(v, data + sizeof(name) - 1, len);
        v[len] = '\0';
        char *p = v;
        while (*p == ' ' || *p == '\t')
            p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            *--end = '\0';
        long long secs;
        struct tm tm = {0};
        if (pl_parse_ll(p, &secs) == 0 && secs >= 0 && secs < 86400) {
            s->retry_after_ms = secs * 1000;
        } else if (strptime(p, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
            long long at = (long long)timegm(&tm) * 1000 - (long long)time(NULL) * 1000;
            s->retry_after_ms = at > 0 ? at : 0;
        }
    }
    return n;
}

static void llm_metric(const char *result)
{
    pl_metric_add(pl_metric_result_counter("pl_llm_requests_total", result,
                                           "LLM chat-completion attempts, by result"),
                  1);
}

void pl_llm_error_excerpt(const char *body, char *out, size_t outsz)
{
    out[0] = '\0';
    if (!body)
        return;
    json_object *o = json_tokener_parse(body);
    json_object *e, *m;
    const char *msg = NULL;
    if (o && json_object_object_get_ex(o, "error", &e)) {
        if (json_object_is_type(e, json_type_string))
            msg = json_object_get_string(e);
        else if (json_object_object_get_ex(e, "message", &m))
            msg = json_object_get_string(m);
    }
    size_t k = 0;
    for (const char *p = msg ? msg : ""; *p && k + 1 < outsz && k < 120; p++)
        out[k++] = (*p >= 32 && *p < 127) ? *p : ' ';
    out[k] = '\0';
    json_object_put(o);
}

int pl_llm_parse_reply(const char *body, size_t len, struct pl_llm_call *call, char *why,
                       size_t whysz)
{
    char err[160];
    json_object *o = pl_json_object_parse(body, len, false, "it", err, sizeof(err));
    if (!o) {
        snprintf(why, whysz, "malformed reply: %s", err);
        return -1;
    }
    int rc = -1;
    json_object *choices, *first, *msg, *content, *usage, *v;
    if (!json_object_object_get_ex(o, "choices", &choices) ||
        !json_object_is_type(choices, json_type_array) || json_object_array_length(choices) == 0) {
        snprintf(why, whysz, "malformed reply: no choices");
        goto out;
    }
    first = json_object_array_get_idx(choices, 0);
    if (!json_object_is_type(first, json_type_object) ||
        !json_object_object_get_ex(first, "message", &msg) ||
        !json_object_is_type(msg, json_type_object)) {
        snprintf(why, whysz, "malformed reply: choices[0].message is missing");
        goto out;
    }
    if (!json_object_object_get_ex(msg, "content", &content) ||
        !json_object_is_type(content, json_type_string)) {
        snprintf(why, whysz, "malformed reply: choices[0].message.content is not a string");
        goto out;
    }
    if (json_object_object_get_ex(o, "usage", &usage) && usage) {
        if (!json_object_is_type(usage, json_type_object)) {
            snprintf(why, whysz, "malformed reply: usage is not an object");
            goto out;
        }
        if (json_object_object_get_ex(usage, "prompt_tokens", &v) &&
            json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            call->prompt_tokens = (long)json_object_get_int64(v);
        if (json_object_object_get_ex(usage, "completion_tokens", &v) &&
            json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
            call->completion_tokens = (long)json_object_get_int64(v);
    }
    call->content = strdup(json_object_get_string(content));
    rc = call->content ? 0 : -1;
    if (rc)
        snprintf(why, whysz, "out of memory");
out:
    json_object_put(o);
    return rc;
}

static void llm_slot_fail(struct llm_slot *s, const char *why)
{
    s->state = LLM_DONE;
    s->call->ok = false;
    snprintf(s->call->error, sizeof(s->call->error), "%s", why);
}

static uint64_t llm_rand(struct pl_llm_client *c)
{
    c->jitter ^= c->jitter << 13;
    c->jitter ^= c->jitter >> 7;
    c->jitter ^= c->jitter << 17;
    return c->jitter;
}

/* After a failed attempt: schedule the next one, or give up when out of attempts or time. */
static void llm_slot_retry(struct pl_llm_client *c, struct llm_slot *s, int64_t now)
{
    char why[256];
    if (s->call->attempts >= c->cfg.llm_max_attempts) {
        snprintf(why, sizeof(why), "gave up after %d attempts: %.180s", s->call->attempts,
                 s->last_error);
        llm_slot_fail(s, why);
        return;
    }
    long long delay;
    if (s->retry_after_ms >= 0) {
        delay = s->retry_after_ms;
    } else {
        long long exp = c->cfg.llm_backoff_ms;
        for (int i = 1; i < s->call->attempts && exp < c->cfg.llm_backoff_max_ms; i++)
            exp *= 2;
        if (exp > c->cfg.llm_backoff_max_ms)
            exp = c->cfg.llm_backoff_max_ms;
        /* "equal jitter": half fixed, half random, so replicas do not retry in lockstep */
        delay = exp / 2 + (long long)(llm_rand(c) % (uint64_t)(exp / 2 + 1));
    }
    if (now + delay >= s->deadline) {
        snprintf(why, sizeof(why), "gave up after %d attempts: time budget of %d ms spent: %.150s",
                 s->call->attempts, c->cfg.llm_budget_ms, s->last_error);
        llm_slot_fail(s, why);
        return;
    }
    s->state = LLM_WAITING;
    s->next_at = now + delay;
    pl_metric_add(pl_metric_counter("pl_llm_retries_total", NULL, "LLM attempts retried"), 1);
}

static int llm_slot_start(struct pl_llm_client *c, struct llm_slot *s, int64_t now)
{
    long long left = s->deadline - now;
    long timeout = c->cfg.llm_timeout_ms < left ? c->cfg.llm_timeout_ms : (long)left;
    if (timeout <= 0) {
        snprintf(s->last_error, sizeof(s->last_error), "no time left");
        llm_slot_retry(c, s, now);
        return 0;
    }
    if (!s->easy)
        s->easy = curl_easy_init();
    else
        curl_easy_reset(s->easy);
    if (!s->easy) {
        llm_slot_fail(s, "cannot create a transfer");
        return 0;
    }
    s->reply_len = 0;
    s->reply_too_big = false;
    s->retry_after_ms = -1;
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, llm_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, llm_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.llm_connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cfg.llm_max_reply_bytes);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    s->call->attempts++;
    s->started = now;
    s->state = LLM_RUNNING;
    curl_multi_add_handle(c->multi, e);
    return 1;
}

/* A transfer ended: success, a reason to retry, or a permanent failure. */
static void llm_slot_done(struct pl_llm_client *c, struct llm_slot *s, CURLcode rc, int64_t now)
{
    struct pl_llm_call *call = s->call;
    long status = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    if (s->reply_len > (size_t)c->cfg.llm_max_reply_bytes || rc == CURLE_FILESIZE_EXCEEDED ||
        s->reply_too_big) {
        char why[160];
        snprintf(why, sizeof(why), "reply larger than llm.max_reply_bytes (%d)",
                 c->cfg.llm_max_reply_bytes);
        llm_metric("too_large");
        llm_slot_fail(s, why);
        return;
    }
    if (rc != CURLE_OK) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", curl_easy_strerror(rc));
        llm_metric(rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "transport_error");
        llm_slot_retry(c, s, now);
        return;
    }
    if (status == 429 || status == 408 || status >= 500) {
        char msg[128];
        pl_llm_error_excerpt(s->reply, msg, sizeof(msg));
        snprintf(s->last_error, sizeof(s->last_error), "HTTP %ld%s%s", status, msg[0] ? ": " : "",
                 msg);
        llm_metric(status == 429 ? "rate_limited" : "server_error");
        llm_slot_retry(c, s, now);
        return;
    }
    if (status < 200 || status > 299) {
        char msg[128], why[200];
        pl_llm_error_excerpt(s->reply, msg, sizeof(msg));
        snprintf(why, sizeof(why), "HTTP %ld%s%s", status, msg[0] ? ": " : "", msg);
        llm_metric("client_error");
        llm_slot_fail(s, why);
        return;
    }
    char why[200];
    if (pl_llm_parse_reply(s->reply ? s->reply : "", s->reply_len, call, why, sizeof(why)) != 0) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", why);
        llm_metric("malformed");
        llm_slot_retry(c, s, now);
        return;
    }
    call->ok = true;
    call->latency_ms = now - s->started;
    call->cost_usd =
        ((double)call->prompt_tokens * c->cfg.llm_price_prompt_microusd_per_mtok +
         (double)call->completion_tokens * c->cfg.llm_price_completion_microusd_per_mtok) /
        1e12;
    s->state = LLM_DONE;
    llm_metric("ok");
    pl_metric_add(pl_metric_counter("pl_llm_tokens_total", "kind=\"prompt\"",
                                    "LLM tokens reported in usage, by kind"),
                  call->prompt_tokens);
    pl_metric_add(pl_metric_counter("pl_llm_tokens_total", "kind=\"completion\"",
                                    "LLM tokens reported in usage, by kind"),
                  call->completion_tokens);
}

/* A new slot for call, or NULL with the call failed (no memory, no messages). */
static struct llm_slot *llm_slot_new(struct pl_llm_client *c, struct pl_llm_call *call, int64_t now)
{
    pl_llm_call_clear(call);
    struct llm_slot *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(call->error, sizeof(call->error), "out of memory");
        return NULL;
    }
    s->call = call;
    s->deadline = now + c->cfg.llm_budget_ms;
    s->next_at = now;
    s->max_reply = (size_t)c->cfg.llm_max_reply_bytes;
    s->body = call->nmessages > 0 ? llm_request_body(c, call) : NULL;
    if (!s->body)
        llm_slot_fail(s, call->nmessages ? "out of memory" : "no messages");
    return s;
}

static void llm_slot_free(struct llm_slot *s)
{
    if (s->easy)
        curl_easy_cleanup(s->easy);
    free(s->body);
    free(s->reply);
    free(s);
}

/* A stream in progress: the calls taken from the source and not yet handed back. */
struct llm_stream_run {
    struct pl_llm_client *c;
    const struct pl_llm_stream *src;
    struct llm_slot **slots;
    size_t nslots, cap, failed;
    bool source_dry; /* next() said there is nothing more for now */
    int active;      /* transfers in the multi handle */
};

/* Takes new calls while fewer than max_concurrency are held (running or in backoff), starts
 * every slot whose time has come while transfers are below the cap, and returns the earliest
 * time a waiting slot is due (at most 200 ms ahead). */
static int64_t llm_stream_fill(struct llm_stream_run *r)
{
    struct pl_llm_client *c = r->c;
    int64_t now = pl_now_ms();
    while (!r->source_dry && !pl_running) { /* shutting down: what is left fails at once */
        struct pl_llm_call *call = r->src->next(r->src->arg);
        if (!call) {
            r->source_dry = true;
            break;
        }
        pl_llm_call_clear(call);
        snprintf(call->error, sizeof(call->error), "shutting down");
        r->failed++;
        r->src->done(call, r->src->arg);
    }
    while (!r->source_dry && pl_running && r->nslots < (size_t)c->cfg.llm_max_concurrency) {
        struct pl_llm_call *call = r->src->next(r->src->arg);
        if (!call) {
            r->source_dry = true;
            break;
        }
        struct llm_slot *s = NULL;
        if (r->nslots == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 16;
            struct llm_slot **grown = realloc(r->slots, ncap * sizeof(*r->slots));
            if (grown) {
                r->slots = grown;
                r->cap = ncap;
            }
        }
        if (r->nslots < r->cap)
            s = llm_slot_new(c, call, now);
        else
            snprintf(call->error, sizeof(call->error), "out of memory");
        if (!s) {
            r->failed++;
            r->src->done(call, r->src->arg);
            continue;
        }
        r->slots[r->nslots++] = s;
    }
    int64_t wake = now + 200;
    for (size_t i = 0; i < r->nslots; i++) {
        struct llm_slot *s = r->slots[i];
        if (s->state != LLM_WAITING)
            continue;
        if (s->next_at <= now && r->active < c->cfg.llm_max_concurrency)
            r->active += llm_slot_start(c, s, now);
        else if (s->next_at > now && s->next_at < wake)
            wake = s->next_at;
    }
    return wake;
}

/* Hands back finished calls one by one; after each, new calls are taken and started at once,
 * so that a slow handler delays no other call's start by more than its own time. */
static void llm_stream_hand_back(struct llm_stream_run *r)
{
    for (size_t i = 0; i < r->nslots;) {
        struct llm_slot *s = r->slots[i];
        if (s->state != LLM_DONE) {
            i++;
            continue;
        }
        r->failed += !s->call->ok;
        struct pl_llm_call *call = s->call;
        llm_slot_free(s);
        r->slots[i] = r->slots[--r->nslots];
        r->src->done(call, r->src->arg);
        r->source_dry = false;
        llm_stream_fill(r);
        int running;
        curl_multi_perform(r->c->multi, &running); /* send the new requests now */
    }
}

size_t pl_llm_run_stream(struct pl_llm_client *c, const struct pl_llm_stream *src)
{
    pthread_mutex_lock(&c->lock);
    struct llm_stream_run r = {.c = c, .src = src};
    for (;;) {
        int64_t wake = llm_stream_fill(&r);
        if (r.nslots == 0)
            break;
        if (!pl_running) /* shutting down: fail what is left, callers retry later */
            for (size_t i = 0; i < r.nslots; i++)
                if (r.slots[i]->state != LLM_DONE) {
                    if (r.slots[i]->state == LLM_RUNNING) {
                        curl_multi_remove_handle(c->multi, r.slots[i]->easy);
                        r.active--;
                    }
                    llm_slot_fail(r.slots[i], "shutting down");
                }
        int running = 0;
        curl_multi_perform(c->multi, &running);
        int left;
        CURLMsg *m;
        while ((m = curl_multi_info_read(c->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct llm_slot *s = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &s);
            CURLcode rc = m->data.result;
            curl_multi_remove_handle(c->multi, m->easy_handle);
            r.active--;
            llm_slot_done(c, s, rc, pl_now_ms());
        }
        bool any_done = false;
        for (size_t i = 0; i < r.nslots && !any_done; i++)
            any_done = r.slots[i]->state == LLM_DONE;
        if (any_done) {
            llm_stream_hand_back(&r);
            continue;
        }
        long long wait = wake - pl_now_ms();
        curl_multi_poll(c->multi, NULL, 0, wait < 1 ? 1 : (int)wait, NULL);
    }
    free(r.slots);
    pthread_mutex_unlock(&c->lock);
    return r.failed;
}

/* pl_llm_run as a stream: the calls of an array, in order; nothing to do when one is done. */
struct llm_array {
    struct pl_llm_call *calls;
    size_t n, next;
};

static struct pl_llm_call *llm_array_next(void *arg)
{
    struct llm_array *a = arg;
    return a->next < a->n ? &a->calls[a->next++] : NULL;
}

static void llm_array_done(struct pl_llm_call *call, void *arg)
{
    (void)call;
    (void)arg;
}

size_t pl_llm_run(struct pl_llm_client *c, struct pl_llm_call *calls, size_t n)
{
    struct llm_array a = {calls, n, 0};
    struct pl_llm_stream src = {llm_array_next, llm_array_done, &a};
    return pl_llm_run_stream(c, &src);
}
