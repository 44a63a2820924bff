/* The prompt registry's writes and the live-prompt lookup (architecture §4, §5, §7): immutable
 * versions, an append-only deployment history per environment whose newest row is live, and the
 * ship/promote/rollback work that runs inside a deployment's guarded transition. A live row
 * with rollout_pct < 100 is a canary: its version is served to that share of the routing
 * keys (pl_routed_version, 0007_live_regression_canary.sql), stable_version_id to the rest. */
#ifndef PL_REGISTRY_H
#define PL_REGISTRY_H

#include "pg.h"

#include <json-c/json.h>

/**
 * @brief The project's production environment id. @returns 1 found, 0 not, -1 with err.
 */
int pl_registry_production_env(PGconn *conn, const char *tenant_id, const char *project_id,
                               char env_id[37], struct pl_pg_error *err);

/**
 * @brief The live version of a prompt in an environment (its newest deployment row's
 *        version_id: while a canary runs, the canary's version).
 * @returns 1 with version_id filled, 0 when never deployed there, -1 with err.
 */
int pl_registry_live_version(PGconn *conn, const char *tenant_id, const char *environment_id,
                             const char *prompt_id, char version_id[37], struct pl_pg_error *err);

/** The newest deployment row of a prompt in an environment. */
struct pl_registry_live {
    char version_id[37];        /* the row's version: the canary's while one runs */
    char stable_version_id[37]; /* what the other keys get; "" when rollout_pct is 100 */
    int rollout_pct;            /* 1..100: the share of routing keys served version_id */
};

/**
 * @brief Reads the live row of a prompt in an environment.
 * @returns 1 with live filled, 0 when never deployed there, -1 with err.
 */
int pl_registry_live_row(PGconn *conn, const char *tenant_id, const char *environment_id,
                         const char *prompt_id, struct pl_registry_live *live,
                         struct pl_pg_error *err);

/** Longest routing key the registry reads accept (bytes). */
#define PL_REGISTRY_ROUTING_KEY_MAX 256

/**
 * @brief Checks a `routing_key` query parameter (an end user's stable id): 1 to
 *        PL_REGISTRY_ROUTING_KEY_MAX bytes of printable ASCII.
 * @returns 0, or -1 with why filled (naming the parameter).
 */
int pl_registry_routing_key_check(const char *key, char *why, size_t whysz);

/**
 * @brief Appends a version of prompt_id with the next number (the prompt row is locked so
 *        concurrent writers get consecutive numbers). Runs in the caller's transaction.
 * @returns 0 with version_id and *version filled, -1 with err.
 */
int pl_registry_add_version(PGconn *conn, const char *tenant_id, const char *prompt_id,
                            const char *manifest_json, const char *created_by, char version_id[37],
                            int *version, struct pl_pg_error *err);

/** @brief Appends a deployment row: version_id becomes live in the environment for every
 *         routing key (rollout_pct 100: manual deploys and restores never start a canary). */
int pl_registry_deploy(PGconn *conn, const char *tenant_id, const char *environment_id,
                       const char *prompt_id, const char *version_id, const char *created_by,
                       struct pl_pg_error *err);

/**
 * @brief Creates prompt `name` in the project with manifest as version 1, live in
 *        production, in one transaction. @returns 1 done, 0 when the name is taken, -1 err.
 */
int pl_registry_create_prompt(PGconn *conn, const char *tenant_id, const char *project_id,
                              const char *name, const char *manifest_json, const char *created_by,
                              char prompt_id[37], char version_id[37], struct pl_pg_error *err);

/** @brief The content of the manifest's first system message, or NULL (owned by manifest). */
const char *pl_registry_manifest_system(json_object *manifest);

/**
 * @brief A copy of manifest with its first system message's content replaced by system
 *        (one is put first when there is none). @returns the JSON text (caller frees).
 */
char *pl_registry_manifest_with_system(json_object *manifest, const char *system);

/**
 * @brief pl_deploy_hook for the move to `shipped`: a new version (the base version's
 *        manifest with the system message replaced by proposed_prompt) becomes live in
 *        production and is recorded as shipped_version_id. When the transition set the
 *        deployment's rollout_pct below 100 (the project's ship_canary_pct), the new row is a
 *        canary at that share whose stable version is the one every key got before (the live
 *        row's stable version while another canary runs; base_version_id when the prompt was
 *        never live). arg is the actor id (string) recorded as the version's creator.
 *        Deployments without a registry prompt (prompt_id NULL) ship nothing.
 */
int pl_registry_ship_hook(PGconn *conn, const char *tenant_id, const char *deployment_id, void *arg,
                          struct pl_pg_error *err);

/**
 * @brief pl_deploy_hook for the move to `rolled_back`: makes base_version_id live in
 *        production again — only while the deployment's shipped version is still the live
 *        one; otherwise returns 1 (refused) with what is live now in err. arg is the actor
 *        id recorded on the deployment row. Deployments without a registry prompt change
 *        nothing.
 */
int pl_registry_rollback_hook(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              void *arg, struct pl_pg_error *err);

/**
 * @brief pl_deploy_hook for the canary promotion (monitoring -> monitoring, actor
 *        PL_ACTOR_CANARY_PROMOTE): appends a row serving the shipped version to the
 *        deployment's new rollout_pct (set by the transition; 100 makes it live for every key)
 *        — only while the live row is still this deployment's canary (its version is
 *        shipped_version_id at a smaller share); otherwise returns 1 (refused) with the
 *        reason in err. arg is the actor id recorded on the row. Deployments without a
 *        registry prompt change nothing.
 */
int pl_registry_promote_hook(PGconn *conn, const char *tenant_id, const char *deployment_id,
                             void *arg, struct pl_pg_error *err);

#endif
