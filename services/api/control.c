/* The control loop's routes that act on the whole tenant: the kill switch (GET for any role;
 * enable / disable for owners, audited). Control-loop routes: team or enterprise plan. */
#include "api.h"

#include "killswitch.h"
#include "log.h"

#include <json-c/json.h>
#include <stdio.h>

static void control_killswitch_answer(struct pl_http_response *res, bool active)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "active", json_object_new_boolean(active));
    pl_http_json(res, 200, o);
}

void api_killswitch_get(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, true, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    bool active = false;
    struct pl_pg_error err;
    int rc = pl_killswitch_get(conn, who.tenant_id, &active, &err);
    api_db_release(req, conn);
    if (rc != 0)
        api_db_error(res, &err);
    else
        control_killswitch_answer(res, active);
}

static void control_killswitch_set(struct pl_http_request *req, struct pl_http_response *res,
                                   bool active)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLE_OWNER, true, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    int rc = pl_killswitch_set(conn, who.tenant_id, active, actor, &err);
    api_db_release(req, conn);
    if (rc != 0) {
        api_db_error(res, &err);
        return;
    }
    pl_info("kill switch of tenant %s %s by %s", who.tenant_id, active ? "enabled" : "disabled",
            actor);
    control_killswitch_answer(res, active);
}

void api_killswitch_enable(struct pl_http_request *req, struct pl_http_response *res)
{
    control_killswitch_set(req, res, true);
}

void api_killswitch_disable(struct pl_http_request *req, struct pl_http_response *res)
{
    control_killswitch_set(req, res, false);
}
