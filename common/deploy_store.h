/* Reads of prompt_deployments (writes go through deploy.c's guarded transition). */
#ifndef PL_DEPLOY_STORE_H
#define PL_DEPLOY_STORE_H

#include "pg.h"

/**
 * @brief The API list body {items,total,limit,offset}, newest first, for one tenant;
 *        status and project_id filter when not NULL.
 * @returns the JSON text (caller frees), or NULL with err filled.
 */
char *pl_deploy_store_list(PGconn *conn, const char *tenant_id, const char *status,
                           const char *project_id, long long limit, long long offset,
                           struct pl_pg_error *err);

/**
 * @brief One deployment of the tenant as JSON.
 * @returns 1 and *json (caller frees) when found, 0 when not, -1 with err on failure.
 */
int pl_deploy_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err);

/**
 * @brief The live-metric chart of a deployment: {deployment_id, status, shipped_at,
 *        rolled_back_at, baseline_pass_rate, decision {at, kind} or null, rollout [{at,
 *        rollout_pct}], points [{at, traces, passed, pass_rate}]} (up to 60 buckets over the
 *        shipped version's live traces). @returns 1, 0 not found, -1 with err.
 */
int pl_deploy_store_series(PGconn *conn, const char *tenant_id, const char *id, char **json,
                           struct pl_pg_error *err);

/**
 * @brief The dashboard's banners: {regressions: deployments regressed now or rolled back by
 *        system:auto_rollback in the last 24 h (project_id filters when not NULL), killswitch:
 *        {active, updated_by, updated_at}}. @returns 1, -1 with err.
 */
int pl_deploy_store_alerts(PGconn *conn, const char *tenant_id, const char *project_id, char **json,
                           struct pl_pg_error *err);

#endif
