/* The control loop's kill switch, one per tenant. */
#include "killswitch.h"

#include "audit.h"

#include <stdlib.h>
#include <string.h>

int pl_killswitch_get(PGconn *conn, const char *tenant_id, bool *active, struct pl_pg_error *err)
{
    const char *p[1] = {tenant_id};
    PGresult *res = pl_pg_query_prepared(conn, "pl_killswitch_get",
                                         "SELECT coalesce((SELECT active FROM control_killswitch"
                                         " WHERE tenant_id = $1), false)",
                                         1, p, err);
    if (!res)
        return -1;
    *active = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int pl_killswitch_set(PGconn *conn, const char *tenant_id, bool active, const char *actor,
                      struct pl_pg_error *err)
{
    const char *p[3] = {tenant_id, active ? "t" : "f", actor};
    int r =
        pl_audit_write(conn,
                       "INSERT INTO control_killswitch (tenant_id, active, updated_by)"
                       " VALUES ($1, $2::boolean, $3) ON CONFLICT (tenant_id) DO UPDATE"
                       " SET active = excluded.active, updated_by = excluded.updated_by,"
                       " updated_at = now()"
                       " RETURNING tenant_id::text, json_build_object('active', active)::text",
                       3, p, tenant_id, actor, active ? "killswitch.enable" : "killswitch.disable",
                       NULL, -1, NULL, err);
    return r == 1 ? 0 : -1;
}
