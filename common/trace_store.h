/* SQL for traces and the ingest id registry. */
#ifndef PL_TRACE_STORE_H
#define PL_TRACE_STORE_H

#include "pg.h"

#include <stdbool.h>

/**
 * @brief Records trace ids as accepted for a project of the tenant, inside the caller's
 *        open transaction. ids_array is a Postgres text[] literal.
 * @param is_new  filled per id (n of them, same order): true when not seen before (only the first
 * of an id repeated in ids).
 * @returns 1 done, 0 when the project is not the tenant's (nothing written), -1 with err.
 */
int pl_trace_store_claim(PGconn *conn, const char *tenant_id, const char *project_id,
                         const char *const *ids, int n, bool *is_new, struct pl_pg_error *err);

#endif
