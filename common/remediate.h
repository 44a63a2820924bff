/* One remediation of a failing trace (architecture §7), shared by the controller, the
 * API's execute route and the approval of an escalation: load the stored trace, build the LLM call
 * the action asks for, and score the remediated output with the project's eval rules.
 *  - retry: the trace's own messages (its system message included) and model;
 *  - fallback_model: the same messages, the policy's model (action_params.model);
 *  - prompt_modification: the system message with action_params.append_system appended, or
 *    replaced by the system message of registry version action_params.version of the
 *    trace's prompt.
 * A trace whose input holds no messages is asked as one user message, as the A/B replay does. */
#ifndef PL_REMEDIATE_H
#define PL_REMEDIATE_H

#include "control.h"
#include "eval_rule_store.h"
#include "llm.h"
#include "pg.h"

#include <json-c/json.h>
#include <stdbool.h>

/** A stored trace as the control loop sees it. */
struct pl_remediation_trace {
    char tenant_id[37], project_id[37];
    char *trace_id;
    json_object *input;   /* as stored (never NULL: "" when the trace had none) */
    char *model;          /* NULL: the client's default */
    char *output;         /* NULL: none */
    long long latency_ms; /* -1: unknown */
    json_object *eval;    /* the detector's {metric: {passed, feedback}}, or NULL */
    char *prompt_name;    /* NULL: the trace named no registry prompt */
};

/**
 * @brief Loads the tenant's trace. @returns 1 when found (free with
 *        pl_remediation_trace_free), 0 when not, -1 with err.
 */
int pl_remediation_trace_load(PGconn *conn, const char *tenant_id, const char *project_id,
                              const char *trace_id, struct pl_remediation_trace *out,
                              struct pl_pg_error *err);

void pl_remediation_trace_free(struct pl_remediation_trace *t);

/** The LLM call of one remediation. */
struct pl_remediation {
    struct pl_llm_call call; /* request filled by pl_remediation_prepare */
    struct pl_llm_message *messages;
    char *system; /* the system prompt sent (owned) */
    char *model;  /* the model asked for (owned; NULL: the client's default) */
};

/**
 * @brief Builds the call of action kind (a remediation) with action_params (may be NULL for
 *        retry) on trace t; reads the registry for a prompt_modification by version.
 * @returns 0 (free with pl_remediation_clear), 1 when it cannot be built (why says: no
 *          registry prompt, unknown version, missing parameter), -1 with err.
 */
int pl_remediation_prepare(PGconn *conn, const struct pl_remediation_trace *t,
                           enum pl_action_kind kind, json_object *action_params,
                           struct pl_remediation *out, char *why, size_t whysz,
                           struct pl_pg_error *err);

void pl_remediation_clear(struct pl_remediation *r);

/**
 * @brief The action's result after the call ran: {output, model, latency_ms, prompt_tokens,
 *        completion_tokens, passed, evaluations:[{eval_rule_id, rule_name, context
 *        "remediation", passed, score, feedback, original:{passed, score, feedback} | null}]}
 *        when the call succeeded (passed: every rule passed; with no rules, no error), else
 *        {error, attempts, passed:false}.
 * @param passed set to whether the remediated output passed.
 * @returns JSON text the caller frees (NULL: no memory).
 */
char *pl_remediation_result(const struct pl_remediation_trace *t, const struct pl_rule_set *rules,
                            const struct pl_remediation *r, bool *passed);

/** @brief The result of a step that could not run: {error: why, passed: false} (caller frees). */
char *pl_remediation_refused(const char *why);

/**
 * @brief Prepares, runs (one call on llm) and scores one remediation of t.
 * @param executed true when the LLM answered (the action is `executed`, passed or not); false
 *        when the call failed past its retries or could not be built (`failed`).
 * @returns the action's result JSON (caller frees), or NULL with err on a database error.
 */
char *pl_remediation_execute(PGconn *conn, struct pl_llm_client *llm,
                             const struct pl_remediation_trace *t, const struct pl_rule_set *rules,
                             enum pl_action_kind kind, json_object *action_params, bool *executed,
                             bool *passed, struct pl_pg_error *err);

/** @brief The token estimate the diff compares both outputs with: ceil(bytes / 4). */
long long pl_remediation_tokens(const char *text);

#endif
