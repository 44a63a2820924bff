/* Audit log: append-only, hash-chained per tenant so any edit or deletion is detectable. */
#ifndef PL_AUDIT_H
#define PL_AUDIT_H

#include "pg.h"

/**
 * @brief Appends an entry inside the caller's open transaction. The entry's hash covers the
 *        previous entry's hash of the same tenant (chains are serialised per tenant with a
 *        transaction-scoped advisory lock). detail_json must be a JSON object.
 * @returns 0, or -1 with err filled.
 */
int pl_audit_append(PGconn *conn, const char *tenant_id, const char *actor, const char *action,
                    const char *target, const char *detail_json, struct pl_pg_error *err);

/**
 * @brief Runs sql (which must return one row: id, row JSON) and audits it as action by actor,
 *        in a transaction of its own. detail is the audit detail, or NULL to record the row.
 * @param json  on success the row JSON (caller frees); may be NULL.
 * @returns 1 written, 0 when sql returned no row, on_unique when it broke a unique
 *          constraint, -1 with err on any other failure (nothing is kept).
 */
int pl_audit_write(PGconn *conn, const char *sql, int nparams, const char *const *params,
                   const char *tenant_id, const char *actor, const char *action, const char *detail,
                   int on_unique, char **json, struct pl_pg_error *err);

/**
 * @brief A page of the tenant's entries, newest first: {items:[{id, actor, action, target,
 *        detail, at, hash}], next_before} (next_before: pass as before for the older page, or
 *        null). actor, action, target (exact) and before (an entry id) filter when not NULL.
 * @returns 1, or -1 with err.
 */
int pl_audit_list(PGconn *conn, const char *tenant_id, const char *actor, const char *action,
                  const char *target, const char *before, long long limit, char **json,
                  struct pl_pg_error *err);

/**
 * @brief Recomputes the tenant's chain in C (independently of the SQL that wrote it).
 * @returns the number of entries checked, or -1 with the first broken entry named in err.
 */
long long pl_audit_verify(PGconn *conn, const char *tenant_id, char *err, size_t errsz);

#endif
