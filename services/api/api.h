/* The api service: shared request plumbing for its route modules. */
#ifndef PL_API_H
#define PL_API_H

#include "auth.h"
#include "http.h"
#include "pg.h"
#include "service.h"

#include <json-c/json.h>

#include <stdbool.h>

/**
 * @brief Authenticates the request and checks the role allowlist (and, for control-loop
 *        routes, the plan). On failure the response is set (401/402/403/503).
 * @returns true when the caller may go on.
 */
bool api_authorize(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                   bool control_loop, struct pl_principal *who);

/**
 * @brief Refuses query parameters outside allowed (NULL-terminated) with a 400 naming one;
 *        when project_id is not NULL, also reads an optional project_id and refuses a
 *        non-UUID one; a value of an allowed parameter that is not UTF-8 is a 400 too.
 *        @returns true when the query is acceptable.
 */
bool api_query_params(struct pl_http_request *req, struct pl_http_response *res,
                      const char *const *allowed, const char **project_id);

/**
 * @brief Reads the list parameters limit (1-200, default 50) and offset (>= 0, default 0);
 *        on a bad value sets a 400 naming it. @returns true when both are valid.
 */
bool api_page_params(struct pl_http_request *req, struct pl_http_response *res, long long *limit,
                     long long *offset);

/**
 * @brief api_authorize for a route on one object ({id} is req->params[0]): an id that is not a
 *        UUID can name no object, so it is a 404 "<what> not found" like a missing one.
 * @returns true when the caller may go on.
 */
bool api_authorize_id(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                      bool control_loop, const char *what, struct pl_principal *who);

/** A store's read of one object by id for a tenant: 1 + *json, 0 not found, -1 with err. */
typedef int (*api_store_get)(PGconn *conn, const char *tenant_id, const char *id, char **json,
                             struct pl_pg_error *err);

/**
 * @brief GET of one object: authorise roles (and plan), answer 404 for a non-UUID id or a
 *        missing (or other tenant's) object, else 200 with the stored JSON.
 */
void api_get_one(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                 bool control_loop, api_store_get get, const char *what);

/** The dashboard's session cookie. */
#define PL_UI_COOKIE "pl_session"

/** @brief The value of cookie name in the request's Cookie header, copied into out. */
bool api_cookie(const struct pl_http_request *req, const char *name, char *out, size_t outsz);

/** @brief Takes a pooled connection; on failure sets 503 and returns NULL. */
PGconn *api_db(struct pl_http_request *req, struct pl_http_response *res);
void api_db_release(struct pl_http_request *req, PGconn *conn);

/** @brief Sets 500 for an unexpected database error and logs it. */
void api_db_error(struct pl_http_response *res, const struct pl_pg_error *err);

/** @brief Sets res to the JSON text (taken over and freed) with status. */
void api_json_owned(struct pl_http_response *res, int status, char *json);

/**
 * @brief Answers a store's read: found < 0 the database error in err, 0 a 404 "<what> not
 *        found", else 200 with json (owned, freed after sending).
 */
void api_answer(struct pl_http_response *res, int found, char *json, const struct pl_pg_error *err,
                const char *what);

/**
 * @brief Claims an escalation for a decision (approve, reject): 1 claimed; 0 when another
 *        decision holds the claim — with the status it left in current when it ended within a
 *        second, or current empty when it still runs (an approval's executor); -1 with err.
 */
int api_claim_decision(PGconn *conn, const char *tenant_id, const char *id, char current[24],
                       struct pl_pg_error *err);

/** @brief The 409 of a decision ("approve", "reject") on an action that is `current`, not
 *         pending_approval: {error, status}. */
void api_decision_conflict(struct pl_http_response *res, const char *verb, const char *current);

/** @brief The 409 body when another decision on an escalation is in progress (approve's
 *         executor is running): {error, status: "pending_approval"} (caller owns it). */
json_object *api_decision_busy(void);

/** @brief Actor id for audit entries and events: "key:<uuid>", or "user:<name>" for a
 *         dashboard user signed in by a trusted auth proxy. */
void api_actor(const struct pl_principal *who, char *buf, size_t bufsz);

void api_deployments_list(struct pl_http_request *req, struct pl_http_response *res);
void api_deployments_get(struct pl_http_request *req, struct pl_http_response *res);
void api_deployments_series(struct pl_http_request *req, struct pl_http_response *res);
void api_alerts(struct pl_http_request *req, struct pl_http_response *res);
void api_audit_list(struct pl_http_request *req, struct pl_http_response *res);
void api_audit_verify(struct pl_http_request *req, struct pl_http_response *res);
void api_clusters_get(struct pl_http_request *req, struct pl_http_response *res);
void api_clusters_update(struct pl_http_request *req, struct pl_http_response *res);
void api_deployments_approve(struct pl_http_request *req, struct pl_http_response *res);
void api_deployments_reject(struct pl_http_request *req, struct pl_http_response *res);
void api_deployments_rollback(struct pl_http_request *req, struct pl_http_response *res);

