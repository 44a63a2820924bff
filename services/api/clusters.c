/* GET /v1/failures/clusters: the tenant's failure clusters, newest first. */
#include "api.h"

#include "cluster_store.h"
#include "params.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Accepts YYYY-MM-DDTHH:MM:SS with an optional fraction and a Z or +hh:mm offset. */
static bool clusters_time_ok(const char *s)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return false;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++)
            ;
    if (*end == 'Z')
        return end[1] == '\0';
    return (*end == '+' || *end == '-') && strlen(end) == 6 && end[3] == ':';
}

void api_clusters_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", "from", "to", "limit", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    const char *from = pl_http_query(req, "from"), *to = pl_http_query(req, "to");
    if ((from && !clusters_time_ok(from)) || (to && !clusters_time_ok(to))) {
        pl_http_error(res, 400, "%s must be an ISO-8601 timestamp (2026-01-31T12:00:00Z)",
                      from && !clusters_time_ok(from) ? "from" : "to");
        return;
    }
    long long limit;
    char why[128];
    if (pl_param_int("limit", pl_http_query(req, "limit"), 100, 1, 500, &limit, why, sizeof(why)) !=
        0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = pl_cluster_store_list(conn, who.tenant_id, project, from, to, limit, &err);
    api_db_release(req, conn);
    if (!json)
        api_db_error(res, &err);
    else
        api_json_owned(res, 200, json);
}
