/* SQL for traces and the ingest id registry. */
#include "trace_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pl_trace_store_claim(PGconn *conn, const char *tenant_id, const char *project_id,
                         const char *const *ids, int n, bool *is_new, struct pl_pg_error *err)
{
    char *arr = pl_pg_text_array(ids, (size_t)n);
    if (!arr) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        return -1;
    }
    const char *params[3] = {tenant_id, project_id, arr};
    /* The ordinality says which input a new row came from: no per-id string matching. */
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_ingest_claim",
        "WITH p AS (SELECT id FROM projects WHERE id = $2 AND tenant_id = $1"
        "           AND archived_at IS NULL),"
        " ids AS (SELECT t, min(i) AS i FROM unnest($3::text[]) WITH ORDINALITY u(t, i)"
        "         GROUP BY t),"
        " ins AS (INSERT INTO ingest_ids (project_id, trace_id, tenant_id)"
        "         SELECT p.id, ids.t, $1 FROM p, ids"
        "         ON CONFLICT DO NOTHING RETURNING trace_id)"
        " SELECT (SELECT count(*) FROM p), ids.i FROM ins JOIN ids ON ids.t = ins.trace_id"
        " UNION ALL SELECT (SELECT count(*) FROM p), NULL WHERE NOT EXISTS (SELECT 1 FROM ins)",
        3, params, err);
    free(arr);
    if (!res)
        return -1;
    int rc = pl_pg_getll(res, 0, 0) == 1 ? 1 : 0;
    for (int i = 0; i < n; i++)
        is_new[i] = false;
    for (int r = 0; r < PQntuples(res); r++) {
        long long ord = PQgetisnull(res, r, 1) ? 0 : pl_pg_getll(res, r, 1);
        if (ord >= 1 && ord <= n)
            is_new[ord - 1] = true;
    }
    PQclear(res);
    return rc;
}
