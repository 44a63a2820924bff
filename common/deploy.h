/* The prompt-deployment lifecycle (architecture §5): the one table of legal moves and the one
 * guarded-transition function every state change goes through. */
#ifndef PL_DEPLOY_H
#define PL_DEPLOY_H

#include "pg.h"

#include <stdbool.h>
#include <stddef.h>

enum pl_deploy_status {
    PL_DEPLOY_NEW = 0, /* no row yet: the "from" of a creation */
    PL_DEPLOY_PROPOSED,
    PL_DEPLOY_AB_RUNNING,
    PL_DEPLOY_AB_PASSED,
    PL_DEPLOY_AB_FAILED,
    PL_DEPLOY_SHIPPED,
    PL_DEPLOY_MONITORING,
    PL_DEPLOY_REGRESSED,
    PL_DEPLOY_ROLLED_BACK,
    PL_DEPLOY_REJECTED,
    PL_DEPLOY_NSTATUS
};

/** Who asks for a move; the table allows each move only to its actors. */
enum pl_deploy_actor {
    PL_ACTOR_DIFFER,
    PL_ACTOR_ABHARNESS,
    PL_ACTOR_AUTOSHIP, /* abharness with prompt_autoship_enabled */
    PL_ACTOR_OWNER,    /* api: approve, reject, rollback by an owner key */
    PL_ACTOR_MONITOR,
    PL_ACTOR_AUTO_ROLLBACK,  /* monitor with auto_rollback_enabled */
    PL_ACTOR_CANARY_PROMOTE, /* monitor: a canary found not worse goes to 100 % */
    PL_ACTOR_NACTORS
};

/** @brief The status's API name ("ab_running"), or NULL for NEW/out of range. */
const char *pl_deploy_status_name(enum pl_deploy_status s);

/** @brief Parses an API status name; -1 when unknown. */
int pl_deploy_status_parse(const char *name, enum pl_deploy_status *out);

/** @brief Actor name as recorded in events and audit ("owner", "system:autoship", ...). */
const char *pl_deploy_actor_name(enum pl_deploy_actor a);

/** @brief True when the status has no way out (ab_failed, rejected, rolled_back). */
bool pl_deploy_terminal(enum pl_deploy_status s);

/** @brief True when the table allows actor to move a deployment from `from` to `to`. */
bool pl_deploy_allowed(enum pl_deploy_status from, enum pl_deploy_status to,
                       enum pl_deploy_actor actor);

/**
 * @brief Writes the Postgres array literal of every status actor may move to `to` from
 *        (e.g. "{proposed,ab_passed}"); "{}" when none. @returns the number of statuses.
 */
int pl_deploy_allowed_from(enum pl_deploy_status to, enum pl_deploy_actor actor, char *buf,
                           size_t bufsz);

/**
 * Extra work done in the transition's transaction (e.g. registry writes on ship). Returns 0
 * to go on, -1 on a database error, or 1 to refuse the move (a precondition does not hold:
 * the transition answers PL_TRANSITION_CONFLICT with the hook's explanation in err).
 */
typedef int (*pl_deploy_hook)(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              void *arg, struct pl_pg_error *err);

struct pl_deploy_change {
    const char *tenant_id;
    const char *deployment_id;
    enum pl_deploy_status to;
    enum pl_deploy_actor actor;
    const char *actor_id;         /* who, for audit: "key:<uuid>", "system:autoship", ... */
    const char *approved_by;      /* set approved_by (ship/rollback); NULL keeps it */
    const char *rejection_reason; /* NULL keeps it */
    const char *ab_report_json;   /* NULL keeps it */
    const char *rollout_pct;      /* decimal; NULL keeps it (ship and rollback set their own) */
    const char *events_topic;     /* where the change is announced (pl.deployments) */
    pl_deploy_hook hook;          /* optional, run after the update in the same transaction */
    void *hook_arg;
};

enum pl_transition_result {
    PL_TRANSITION_OK,
    PL_TRANSITION_CONFLICT,  /* illegal from the current status, or lost a race */
    PL_TRANSITION_NOT_FOUND, /* no such deployment for this tenant */
    PL_TRANSITION_ERROR      /* database error (err filled) */
};

/**
 * @brief The guarded transition: compare-and-set on the status, the outbox event and the
 *        audit entry (and the hook's work), all in one transaction.
 *        rollout_pct: the move to `shipped` sets the project's ship_canary_pct (100 when it is
 *        0 or the deployment has no registry prompt), `rolled_back` sets 0, any other move
 *        sets ch->rollout_pct when given. A move to the status the row already has (the
 *        canary promotion, monitoring → monitoring) must raise rollout_pct: the compare-and-set
 *        is then on the status and on rollout_pct < ch->rollout_pct, so a replayed promotion
 *        is a CONFLICT.
 * @param row_json   on OK, the updated deployment as JSON (caller frees); may be NULL.
 * @param current    on CONFLICT, the status the row has now (at least 16 bytes); when the
 *                   hook refused the move, err->message says why (else it is empty).
 */
enum pl_transition_result pl_deploy_transition(PGconn *conn, const struct pl_deploy_change *ch,
                                               char **row_json, char *current,
                                               struct pl_pg_error *err);

/** A new deployment (architecture §5: "(new) → proposed", by the differ). */
struct pl_deploy_proposal {
    const char *tenant_id, *project_id;
    const char *cluster_signature, *cluster_id;
    const char *prompt_id, *base_version_id; /* the prompt and its live version */
    const char *current_prompt, *proposed_prompt, *rationale;
    const char *source_event_id; /* the pl.clusters event's id (decimal) */
    const char *shown_trace_ids; /* Postgres text[] literal of the traces shown to the LLM */
    const char *events_topic;
};

/**
 * @brief Creates a `proposed` deployment with its event and audit entry in one transaction.
 * @returns PL_TRANSITION_OK with id filled; PL_TRANSITION_CONFLICT when the project already
 *          has an open deployment for the signature, or one came from the same event;
 *          PL_TRANSITION_ERROR with err.
 */
enum pl_transition_result pl_deploy_create(PGconn *conn, const struct pl_deploy_proposal *p,
                                           char id[37], struct pl_pg_error *err);

#endif
