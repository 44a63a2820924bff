/* Projects: the SQL for the projects table (and the production environment every project
 * gets at creation). */
#ifndef PL_PROJECT_STORE_H
#define PL_PROJECT_STORE_H

#include "pg.h"

#include <stdbool.h>

/** @brief {items,total,limit,offset} of the tenant's projects, newest first; NULL + err. */
char *pl_project_store_list(PGconn *conn, const char *tenant_id, long long limit, long long offset,
                            struct pl_pg_error *err);

/** @brief 1 + *json when found, 0 when not, -1 with err. */
int pl_project_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                         struct pl_pg_error *err);

/**
 * @brief Creates a project from a validated settings object (name required; optional
 *        prompt_autoship_enabled, auto_rollback_enabled, cluster_min_size) with its
 *        "production" environment and an audit entry, in one transaction.
 * @returns 1 + *json, 0 when the name is taken in the tenant, -1 with err.
 */
int pl_project_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                            const char *settings_json, char **json, struct pl_pg_error *err);

/**
 * @brief Applies a validated partial update (same fields as create, all optional) and
 *        audits it. @returns 1 + *json, 0 when not found, -2 when the new name is taken,
 *        -1 with err.
 */
int pl_project_store_update(PGconn *conn, const char *tenant_id, const char *id, const char *actor,
                            const char *patch_json, char **json, struct pl_pg_error *err);

#endif
