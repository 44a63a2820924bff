/* Small helpers shared by the registry routes (registry.c) and their compatible read surfaces
 * (registry_compat.c): one-row queries, transaction rollback, audit entries built with json-c,
 * and the checks that keep text PostgreSQL cannot store out of the database. */
#ifndef PL_API_REGISTRY_JSON_H
#define PL_API_REGISTRY_JSON_H

#include "api.h"
#include "audit.h"
#include "pg.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/**
 * @brief Runs sql and, when it returns a row, copies its first column into *out (caller
 *        frees). @returns 1 with *out set, 0 when there is no row, -1 with err.
 */
static inline int registry_one(PGconn *conn, const char *sql, int n, const char *const *params,
                               char **out, struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(conn, sql, n, params, err);
    if (!res)
        return -1;
    int found = PQntuples(res) > 0;
    if (found) {
        *out = strdup(PQgetvalue(res, 0, 0));
        if (!*out) {
            snprintf(err->message, sizeof(err->message), "out of memory");
            snprintf(err->sqlstate, sizeof(err->sqlstate), "53200");
            found = -1;
        }
    }
    PQclear(res);
    return found;
}

/**
 * @brief Opens a registry write: BEGIN, then the tenant's audit-chain lock (the advisory lock
 *        pl_audit_append takes, common/audit.c) before any row lock. A deployment's move to
 *        shipped takes that lock before its ship hook locks the prompt row; taking it first
 *        here too keeps one lock order, so a version write never deadlocks with an approval.
 * @returns 0, or -1 with err (the transaction may be open: roll back).
 */
static inline int registry_begin(PGconn *conn, const char *tenant_id, struct pl_pg_error *err)
{
    const char *p[1] = {tenant_id};
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return -1;
    return pl_pg_exec(conn, "SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", 1, p, err);
}

/* What a registry write reports when a row it just wrote cannot be read back (never expected;
 * a 500 rather than a misleading 503). Overwritten by any real database error. */
#define REGISTRY_NO_ROW                                                                            \
    {                                                                                              \
        "XX000", "row written in this transaction not found"                                       \
    }

/**
 * @brief Ends a registry write: reads the written row back as JSON (sql takes $1 = the row's
 *        id, $2 = the tenant), commits, and answers with status and that JSON.
 * @returns 0, or -1 with err (nothing answered; the caller reports the database error).
 */
static inline int registry_commit_answer(PGconn *conn, struct pl_http_response *res, int status,
                                         const char *sql, const char *id, const char *tenant_id,
                                         struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant_id};
    char *json = NULL;
    int found = registry_one(conn, sql, 2, p, &json, err);
    if (found == 0)
        *err = (struct pl_pg_error)REGISTRY_NO_ROW;
    if (found != 1 || pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0) {
        free(json);
        return -1;
    }
    api_json_owned(res, status, json);
    return 0;
}

/** @brief Ends a transaction still open without keeping anything (no-op after a COMMIT). */
static inline void registry_rollback(PGconn *conn)
{
    struct pl_pg_error ignored;
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
}

/**
 * @brief Appends an audit entry in the caller's transaction; detail is taken over (put).
 * @returns 0, or -1 with err.
 */
static inline int registry_audit(PGconn *conn, const char *tenant_id, const char *actor,
                                 const char *action, const char *target, json_object *detail,
                                 struct pl_pg_error *err)
{
    int rc = pl_audit_append(conn, tenant_id, actor, action, target,
                             json_object_to_json_string_ext(
                                 detail, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                             err);
    json_object_put(detail);
    return rc;
}

/** @brief True when a JSON string holds a NUL character (text PostgreSQL refuses). */
static inline bool registry_has_nul(json_object *s)
{
    return strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s);
}

#endif
