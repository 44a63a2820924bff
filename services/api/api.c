/* What every api handler shares: auth, sessions, query and page parameters, answers. */
#include "api.h"

#include "json_scan.h"
#include "log.h"
#include "params.h"
#include "ui_session.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A revoked key keeps working for at most this long in one api replica. */
#define API_AUTH_CACHE_MS 5000

bool api_cookie(const struct pl_http_request *req, const char *name, char *out, size_t outsz)
{
    const char *c = pl_http_header(req, "Cookie");
    size_t n = strlen(name);
    while (c && *c) {
        while (*c == ' ' || *c == ';')
            c++;
        const char *end = strchr(c, ';');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len > n && strncmp(c, name, n) == 0 && c[n] == '=') {
            if (len - n - 1 >= outsz)
                return false;
            snprintf(out, outsz, "%.*s", (int)(len - n - 1), c + n + 1);
            return true;
        }
        c += len;
    }
    return false;
}

/* A dashboard session instead of a key: the session cookie, and for anything but a read the
 * session's CSRF token in X-CSRF-Token (a cross-site form cannot set that header). 0 when
 * there is no session cookie (then the key decides), 1 signed in, -1 answered (401, 403,
 * 503). */
static int api_session(struct pl_http_request *req, struct pl_http_response *res,
                       struct pl_principal *who)
{
    char token[PL_UI_TOKEN_SIZE + 1], csrf[PL_UI_TOKEN_SIZE];
    if (pl_http_header(req, "Authorization") ||
        !api_cookie(req, PL_UI_COOKIE, token, sizeof(token)))
        return 0;
    struct pl_pg_error err;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return -1;
    int found = pl_ui_session_get(conn, token, who, csrf, &err);
    api_db_release(req, conn);
    if (found < 0) {
        api_db_error(res, &err);
        return -1;
    }
    if (found == 0) {
        pl_http_error(res, 401, "the dashboard session ended or expired: sign in again");
        return -1;
    }
    bool read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    const char *sent = pl_http_header(req, "X-CSRF-Token");
    if (!read && (!sent || strcmp(sent, csrf) != 0)) {
        pl_http_error(res, 403, "missing or wrong X-CSRF-Token for this session");
        return -1;
    }
    return 1;
}

bool api_authorize(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                   bool control_loop, struct pl_principal *who)
{
    struct pl_service *svc = req->user;
    struct pl_pg_error err;
    int session = api_session(req, res, who);
    if (session < 0)
        return false;
    switch (session ? PL_AUTH_OK
                    : pl_auth_resolve(svc->pg, pl_http_header(req, "Authorization"),
                                      API_AUTH_CACHE_MS, who, &err)) {
    case PL_AUTH_OK:
        break;
    case PL_AUTH_INVALID:
        pl_http_error(res, 401, "missing or invalid API key (Authorization: Bearer pl_...)");
        return false;
    case PL_AUTH_ERROR:
        pl_warn("auth lookup failed: %s", err.message);
        pl_http_error(res, 503, "database unavailable");
        snprintf(res->retry_after, sizeof(res->retry_after), "1");
        return false;
    }
    if (control_loop && !pl_auth_plan_has_control_loop(who->plan)) {
        pl_http_error(res, 402,
                      "the %s plan does not include the control loop (team or "
                      "enterprise required)",
                      who->plan);
        return false;
    }
    if (!(roles & who->role)) {
        pl_http_error(res, 403, "role %s may not do this", pl_auth_role_name(who->role));
        return false;
    }
    return true;
}

bool api_query_params(struct pl_http_request *req, struct pl_http_response *res,
                      const char *const *allowed, const char **project_id)
{
    const char *unknown = pl_http_query_unknown(req, allowed);
    if (unknown) {
        pl_http_error(res, 400, "unknown query parameter \"%s\"",
                      pl_utf8_valid(unknown, strlen(unknown)) ? unknown : "(not UTF-8)");
        return false;
    }
    /* Values reach the database as text, which must be UTF-8 (else an error there, a 500). */
    for (const char *const *name = allowed; *name; name++) {
        const char *v = pl_http_query(req, *name);
        if (v && !pl_utf8_valid(v, strlen(v))) {
            pl_http_error(res, 400, "%s must be valid UTF-8", *name);
            return false;
        }
    }
    if (project_id) {
        *project_id = pl_http_query(req, "project_id");
        if (*project_id && !pl_uuid_valid(*project_id)) {
            pl_http_error(res, 400, "project_id must be a uuid");
            return false;
        }
    }
    return true;
}

bool api_page_params(struct pl_http_request *req, struct pl_http_response *res, long long *limit,
                     long long *offset)
{
    char why[128];
    if (pl_param_int("limit", pl_http_query(req, "limit"), 50, 1, 200, limit, why, sizeof(why)) !=
            0 ||
        pl_param_int("offset", pl_http_query(req, "offset"), 0, 0, 1000000000LL, offset, why,
                     sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return false;
    }
    return true;
}

PGconn *api_db(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_service *svc = req->user;
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    if (!conn) {
        pl_warn("database unavailable: %s", err.message);
        pl_http_error(res, 503, "database unavailable");
        snprintf(res->retry_after, sizeof(res->retry_after), "1");
    }
    return conn;
}

void api_db_release(struct pl_http_request *req, PGconn *conn)
{
    struct pl_service *svc = req->user;
    pl_pg_release(svc->pg, conn);
}

void api_db_error(struct pl_http_response *res, const struct pl_pg_error *err)
{
    pl_error("database error [%s]: %s", err->sqlstate, err->message);
    if (err->sqlstate[0] == '\0' || strncmp(err->sqlstate, "08", 2) == 0) {
        pl_http_error(res, 503, "database unavailable");
        snprintf(res->retry_after, sizeof(res->retry_after), "1");
    } else {
        pl_http_error(res, 500, "internal error");
    }
}

void api_answer(struct pl_http_response *res, int found, char *json, const struct pl_pg_error *err,
                const char *what)
{
    if (found < 0)
        api_db_error(res, err);
    else if (!found)
        pl_http_error(res, 404, "%s not found", what);
    else
        api_json_owned(res, 200, json);
}

void api_json_owned(struct pl_http_response *res, int status, char *json)
{
    pl_http_text(res, status, "application/json", json);
}

void api_actor(const struct pl_principal *who, char *buf, size_t bufsz)
{
    if (who->user_name[0])
        snprintf(buf, bufsz, "user:%s", who->user_name);
    else
        snprintf(buf, bufsz, "key:%s", who->key_id);
}

bool api_authorize_id(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                      bool control_loop, const char *what, struct pl_principal *who)
{
    if (!api_authorize(req, res, roles, control_loop, who))
        return false;
    if (!pl_uuid_valid(req->params[0])) {
        pl_http_error(res, 404, "%s not found", what);
        return false;
    }
    return true;
}

void api_get_one(struct pl_http_request *req, struct pl_http_response *res, unsigned roles,
                 bool control_loop, api_store_get get, const char *what)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, roles, control_loop, what, &who))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int found = get(conn, who.tenant_id, req->params[0], &json, &err);
    api_db_release(req, conn);
    api_answer(res, found, json, &err, what);
}
