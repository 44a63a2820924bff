/* The control loop's decisions on a failing trace (architecture §7), as pure functions:
 * which policy acts next and with what, and the two safety gates that turn a remediation into an
 * escalation. The controller and the API's execute route call the same functions, so they
 * cannot disagree; the unit tests walk the seed's worked examples through them.
 *
 * Remediations are retry, fallback_model and prompt_modification. The gates, in this order:
 *  - cascade gate: the remediations already taken on the trace, across all policies, reach
 *    the acting policy's max_cascade_depth → escalate, cascade_depth_exhausted;
 *  - retry gate: this policy's retries on the trace reach its max_retry_depth → the retry
 *    becomes escalate, retry_threshold_exceeded (retry_count says how many there were).
 * An escalation waits for a human (pending_approval, require_approval) and ends the automatic
 * loop on that trace. control_loop_depth counts executed retries; escalations do not count. */
#ifndef PL_CONTROL_H
#define PL_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

enum pl_action_kind {
    PL_ACTION_RETRY,
    PL_ACTION_FALLBACK_MODEL,
    PL_ACTION_PROMPT_MODIFICATION,
    PL_ACTION_ESCALATE,
    PL_ACTION_BLOCK,
    PL_ACTION_NKINDS
};

/** @brief The API name ("fallback_model"), or NULL out of range. */
const char *pl_action_kind_name(enum pl_action_kind k);

/** @brief Parses an API name. @returns 0, or -1 when unknown. */
int pl_action_kind_parse(const char *name, enum pl_action_kind *out);

/** @brief True for retry, fallback_model and prompt_modification (what the gates count). */
bool pl_action_is_remediation(enum pl_action_kind k);

/** The escalation reasons the gates give (NULL: an escalate policy, or no escalation). */
#define PL_ESCALATION_CASCADE "cascade_depth_exhausted"
#define PL_ESCALATION_RETRY   "retry_threshold_exceeded"

/** What the gates made of an intended action. */
struct pl_gate_decision {
    enum pl_action_kind kind;      /**< the intended kind, or PL_ACTION_ESCALATE */
    const char *escalation_reason; /**< PL_ESCALATION_* when a gate tripped, else NULL */
    int retry_count;               /**< the policy's retries so far (set on a retry gate trip) */
    bool require_approval;         /**< an escalation: a human decides */
};

/**
 * @brief Runs both gates, the cascade gate first, on an action `intended` by a policy with the
 *        given depths: `remediations` already taken on the trace (all policies), `retries` of
 *        this policy on the trace.
 */
void pl_control_gate(enum pl_action_kind intended, int remediations, int retries,
                     int max_retry_depth, int max_cascade_depth, struct pl_gate_decision *out);

/** A matching active policy, in priority order. */
struct pl_control_policy {
    enum pl_action_kind action;
    int max_retry_depth, max_cascade_depth;
};

/** A step already taken on the trace: by policies[policy], of the given kind. */
struct pl_control_step {
    size_t policy;
    enum pl_action_kind kind;
    bool passed; /**< a remediation whose output passed every rule: the loop is done */
};

/** The next step, when there is one. */
struct pl_control_next {
    size_t policy; /**< index into the policies */
    struct pl_gate_decision gate;
};

/**
 * @brief Plans the next step on a trace from its history: the first policy (in priority
 *        order) acts first, and after a failed remediation the next one; past the last
 *        policy the first retry policy runs again, until its gates escalate. The loop is over
 *        after a passing remediation, an escalation, a block, or when no policy is left (no
 *        retry policy to run again).
 * @returns true with *next filled, or false when nothing more happens on the trace.
 */
bool pl_control_plan(const struct pl_control_policy *policies, size_t npolicies,
                     const struct pl_control_step *history, size_t nhistory,
                     struct pl_control_next *next);

/** @brief Executed retries in the history: the trace's control_loop_depth. */
int pl_control_loop_depth(const struct pl_control_step *history, size_t nhistory);

/**
 * @brief Whether a policy with rollout_pct applies to a trace: a stable hash of the trace id
 *        (FNV-1a, 64-bit) mod 100 below rollout_pct. 0 fires never, 100 always.
 */
bool pl_control_in_rollout(const char *trace_id, int rollout_pct);

#endif
