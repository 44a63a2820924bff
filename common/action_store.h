/* SQL that reads control-loop actions for the API: the tenant's actions and the HITL queue
 * paged by an opaque keyset cursor, one action, and a trace with its evaluations and its
 * remediation history. Every status change goes through action.h, never through here. */
#ifndef PL_ACTION_STORE_H
#define PL_ACTION_STORE_H

#include "pg.h"

#include <stdbool.h>

/* The two lists page in opposite orders, so a cursor names the list it came from. */
enum pl_action_list_kind {
    PL_ACTION_LIST_NEWEST, /* every action, newest first (created_at DESC, id DESC) */
    PL_ACTION_LIST_QUEUE   /* pending_approval only, oldest first (created_at, id) */
};

/** The position after the last row of a page: that row's creation (µs since the epoch) and id. */
struct pl_action_cursor {
    long long created_us;
    char id[37];
};

/** Filters of a list; NULL: any. Strings are borrowed and already validated. */
struct pl_action_filter {
    const char *project_id, *status, *trace_id, *policy_id;
};

/** Largest encoded cursor, with its NUL. */
#define PL_ACTION_CURSOR_MAX 96

/**
 * @brief Writes the cursor of kind as base64url text (no padding) into out.
 */
void pl_action_cursor_encode(enum pl_action_list_kind kind, const struct pl_action_cursor *c,
                             char out[PL_ACTION_CURSOR_MAX]);

/**
 * @brief Reads a cursor that pl_action_cursor_encode wrote for kind.
 * @returns 0, or -1 when text is not such a cursor (malformed, or another list's).
 */
int pl_action_cursor_decode(enum pl_action_list_kind kind, const char *text,
                            struct pl_action_cursor *out);

/**
 * @brief {"items": [pl_action_json...], "next_cursor": "..." | null} of the tenant's actions
 *        in kind's order, after `after` (NULL: from the start), at most limit of them; the
 *        queue ignores filter->status. @returns a string the caller frees, or NULL with err.
 */
char *pl_action_store_list(PGconn *conn, const char *tenant_id, enum pl_action_list_kind kind,
                           const struct pl_action_filter *filter,
                           const struct pl_action_cursor *after, long long limit,
                           struct pl_pg_error *err);

/** @brief 1 + *json (pl_action_json; caller frees) when found, 0 when not, -1 with err. */
int pl_action_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err);

/**
 * @brief The stored trace of the tenant's project with `evaluations` — the detector's, from
 *        traces.eval (context "fresh"), then those of each remediation's output in step order
 *        (context "remediation", with source_action_id and the original evaluation), each
 *        {metric_name, eval_rule_id, passed, score, feedback, context, source_action_id,
 *        original} — `control_loop_depth` (executed retries on it) and
 *        `remediation_history` (its actions in attempt order).
 * @returns 1 + *json (caller frees) when found, 0 when not (or another tenant's), -1 with err.
 */
int pl_action_store_trace(PGconn *conn, const char *tenant_id, const char *project_id,
                          const char *trace_id, char **json, struct pl_pg_error *err);

#endif
