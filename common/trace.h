/* The ingest contract: validation of one TruLayer-style TraceRequest (plus promptloop's
 * project_id, prompt {name, version} and eval_scores), and the pl.traces envelope. */
#ifndef PL_TRACE_H
#define PL_TRACE_H

#include "json_scan.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define PL_TRACE_ID_MAX      128
#define PL_TRACE_TAGS_MAX    20
#define PL_TRACE_TAG_KEY_MAX 64
#define PL_TRACE_SPANS_MAX   1000
#define PL_TRACE_EVENTS_MAX  1000
#define PL_TRACE_SCORES_MAX  50

/** The members of a trace, in the order of the validation table. */
enum pl_trace_field {
    PL_TF_ID,
    PL_TF_EXTERNAL_ID,
    PL_TF_PROJECT_ID,
    PL_TF_NAME,
    PL_TF_INPUT,
    PL_TF_OUTPUT,
    PL_TF_MODEL,
    PL_TF_LATENCY_MS,
    PL_TF_COST,
    PL_TF_ERROR,
    PL_TF_TAGS,
    PL_TF_METADATA,
    PL_TF_SPANS,
    PL_TF_EVENTS,
    PL_TF_PROMPT,
    PL_TF_EVAL_SCORES,
    PL_TF_CREATED_AT,
    PL_TF_COUNT
};

/** A checked trace: slices of its JSON text (valid while that text is). */
struct pl_trace_view {
    const char *text; /* the trace object */
    size_t text_len;
    struct pl_json_value f[PL_TF_COUNT]; /* PL_JSON_ABSENT when missing */
    struct pl_json_value prompt_name, prompt_version;
    char id[PL_TRACE_ID_MAX + 1]; /* decoded, or generated when missing */
    bool id_generated;
    char project_id[37]; /* lower case */
    size_t span_errors;  /* spans with a non-empty error */
    struct pl_json_str first_span_error;
};

/**
 * @brief Checks the trace object at the scanner's cursor field by field (and its JSON
 *        syntax), leaving the cursor after it. Names the first bad field in err, prefixed by
 *        `where` (e.g. "traces[3]"; "" for none). A missing id is generated (id_generated).
 * @returns 0, or the HTTP status to answer: 400 (bad JSON, missing/unknown/repeated field,
 *          wrong type) or 422 (well-typed but out of range).
 */
int pl_trace_scan(struct pl_json_scan *s, const char *where, struct pl_trace_view *t, char *err,
                  size_t errsz);

/**
 * @brief The pl.traces message for a checked trace: {schema_version, tenant_id, project_id,
 *        received_at, trace}, the trace being the client's text (plus a generated id).
 * @returns the JSON text (caller frees; its length in *len), NULL when out of memory.
 */
char *pl_trace_envelope(const char *tenant_id, const char *received_at,
                        const struct pl_trace_view *t, size_t *len);

/** A reusable text buffer. */
struct pl_text_buf {
    char *p;
    size_t cap;
};

/** @brief A scanned value as text: a string decoded, another value as its JSON text; NULL
 *         for null or absent (or no memory). Valid until b is used again. */
const char *pl_json_value_text(const struct pl_json_value *v, struct pl_text_buf *b);

/** @brief The trace output as evaluators see it: the string, or a JSON value's text (owned
 *         by trace), or NULL. */
const char *pl_trace_output(json_object *trace);

/** @brief The trace's own error, else its first span error (NULL when none); counts the
 *         spans with an error in *span_errors. The text is owned by trace. */
const char *pl_trace_error(json_object *trace, int *span_errors);

/**
 * @brief True for YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with every field in its calendar range: what
 *        the SQL cast to timestamptz takes (a value it refuses would fail a batch on every
 *        retry), in fixed widths (stores order these texts). The envelope's received_at.
 */
bool pl_trace_timestamp_ok(const char *s);

#endif
