/* Control-loop actions (architecture §7): the one table of legal status moves of an action and the
 * one guarded function every change goes through, like deployments (deploy.h): compare-and-set on
 * the status, the outbox event (pl.actions) and the audit entry in one transaction. A lost race
 * is PL_TRANSITION_CONFLICT with the status the action has now. */
#ifndef PL_ACTION_H
#define PL_ACTION_H

#include "deploy.h"
#include "pg.h"

#include <stdbool.h>

enum pl_action_status {
    PL_ACTION_STATUS_NEW = 0, /* no row yet: the "from" of a creation */
    PL_ACTION_PENDING,        /* recorded, not run (the kill switch was on) */
    PL_ACTION_PENDING_APPROVAL,
    PL_ACTION_EXECUTED,
    PL_ACTION_FAILED,
    PL_ACTION_DRY_RUN,
    PL_ACTION_NSTATUS
};

/** Who moves an action. */
enum pl_action_actor {
    PL_ACTION_BY_CONTROLLER, /* the controller stage, or the API's execute route */
    PL_ACTION_BY_OWNER,      /* approve / reject of an escalation */
    PL_ACTION_BY_TIMEOUT,    /* an escalation pending longer than hitl_timeout_s */
    PL_ACTION_NACTORS
};

/** @brief The status's API name ("pending_approval"), or NULL for NEW / out of range. */
const char *pl_action_status_name(enum pl_action_status s);

/** @brief Parses an API status name. @returns 0, or -1 when unknown. */
int pl_action_status_parse(const char *name, enum pl_action_status *out);

/** @brief Recorded actor name ("controller", "owner", "system:hitl_timeout"). */
const char *pl_action_actor_name(enum pl_action_actor a);

/** @brief True when the table allows actor to move an action from `from` to `to`. */
bool pl_action_allowed(enum pl_action_status from, enum pl_action_status to,
                       enum pl_action_actor actor);

/** A new action. Strings are borrowed; NULL leaves a column at its default (or NULL). */
struct pl_action_new {
    const char *tenant_id, *project_id, *trace_id;
    const char *policy_id, *rule_id; /* NULL: taken through the API / no rule */
    int attempt;       /* the step on the trace, from 1; 0 for a dry run (not a step) */
    bool attempt_next; /* attempt: the trace's highest plus one (actions taken through the API) */
    const char *action_type; /* pl_action_kind_name() */
    enum pl_action_status status;
    const char *payload_json, *result_json;
    const char *escalation_reason;
    int retry_count;
    bool require_approval;
    const char *actor_id; /* for the audit entry; NULL: the controller */
    const char *events_topic;
};

/**
 * @brief Creates an action with its event and audit entry in one transaction. An action that
 *        already exists for (trace, policy, attempt) — a replay or a redelivery — is not
 *        created again: PL_TRANSITION_CONFLICT with its id in id (nothing written).
 * @param row_json on OK or CONFLICT, the stored action as JSON (caller frees); may be NULL.
 */
enum pl_transition_result pl_action_create(PGconn *conn, const struct pl_action_new *a, char id[37],
                                           char **row_json, struct pl_pg_error *err);

/** A status change. */
struct pl_action_change {
    const char *tenant_id, *action_id;
    enum pl_action_status to;
    enum pl_action_actor actor;
    const char *actor_id;    /* who, for audit ("key:<uuid>"); NULL: the actor's name */
    const char *result_json; /* NULL keeps it */
    const char *reason;      /* recorded in the audit entry (reject, timeout) */
    const char *events_topic;
    /* When set: also, in the same transaction, a failure event on this topic for the
     * action's trace, so the controller goes on with the trace's loop (a kept step run). */
    const char *requeue_topic;
};

/**
 * @brief The guarded transition of an action.
 * @param row_json on OK, the updated action as JSON (caller frees); may be NULL.
 * @param current  on CONFLICT, the status the row has now (at least 24 bytes).
 */
enum pl_transition_result pl_action_transition(PGconn *conn, const struct pl_action_change *ch,
                                               char **row_json, char *current,
                                               struct pl_pg_error *err);

/** What a claim is taken on: one action, or one trace of a project. */
enum pl_action_claim_kind { PL_CLAIM_ACTION, PL_CLAIM_TRACE };

/**
 * @brief Claims an action (or a trace) for a decision that calls the LLM before its guarded
 *        transition (approve; execute on a trace), so that two decisions never both run the
 *        executor: a session advisory lock on conn, held until pl_action_unclaim (or until the
 *        connection closes). Reject and the HITL timeout claim too, so they cannot win while an
 *        approval's executor runs.
 * @param key the action id, or "<project_id>/<trace_id>".
 * @returns 1 claimed, 0 someone else holds it, -1 with err.
 */
int pl_action_claim(PGconn *conn, enum pl_action_claim_kind kind, const char *key,
                    struct pl_pg_error *err);

/** @brief Releases a claim taken by pl_action_claim on the same connection. */
void pl_action_unclaim(PGconn *conn, enum pl_action_claim_kind kind, const char *key);

#endif
