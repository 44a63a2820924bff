/* SQL for eval_rules. Callers validate rules (evaluate.h) before writing them. */
#ifndef PL_EVAL_RULE_STORE_H
#define PL_EVAL_RULE_STORE_H

#include "pg.h"

/** @brief {items,total,limit,offset}, newest first; project_id filters when not NULL. */
char *pl_eval_rule_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                              long long limit, long long offset, struct pl_pg_error *err);

/** @brief 1 + *json (caller frees) when found, 0 when not, -1 with err. */
int pl_eval_rule_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                           struct pl_pg_error *err);

/**
 * @brief Creates a rule from {project_id, metric_name, evaluator_type, config, enabled?}.
 * @returns 1 + *json, 0 when the project is not the tenant's, -1 with err.
 */
int pl_eval_rule_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                              const char *rule_json, char **json, struct pl_pg_error *err);

/**
 * @brief Replaces the rule's fields with the (already merged and validated) rule_json.
 * @returns 1 + *json, 0 when not found, -1 with err.
 */
int pl_eval_rule_store_update(PGconn *conn, const char *tenant_id, const char *id,
                              const char *actor, const char *rule_json, char **json,
                              struct pl_pg_error *err);

/** @brief Deletes the rule; 1 deleted, 0 not found, -1 with err. */
int pl_eval_rule_store_delete(PGconn *conn, const char *tenant_id, const char *id,
                              const char *actor, struct pl_pg_error *err);

#endif
