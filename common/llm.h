/* The LLM client: OpenAI-compatible chat completions (POST {base_url}/chat/completions) over
 * libcurl's multi interface, so an A/B replay runs many calls at once under one cap.
 * Retries 429, 5xx, timeouts, connection failures and malformed replies with exponential
 * backoff and jitter (honouring Retry-After), within a per-call time budget. Counts tokens
 * and cost from `usage`. The API key goes only into the Authorization header: never into a
 * log line, an error text or a metric. */
#ifndef PL_LLM_H
#define PL_LLM_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>

struct pl_llm_client;

struct pl_llm_message {
    const char *role; /* system|user|assistant|tool|developer */
    const char *content;
};

/** One chat completion: the caller fills the request part; pl_llm_run fills the rest. */
struct pl_llm_call {
    /* request */
    const char *model; /* NULL: the client's default model */
    const struct pl_llm_message *messages;
    size_t nmessages;
    double temperature; /* sent when >= 0 */
    int max_tokens;     /* sent when > 0 */
    bool json_object;   /* response_format {"type":"json_object"} */

    /* result */
    bool ok;
    char *content; /* the assistant's reply (malloc'd, freed by pl_llm_call_clear) */
    long prompt_tokens, completion_tokens;
    double cost_usd;
    int attempts;
    long long latency_ms; /* of the successful attempt */
    char error[256];      /* why it failed, when !ok */
};

/**
 * @brief A client for cfg's llm.* settings.
 * @returns the client (free with pl_llm_client_free), or NULL with err filled.
 */
struct pl_llm_client *pl_llm_client_new(const struct pl_config *cfg, char *err, size_t errsz);

void pl_llm_client_free(struct pl_llm_client *c);

/** @brief The model calls use when they name none. */
const char *pl_llm_client_model(const struct pl_llm_client *c);

/**
 * @brief Runs n calls concurrently, at most llm.max_concurrency in flight, and returns when
 *        every call succeeded or gave up (see each call's ok/error). One run at a time per
 *        client (a mutex serialises callers). Results of earlier runs are cleared first.
 * @returns the number of calls that failed.
 */
size_t pl_llm_run(struct pl_llm_client *c, struct pl_llm_call *calls, size_t n);

/** A source of calls for pl_llm_run_stream. */
struct pl_llm_stream {
    /** The next call to run (its request filled), or NULL when there is none for now. */
    struct pl_llm_call *(*next)(void *arg);
    /** A call succeeded or gave up (see ok/error); the handler may make new calls available
     *  to next(). It runs on the caller's thread while other calls are in flight. */
    void (*done)(struct pl_llm_call *call, void *arg);
    void *arg;
};

/**
 * @brief Runs calls as src hands them out, at most llm.max_concurrency held at once (running
 *        or waiting to retry), and returns when next() has nothing more and every call taken
 *        was handed back to done(). Results of a call's earlier run are cleared first. One run
 *        at a time per client.
 * @returns the number of calls that failed.
 */
size_t pl_llm_run_stream(struct pl_llm_client *c, const struct pl_llm_stream *src);

/** @brief Frees a call's result fields (the request part is the caller's). */
void pl_llm_call_clear(struct pl_llm_call *call);

/**
 * @brief Reads a chat-completions reply body (len bytes) strictly: choices[0].message.content
 *        into call->content (malloc'd) and usage's token counts into call.
 * @returns 0, or -1 with the reason in why ("malformed reply: ...").
 */
int pl_llm_parse_reply(const char *body, size_t len, struct pl_llm_call *call, char *why,
                       size_t whysz);

/** @brief A short printable excerpt (at most 120 bytes) of an error reply's message into out
 *         ("" when body, NUL-terminated, holds none). */
void pl_llm_error_excerpt(const char *body, char *out, size_t outsz);

#endif
