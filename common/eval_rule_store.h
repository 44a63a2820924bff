/* SQL for eval_rules. Callers validate rules (evaluate.h) before writing them. */
#ifndef PL_EVAL_RULE_STORE_H
#define PL_EVAL_RULE_STORE_H

#include "evaluate.h"
#include "pg.h"

/** @brief {items,total,limit,offset}, newest first; project_id filters when not NULL. */
char *pl_eval_rule_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                              long long limit, long long offset, struct pl_pg_error *err);

/** @brief 1 + *json (caller frees) when found, 0 when not, -1 with err. */
int pl_eval_rule_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                           struct pl_pg_error *err);

/**
 * @brief Creates a rule from {project_id, metric_name, evaluator_type, config, enabled?},
 *        unless the project already has max_rules rules (enabled or not).
 * @returns 1 + *json, 0 when the project is not the tenant's, 2 when it has max_rules
 *          rules, -1 with err.
 */
int pl_eval_rule_store_create(PGconn *conn, const char *tenant_id, const char *actor,
                              const char *rule_json, int max_rules, char **json,
                              struct pl_pg_error *err);

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

/** A project's enabled rules, compiled, in creation order. */
struct pl_rule_set {
    size_t n;
    struct pl_eval_rule **rules;
    char (*metrics)[128]; /* metric_name of rules[i] */
    char (*ids)[37];      /* id of rules[i] */
};

/**
 * @brief Loads and compiles the project's enabled rules (one that no longer compiles is
 *        skipped with a warning). @returns 0 (free with pl_rule_set_free), -1 with err.
 */
int pl_eval_rule_store_load(PGconn *conn, const char *tenant_id, const char *project_id,
                            struct pl_rule_set *out, struct pl_pg_error *err);

void pl_rule_set_free(struct pl_rule_set *set);

/**
 * @brief Runs every rule of set on in. @returns true when all passed; otherwise false with
 *        the first failing rule's "metric: feedback" in why (may be NULL), and per-rule
 *        outcomes in passed[] when not NULL (set->n entries).
 */
bool pl_rule_set_run(const struct pl_rule_set *set, const struct pl_eval_input *in, bool *passed,
                     char *why, size_t whysz);

#endif
