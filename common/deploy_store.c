#include "deploy_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *pl_deploy_store_list(PGconn *conn, const char *tenant_id, const char *status,
                           const char *project_id, long long limit, long long offset,
                           struct pl_pg_error *err)
{
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[5] = {tenant_id, status, project_id, lim, off};
    /* The page comes from the (tenant, [status|project], created_at) indexes; the whole
     * body is built by the database in one round trip. */
    PGresult *res = pl_pg_query(
        conn,
        "SELECT coalesce(string_agg(pl_deployment_json(p)::text, ',' ORDER BY p.created_at DESC, "
        "p.id DESC),"
        " ''), (SELECT count(*) FROM prompt_deployments WHERE tenant_id = $1"
        "     AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR project_id = $3)"
        " ) FROM (SELECT * FROM prompt_deployments WHERE tenant_id = $1"
        "     AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR project_id = $3)"
        "     ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5) p",
        5, params, err);
    if (!res)
        return NULL;
    char *json = pl_list_envelope(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), limit, offset);
    PQclear(res);
    return json;
}

int pl_deploy_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err)
{
    const char *params[2] = {id, tenant_id};
    return pl_pg_query_text(conn,
                            "SELECT pl_deployment_json(d)::text FROM prompt_deployments d"
                            " WHERE id = $1 AND tenant_id = $2",
                            2, params, json, err);
}
