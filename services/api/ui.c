/* The dashboard's files at /ui/ (embedded, ui_assets.h), with the headers that keep a page
 * showing trace and prompt text safe: a Content-Security-Policy that allows scripts, styles
 * and requests from this origin only (no inline script or eval), no framing, no sniffing. */
#include "api.h"
#include "log.h"
#include "params.h"
#include "ui_assets.h"
#include "ui_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scripts and styles from files of this origin only; no inline code, no eval, no plugin;
 * data: images for small icons; the page may not be framed. */
static const char ui_csp[] = "default-src 'none'; script-src 'self'; style-src 'self';"
                             " img-src 'self' data:; connect-src 'self'; font-src 'self';"
                             " base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

static const char *ui_content_type(const char *name)
{
    static const struct {
        const char *suffix, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t sl = strlen(types[i].suffix);
        if (len > sl && strcmp(name + len - sl, types[i].suffix) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

static void ui_security_headers(struct pl_http_response *res)
{
    pl_http_add_header(res, "Content-Security-Policy", ui_csp);
    pl_http_add_header(res, "X-Content-Type-Options", "nosniff");
    pl_http_add_header(res, "X-Frame-Options", "DENY");
    pl_http_add_header(res, "Referrer-Policy", "no-referrer");
    pl_http_add_header(res, "Cache-Control", "no-cache");
}

void api_ui_asset(struct pl_http_request *req, struct pl_http_response *res)
{
    const char *name = req->nparams > 0 ? req->params[0] : "index.html";
    ui_security_headers(res);
    for (const struct pl_ui_asset *a = pl_ui_assets; a->name; a++) {
        if (strcmp(a->name, name) != 0)
            continue;
        char *body = malloc(a->len + 1);
        if (!body) {
            pl_http_error(res, 500, "out of memory");
            return;
        }
        memcpy(body, a->bytes, a->len + 1); /* the embedded bytes end with a NUL */
        pl_http_text(res, 200, ui_content_type(name), body);
        return;
    }
    pl_http_error(res, 404, "no dashboard file %s", name);
}

void api_ui_redirect(struct pl_http_request *req, struct pl_http_response *res)
{
    (void)req;
    pl_http_add_header(res, "Location", "/ui/");
    pl_http_text(res, 308, "text/plain; charset=utf-8", strdup("/ui/\n"));
}

/* Set-Cookie for the session token (an empty token with max_age 0 clears it). */
static void ui_set_cookie(struct pl_http_request *req, struct pl_http_response *res,
                          const char *token, int max_age)
{
    struct pl_service *svc = req->user;
    snprintf(res->set_cookie, sizeof(res->set_cookie),
             "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s", PL_UI_COOKIE, token, max_age,
             svc->cfg.ui_cookie_secure ? "; Secure" : "");
}

static json_object *ui_session_json(const struct pl_principal *who, const char *csrf)
{
    json_object *o = json_object_new_object();
    char actor[PL_ACTOR_SIZE];
    api_actor(who, actor, sizeof(actor));
    json_object_object_add(o, "tenant_id", json_object_new_string(who->tenant_id));
    json_object_object_add(o, "key_id",
                           who->key_id[0] ? json_object_new_string(who->key_id) : NULL);
    json_object_object_add(o, "user", json_object_new_string(actor));
    json_object_object_add(o, "user_name",
                           who->user_name[0] ? json_object_new_string(who->user_name) : NULL);
    json_object_object_add(o, "role", json_object_new_string(pl_auth_role_name(who->role)));
    json_object_object_add(o, "plan", json_object_new_string(who->plan));
    json_object_object_add(o, "csrf_token", json_object_new_string(csrf));
    return o;
}

/* Opens a session for who and answers 201 with its cookie. */
static void ui_open_session(struct pl_http_request *req, struct pl_http_response *res,
                            const struct pl_principal *who)
{
    struct pl_service *svc = req->user;
    struct pl_pg_error err;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char token[PL_UI_TOKEN_SIZE], csrf[PL_UI_TOKEN_SIZE];
    int rc = pl_ui_session_create(conn, who, svc->cfg.ui_session_ttl_s, token, csrf, &err);
    api_db_release(req, conn);
    if (rc != 0) {
        api_db_error(res, &err);
        return;
    }
    ui_set_cookie(req, res, token, svc->cfg.ui_session_ttl_s);
    ui_security_headers(res);
    char actor[PL_ACTOR_SIZE];
    api_actor(who, actor, sizeof(actor));
    pl_info("dashboard: %s signed in", actor);
    pl_http_json(res, 201, ui_session_json(who, csrf));
}

/* Whether addr is one of the comma-separated addresses in list (spaces around are ignored). */
static bool ui_address_listed(const char *list, const char *addr)
{
    size_t n = strlen(addr);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == n && len > 0 && strncmp(p, addr, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* A user name as a proxy may send it: 1..PL_USER_NAME_MAX printable ASCII, no spaces (an
 * e-mail address or a login). */
static bool ui_user_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > PL_USER_NAME_MAX)
        return false;
    for (const char *c = name; *c; c++)
        if (*c <= ' ' || *c > '~')
            return false;
    return true;
}

/* Sign-in as the user a trusted auth proxy names in its header: only when configured, only
 * from the configured proxy addresses (anyone else could set the header), and only for a
 * user of ui_users, which gives the tenant and the role. */
static void ui_sign_in_proxy(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_service *svc = req->user;
    char peer[64];
    if (!svc->cfg.ui_proxy_header[0]) {
        pl_http_error(res, 400,
                      "the body must be {\"api_key\": \"pl_...\"} (no auth proxy is "
                      "configured: ui.proxy_header)");
        return;
    }
    if (!pl_http_peer(req, peer, sizeof(peer)) ||
        !ui_address_listed(svc->cfg.ui_proxy_addresses, peer)) {
        pl_http_error(res, 403,
                      "sign-in by proxy header is accepted only from the configured "
                      "proxy addresses (ui.proxy_addresses)");
        return;
    }
    const char *name = pl_http_header(req, svc->cfg.ui_proxy_header);
    if (!name || !ui_user_name_ok(name)) {
        pl_http_error(res, 401, "the auth proxy sent no valid user name in %s",
                      svc->cfg.ui_proxy_header);
        return;
    }
    struct pl_principal who;
    struct pl_pg_error err;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    int found = pl_ui_user_find(conn, name, &who, &err);
    api_db_release(req, conn);
    if (found < 0)
        api_db_error(res, &err);
    else if (found == 0)
        pl_http_error(res, 403, "user %s has no dashboard access (pl-admin user add)", name);
    else
        ui_open_session(req, res, &who);
}

void api_ui_sign_in(struct pl_http_request *req, struct pl_http_response *res)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, true, why, sizeof(why)), *k;
    if (body && json_object_object_length(body) == 0) { /* no key: the auth proxy's user */
        json_object_put(body);
        ui_sign_in_proxy(req, res);
        return;
    }
    if (!body || !json_object_object_get_ex(body, "api_key", &k) ||
        !json_object_is_type(k, json_type_string) || json_object_object_length(body) != 1) {
        pl_http_error(res, 400, "%s", body ? "the body must be {\"api_key\": \"pl_...\"}" : why);
        json_object_put(body);
        return;
    }
    struct pl_service *svc = req->user;
    char bearer[128];
    snprintf(bearer, sizeof(bearer), "Bearer %.100s", json_object_get_string(k));
    json_object_put(body);
    struct pl_principal who;
    struct pl_pg_error err;
    /* no cache: a key revoked a moment ago must not open a session */
    switch (pl_auth_resolve(svc->pg, bearer, 0, &who, &err)) {
    case PL_AUTH_OK:
        break;
    case PL_AUTH_INVALID:
        pl_http_error(res, 401, "unknown or revoked API key");
        return;
    case PL_AUTH_ERROR:
        api_db_error(res, &err);
        return;
    }
    ui_open_session(req, res, &who);
}

void api_ui_session(struct pl_http_request *req, struct pl_http_response *res)
{
    char token[PL_UI_TOKEN_SIZE + 1], csrf[PL_UI_TOKEN_SIZE];
    struct pl_principal who;
    struct pl_pg_error err;
    ui_security_headers(res);
    if (!api_cookie(req, PL_UI_COOKIE, token, sizeof(token))) {
        pl_http_error(res, 401, "not signed in");
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    int found = pl_ui_session_get(conn, token, &who, csrf, &err);
    api_db_release(req, conn);
    if (found < 0)
        api_db_error(res, &err);
    else if (found == 0)
        pl_http_error(res, 401, "the dashboard session ended or expired: sign in again");
    else
        pl_http_json(res, 200, ui_session_json(&who, csrf));
}

void api_ui_sign_out(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    char token[PL_UI_TOKEN_SIZE + 1];
    ui_security_headers(res);
    /* a session only (a key has nothing to sign out of), and its CSRF token */
    if (!api_cookie(req, PL_UI_COOKIE, token, sizeof(token)) ||
        pl_http_header(req, "Authorization")) {
        pl_http_error(res, 401, "not signed in");
        return;
    }
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    struct pl_pg_error err;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    int ended = pl_ui_session_end(conn, token, &err);
    api_db_release(req, conn);
    if (ended < 0) {
        api_db_error(res, &err);
        return;
    }
    ui_set_cookie(req, res, "", 0);
    pl_http_text(res, 204, "text/plain; charset=utf-8", strdup(""));
}

/* A sign-in link lives this long: long enough to click it from a terminal. */
#define UI_LINK_TTL_S 600

void api_ui_link_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, (const char *const[]){NULL}, NULL))
        return;
    if (!who.key_id[0]) { /* a proxy's user signs in through the proxy */
        pl_http_error(res, 400, "sign-in links are made for API keys");
        return;
    }
    struct pl_pg_error err;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char token[PL_UI_TOKEN_SIZE];
    int rc = pl_ui_link_create(conn, &who, UI_LINK_TTL_S, token, &err);
    api_db_release(req, conn);
    if (rc != 0) {
        api_db_error(res, &err);
        return;
    }
    char path[128];
    snprintf(path, sizeof(path), "/ui/signin/%s", token);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "path", json_object_new_string(path));
    json_object_object_add(o, "expires_in_s", json_object_new_int(UI_LINK_TTL_S));
    pl_http_json(res, 201, o);
}

void api_ui_link_redeem(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_service *svc = req->user;
    struct pl_principal who;
    struct pl_pg_error err;
    ui_security_headers(res);
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char token[PL_UI_TOKEN_SIZE], csrf[PL_UI_TOKEN_SIZE];
    int found = pl_ui_link_redeem(conn, req->params[0], &who, &err);
    int rc = found == 1
                 ? pl_ui_session_create(conn, &who, svc->cfg.ui_session_ttl_s, token, csrf, &err)
                 : 0;
    api_db_release(req, conn);
    if (found < 0 || rc != 0) {
        api_db_error(res, &err);
        return;
    }
    if (found == 0) {
        pl_http_error(res, 410, "the sign-in link is unknown, used or expired");
        return;
    }
    pl_info("dashboard: key %s signed in through a one-time link", who.key_id);
    ui_set_cookie(req, res, token, svc->cfg.ui_session_ttl_s);
    pl_http_add_header(res, "Location", "/ui/");
    pl_http_text(res, 303, "text/plain; charset=utf-8", strdup("/ui/\n"));
}
