/* SQL for policies (architecture §7): what the control loop does when a trace of a project fails.
 * Callers validate policies (services/api/policies.c) before writing them; this module only
 * checks what needs the database: the project is the tenant's, the rule is the project's. */
#ifndef PL_POLICY_STORE_H
#define PL_POLICY_STORE_H

#include "pg.h"

/** Outcome of a policy write. */
enum pl_policy_result {
    PL_POLICY_OK = 1,
    PL_POLICY_NOT_FOUND = 0, /* the policy (or, on create, the project) is not the tenant's */
    PL_POLICY_ERROR = -1,    /* err filled */
    PL_POLICY_BAD_RULE = -2, /* rule_id is not an eval rule of the policy's project */
    PL_POLICY_ARCHIVED = -3, /* an archived policy cannot change */
    PL_POLICY_STALE = -4     /* changed since it was read: read again and retry */
};

/**
 * @brief {items,total,limit,offset} of the tenant's policies, newest first (created_at, id);
 *        project_id and status filter when not NULL. @returns a string the caller frees, or
 *        NULL with err.
 */
char *pl_policy_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                           const char *status, long long limit, long long offset,
                           struct pl_pg_error *err);

/** @brief 1 + *json (pl_policy_json; caller frees) when found, 0 when not, -1 with err. */
int pl_policy_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err);

/**
 * @brief Creates a policy from a validated object (project_id, name, trigger_type and
 *        action_type present; omitted fields take the column defaults) created by actor,
 *        with its audit entry, in one transaction.
 * @returns OK + *json (caller frees), NOT_FOUND when the project is not the tenant's,
 *          BAD_RULE, or ERROR with err.
 */
enum pl_policy_result pl_policy_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                                             const char *policy_json, char **json,
                                             struct pl_pg_error *err);

/**
 * @brief Replaces every mutable field with those of policy_json (the stored policy with the
 *        change merged in, validated as a whole), bumps updated_at and audits patch_json, in
 *        one transaction — only while the row is not archived and its updated_at is still
 *        expected_updated_at (as pl_policy_json writes it), so that a change validated
 *        against an older row is never written over a newer one.
 * @returns OK + *json (caller frees), NOT_FOUND, ARCHIVED, STALE, BAD_RULE, or ERROR.
 */
enum pl_policy_result pl_policy_store_update(PGconn *conn, const char *tenant_id, const char *id,
                                             const char *actor, const char *policy_json,
                                             const char *patch_json,
                                             const char *expected_updated_at, char **json,
                                             struct pl_pg_error *err);

/**
 * @brief Archives the policy (nothing is deleted) with its audit entry. Archiving an archived
 *        policy changes nothing and writes no entry.
 * @returns OK (also when it was archived already), NOT_FOUND, or ERROR with err.
 */
enum pl_policy_result pl_policy_store_archive(PGconn *conn, const char *tenant_id, const char *id,
                                              const char *actor, struct pl_pg_error *err);

#endif
