/* libFuzzer target: what the LLM sends back: a chat-completions reply (llm.c), the excerpt of
 * an error reply, and the differ's proposal inside the reply's content (services/differ). */
#include "fuzz.h"

#include "llm.h"
#include "propose.h"

#include <ctype.h>
#include <json-c/json.h>

#define CURRENT    "You are a support assistant. Answer in one short paragraph."
#define MAX_PROMPT 2048

/* The reply's content read by json-c alone, NULL when it has none. The caller puts *root. */
static const char *lenient_content(const char *body, size_t len, json_object **root)
{
    json_tokener *tok = json_tokener_new();
    *root = json_tokener_parse_ex(tok, body, (int)len);
    json_tokener_free(tok);
    json_object *choices, *msg, *content;
    if (!*root || !json_object_object_get_ex(*root, "choices", &choices) ||
        !json_object_is_type(choices, json_type_array) ||
        !json_object_object_get_ex(json_object_array_get_idx(choices, 0), "message", &msg) ||
        !json_object_object_get_ex(msg, "content", &content) ||
        !json_object_is_type(content, json_type_string))
        return NULL;
    return json_object_get_string(content);
}

static bool trimmed(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && !isspace((unsigned char)s[0]) && !isspace((unsigned char)s[n - 1]);
}

static void check_proposal(const char *reply)
{
    char *prompt = (char *)1, *rationale = (char *)1, why[256] = "";
    int rc =
        pl_differ_check_reply(reply, CURRENT, MAX_PROMPT, &prompt, &rationale, why, sizeof(why));
    if (rc != 0) {
        FUZZ_CHECK(!prompt && !rationale && why[0], "a refused proposal: %s", why);
        return;
    }
    FUZZ_CHECK(prompt && rationale, "an accepted proposal without its parts");
    FUZZ_CHECK(trimmed(prompt) && strlen(prompt) <= MAX_PROMPT && strcmp(prompt, CURRENT) != 0,
               "accepted prompt \"%s\"", prompt);
    FUZZ_CHECK(fuzz_utf8_valid(prompt, strlen(prompt)), "prompt is not UTF-8");
    /* The same proposal against itself as the current prompt is no change. */
    size_t n = strlen(prompt);
    char *padded = malloc(n + 3);
    snprintf(padded, n + 3, " %s\n", prompt);
    char *p2 = NULL, *r2 = NULL;
    FUZZ_CHECK(pl_differ_check_reply(reply, padded, MAX_PROMPT, &p2, &r2, why, sizeof(why)) != 0 &&
                   strstr(why, "identical"),
               "a proposal equal to the current prompt was taken: %s", why);
    /* A limit below its size refuses it. */
    FUZZ_CHECK(pl_differ_check_reply(reply, CURRENT, n - 1, &p2, &r2, why, sizeof(why)) != 0,
               "a %zu-byte prompt passed a limit of %zu", n, n - 1);
    free(padded);
    free(rationale);
    free(prompt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct pl_llm_call call = {0};
    char why[200] = "";
    int rc = pl_llm_parse_reply(body, size, &call, why, sizeof(why));
    json_object *root = NULL;
    const char *lenient = lenient_content(body, size, &root);
    if (rc == 0) {
        FUZZ_CHECK(call.content, "no content");
        FUZZ_CHECK(call.prompt_tokens >= 0 && call.completion_tokens >= 0, "negative tokens");
        FUZZ_CHECK(fuzz_utf8_valid(call.content, strlen(call.content)), "content is not UTF-8");
        /* The strict reading agrees with json-c's own where both read the text. */
        FUZZ_CHECK(lenient && strcmp(lenient, call.content) == 0, "strict and lenient contents "
                                                                  "differ");
        check_proposal(call.content);
    } else {
        FUZZ_CHECK(!call.content && call.prompt_tokens == 0 && call.completion_tokens == 0,
                   "a refused reply left results");
        FUZZ_CHECK(strncmp(why, "malformed reply: ", 17) == 0, "why: %s", why);
    }
    json_object_put(root);
    pl_llm_call_clear(&call);

    char *cstr = fuzz_cstr(data, size);
    char excerpt[128];
    pl_llm_error_excerpt(cstr, excerpt, sizeof(excerpt));
    FUZZ_CHECK(strlen(excerpt) <= 120, "excerpt of %zu bytes", strlen(excerpt));
    for (const char *p = excerpt; *p; p++)
        FUZZ_CHECK(*p >= 32 && *p < 127, "unprintable byte in the excerpt");
    check_proposal(cstr);
    free(cstr);
    return 0;
}
