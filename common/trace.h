/* The ingest contract: validation of one TruLayer-style TraceRequest (plus promptloop's
 * project_id, prompt {name, version} and eval_scores), and the pl.traces envelope. */
#ifndef PL_TRACE_H
#define PL_TRACE_H

#include <json-c/json.h>
#include <stddef.h>

#define PL_TRACE_ID_MAX      128
#define PL_TRACE_TAGS_MAX    20
#define PL_TRACE_TAG_KEY_MAX 64
#define PL_TRACE_SPANS_MAX   1000
#define PL_TRACE_EVENTS_MAX  1000
#define PL_TRACE_SCORES_MAX  50

/**
 * @brief Checks a trace object field by field. Names the first bad field in err, prefixed
 *        by `where` (e.g. "traces[3]"; "" for none). A missing id is filled in with a new
 *        UUID (the object is modified).
 * @returns 0, or the HTTP status to answer: 400 (missing/unknown field or wrong type) or
 *          422 (well-typed but out of range).
 */
int pl_trace_validate(json_object *trace, const char *where, char *err, size_t errsz);

/**
 * @brief The pl.traces message for a validated trace: {schema_version, tenant_id,
 *        project_id, received_at, trace}. @returns the serialised JSON (caller frees).
 */
char *pl_trace_envelope(const char *tenant_id, const char *project_id, const char *received_at,
                        json_object *trace);

/** @brief The trace output as evaluators see it: the string, or a JSON value's text (owned
 *         by trace), or NULL. */
const char *pl_trace_output(json_object *trace);

/** @brief The trace's own error, else its first span error (NULL when none); counts the
 *         spans with an error in *span_errors. The text is owned by trace. */
const char *pl_trace_error(json_object *trace, int *span_errors);

#endif
