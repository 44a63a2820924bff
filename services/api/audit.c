/* The audit log for owners and reviewers: a filtered page of entries, newest first, and the
 * chain's verification (recomputed in C from the stored rows). */
#include "api.h"

#include "audit.h"
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_audit_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    static const char *const allowed[] = {"actor", "action", "target", "before", "limit", NULL};
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, allowed, NULL))
        return;
    long long limit, before = 0;
    char why[128];
    const char *before_text = pl_http_query(req, "before");
    if (pl_param_int("limit", pl_http_query(req, "limit"), 50, 1, 200, &limit, why, sizeof(why)) !=
            0 ||
        (before_text && pl_param_int("before", before_text, 0, 1, 9223372036854775807LL, &before,
                                     why, sizeof(why)) != 0)) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    static const char *const filters[] = {"actor", "action", "target"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = pl_http_query(req, filters[i]);
        if (v && (v[0] == '\0' || strlen(v) > 256)) {
            pl_http_error(res, 400, "%s must be 1 to 256 characters", filters[i]);
            return;
        }
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int r = pl_audit_list(conn, who.tenant_id, pl_http_query(req, "actor"),
                          pl_http_query(req, "action"), pl_http_query(req, "target"), before_text,
                          limit, &json, &err);
    api_db_release(req, conn);
    api_answer(res, r, json, &err, "audit page");
}

void api_audit_verify(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char why[512] = "";
    long long n = pl_audit_verify(conn, who.tenant_id, why, sizeof(why));
    api_db_release(req, conn);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(n >= 0));
    json_object_object_add(o, "entries", n >= 0 ? json_object_new_int64(n) : NULL);
    json_object_object_add(o, "error", n >= 0 ? NULL : json_object_new_string(why));
    pl_http_json(res, 200, o);
}