void api_ingest_one(struct pl_http_request *req, struct pl_http_response *res);
void api_ingest_batch(struct pl_http_request *req, struct pl_http_response *res);

void api_eval_rules_list(struct pl_http_request *req, struct pl_http_response *res);
void api_eval_rules_get(struct pl_http_request *req, struct pl_http_response *res);
void api_eval_rules_create(struct pl_http_request *req, struct pl_http_response *res);
void api_eval_rules_update(struct pl_http_request *req, struct pl_http_response *res);
void api_eval_rules_delete(struct pl_http_request *req, struct pl_http_response *res);

void api_clusters_list(struct pl_http_request *req, struct pl_http_response *res);

void api_projects_list(struct pl_http_request *req, struct pl_http_response *res);
void api_projects_get(struct pl_http_request *req, struct pl_http_response *res);
void api_projects_create(struct pl_http_request *req, struct pl_http_response *res);
void api_projects_update(struct pl_http_request *req, struct pl_http_response *res);

/* policies.c: the control loop's policies (owner changes, team+ plans) */
void api_policies_list(struct pl_http_request *req, struct pl_http_response *res);
void api_policies_get(struct pl_http_request *req, struct pl_http_response *res);
void api_policies_create(struct pl_http_request *req, struct pl_http_response *res);
void api_policies_update(struct pl_http_request *req, struct pl_http_response *res);
void api_policies_delete(struct pl_http_request *req, struct pl_http_response *res);
/**
 * @brief Checks the parameters of an action type as a policy's action_params are checked
 *        (what names them in why: "action_params", "payload"). @returns the object to store
 *        (caller puts it), or NULL with why (a 422).
 */
json_object *api_action_params_check(const char *action_type, json_object *params, const char *what,
                                     char *why, size_t whysz);

/* control.c: the tenant's kill switch (any role reads; owners enable and disable) */
void api_killswitch_get(struct pl_http_request *req, struct pl_http_response *res);
void api_killswitch_enable(struct pl_http_request *req, struct pl_http_response *res);
void api_killswitch_disable(struct pl_http_request *req, struct pl_http_response *res);

/* actions.c: the control loop's actions and HITL queue (any role reads; owners reject), and
 * a trace with its evaluations and remediation history (any role, every plan) */
void api_actions_list(struct pl_http_request *req, struct pl_http_response *res);
void api_actions_pending(struct pl_http_request *req, struct pl_http_response *res);
void api_actions_get(struct pl_http_request *req, struct pl_http_response *res);
void api_actions_reject(struct pl_http_request *req, struct pl_http_response *res);
void api_traces_get(struct pl_http_request *req, struct pl_http_response *res);
/* remediation.c: actions that run the executor (owners): execute on a trace, approve an
 * escalation; and the diff of a remediated output against the original (any role) */
void api_control_execute(struct pl_http_request *req, struct pl_http_response *res);
void api_actions_approve(struct pl_http_request *req, struct pl_http_response *res);
void api_actions_diff(struct pl_http_request *req, struct pl_http_response *res);

/* ui.c: the dashboard's embedded files at /ui/, with its security headers */
void api_ui_asset(struct pl_http_request *req, struct pl_http_response *res);
void api_ui_redirect(struct pl_http_request *req, struct pl_http_response *res);
/* POST /ui/session {api_key} signs in (cookie + CSRF token), GET reads it, DELETE signs out */
void api_ui_sign_in(struct pl_http_request *req, struct pl_http_response *res);
void api_ui_session(struct pl_http_request *req, struct pl_http_response *res);
void api_ui_sign_out(struct pl_http_request *req, struct pl_http_response *res);
/* POST /ui/links: a one-time sign-in link for the caller's key; GET /ui/signin/{token} redeems */
void api_ui_link_create(struct pl_http_request *req, struct pl_http_response *res);
void api_ui_link_redeem(struct pl_http_request *req, struct pl_http_response *res);
/* registry.c: prompts, versions, environments (architecture §8, registry) */
void api_prompts_create(struct pl_http_request *req, struct pl_http_response *res);
void api_prompts_list(struct pl_http_request *req, struct pl_http_response *res);
void api_prompts_get(struct pl_http_request *req, struct pl_http_response *res);
void api_prompt_versions_create(struct pl_http_request *req, struct pl_http_response *res);
void api_environments_list(struct pl_http_request *req, struct pl_http_response *res);
void api_environment_deploy(struct pl_http_request *req, struct pl_http_response *res);
void api_environment_history(struct pl_http_request *req, struct pl_http_response *res);
/* registry_compat.c: the Adaline and TrueFoundry read surfaces */
void api_adaline_deployment(struct pl_http_request *req, struct pl_http_response *res);
void api_truefoundry_versions(struct pl_http_request *req, struct pl_http_response *res);
void api_truefoundry_tags(struct pl_http_request *req, struct pl_http_response *res);

#endif
