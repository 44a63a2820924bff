/* The control loop's decisions on a failing trace, as pure functions (see control.h). */
#include "control.h"

#include <stdint.h>
#include <string.h>

static const char *const action_kind_names[PL_ACTION_NKINDS] = {
    "retry", "fallback_model", "prompt_modification", "escalate", "block",
};

const char *pl_action_kind_name(enum pl_action_kind k)
{
    return k >= 0 && k < PL_ACTION_NKINDS ? action_kind_names[k] : NULL;
}

int pl_action_kind_parse(const char *name, enum pl_action_kind *out)
{
    for (int k = 0; name && k < PL_ACTION_NKINDS; k++)
        if (strcmp(name, action_kind_names[k]) == 0) {
            *out = (enum pl_action_kind)k;
            return 0;
        }
    return -1;
}

bool pl_action_is_remediation(enum pl_action_kind k)
{
    return k == PL_ACTION_RETRY || k == PL_ACTION_FALLBACK_MODEL ||
           k == PL_ACTION_PROMPT_MODIFICATION;
}

void pl_control_gate(enum pl_action_kind intended, int remediations, int retries,
                     int max_retry_depth, int max_cascade_depth, struct pl_gate_decision *out)
{
    *out = (struct pl_gate_decision){.kind = intended,
                                     .require_approval = intended == PL_ACTION_ESCALATE};
    if (!pl_action_is_remediation(intended))
        return;
    /* the wider budget first: every remediation on the trace, whichever policy took it */
    if (remediations >= max_cascade_depth)
        out->escalation_reason = PL_ESCALATION_CASCADE;
    else if (intended == PL_ACTION_RETRY && retries >= max_retry_depth)
        out->escalation_reason = PL_ESCALATION_RETRY;
    else
        return;
    out->kind = PL_ACTION_ESCALATE;
    out->retry_count = retries;
    out->require_approval = true;
}

bool pl_control_plan(const struct pl_control_policy *policies, size_t npolicies,
                     const struct pl_control_step *history, size_t nhistory,
                     struct pl_control_next *next)
{
    size_t at = 0; /* the policy that acts next */
    if (nhistory > 0) {
        const struct pl_control_step *last = &history[nhistory - 1];
        if (last->passed || !pl_action_is_remediation(last->kind) || last->policy >= npolicies)
            return false; /* fixed, escalated or blocked: the loop is over */
        at = last->policy + 1;
    }
    /* past the last policy the first retry policy runs again; its gates end the loop */
    for (size_t i = 0; at >= npolicies && i < npolicies; i++)
        if (policies[i].action == PL_ACTION_RETRY)
            at = i;
    if (at >= npolicies)
        return false;
    int remediations = 0, retries = 0;
    for (size_t i = 0; i < nhistory; i++) {
        remediations += pl_action_is_remediation(history[i].kind);
        retries += history[i].policy == at && history[i].kind == PL_ACTION_RETRY;
    }
    const struct pl_control_policy *p = &policies[at];
    next->policy = at;
    pl_control_gate(p->action, remediations, retries, p->max_retry_depth, p->max_cascade_depth,
                    &next->gate);
    return true;
}

int pl_control_loop_depth(const struct pl_control_step *history, size_t nhistory)
{
    int depth = 0;
    for (size_t i = 0; i < nhistory; i++)
        depth += history[i].kind == PL_ACTION_RETRY;
    return depth;
}

bool pl_control_in_rollout(const char *trace_id, int rollout_pct)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a: stable across builds and platforms */
    for (const unsigned char *p = (const unsigned char *)trace_id; p && *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return (int)(h % 100) < rollout_pct;
}
