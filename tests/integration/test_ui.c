/* The dashboard over HTTP from the stack's api: embedded pages answer with their content
 * types and the security headers (a Content-Security-Policy without inline scripts or eval,
 * no framing, no sniffing); an unknown file is 404; /ui redirects to /ui/. Sessions: sign-in
 * with a key sets an HttpOnly, SameSite=Strict cookie; reads work with the cookie alone,
 * mutations only with the session's CSRF token; roles hold; sign-out and expiry end it. */
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The value of header name in r (case-insensitive name), copied into out; false if absent. */
static bool header(const struct itest_response *r, const char *name, char *out, size_t outsz)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t vlen = len - (size_t)(v - line);
            while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
                vlen--;
            snprintf(out, outsz, "%.*s", (int)vlen, v);
            return true;
        }
        line = end ? end + 1 : line + len;
    }
    return false;
}

static void expect_security_headers(const struct itest_response *r)
{
    char v[512];
    assert_true(header(r, "Content-Security-Policy", v, sizeof(v)));
    assert_non_null(strstr(v, "script-src 'self'"));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    assert_null(strstr(v, "unsafe-inline"));
    assert_null(strstr(v, "unsafe-eval"));
    assert_true(header(r, "X-Content-Type-Options", v, sizeof(v)));
    assert_string_equal(v, "nosniff");
    assert_true(header(r, "X-Frame-Options", v, sizeof(v)));
    assert_string_equal(v, "DENY");
}

static void test_pages_and_headers(void **state)
{
    (void)state;
    static const struct {
        const char *path, *type, *contains;
    } files[] = {
        {"/ui/", "text/html; charset=utf-8", "<script type=\"module\" src=\"/ui/app.js\">"},
        {"/ui/index.html", "text/html; charset=utf-8", "<title>promptloop</title>"},
        {"/ui/app.js", "text/javascript; charset=utf-8", "textContent"},
        {"/ui/app.css", "text/css; charset=utf-8", "--accent"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct itest_response r = itest_api("GET", files[i].path, NULL, NULL);
        if (r.status != 200)
            fail_msg("%s: %ld", files[i].path, r.status);
        char type[128];
        assert_true(header(&r, "Content-Type", type, sizeof(type)));
        assert_string_equal(type, files[i].type);
        assert_non_null(strstr(r.body, files[i].contains));
        expect_security_headers(&r);
        itest_response_free(&r);
    }
    /* no inline script in the page: everything runs from files the CSP allows */
    struct itest_response r = itest_api("GET", "/ui/", NULL, NULL);
    assert_null(strstr(r.body, "<script>"));
    assert_null(strstr(r.body, "onload="));
    itest_response_free(&r);
}

static void test_unknown_and_redirect(void **state)
{
    (void)state;
    struct itest_response r = itest_api("GET", "/ui/nope.js", NULL, NULL);
    assert_int_equal(r.status, 404);
    expect_security_headers(&r);
    itest_response_free(&r);
    r = itest_api("GET", "/ui/..%2Fapi.h", NULL, NULL);
    assert_int_equal(r.status, 404);
    itest_response_free(&r);
    r = itest_api("GET", "/ui", NULL, NULL);
    assert_int_equal(r.status, 308);
    char loc[64];
    assert_true(header(&r, "Location", loc, sizeof(loc)));
    assert_string_equal(loc, "/ui/");
    itest_response_free(&r);
    r = itest_api("POST", "/ui/", NULL, "{}");
    assert_int_equal(r.status, 405);
    itest_response_free(&r);
}

/* A request as a signed-in browser: the session cookie, and the CSRF token when not NULL. */
static struct itest_response as_browser(const char *method, const char *path, const char *token,
                                        const char *csrf, const char *body)
{
    char cookie[160], csrf_h[128];
    snprintf(cookie, sizeof(cookie), "Cookie: theme=dark; pl_session=%s", token);
    snprintf(csrf_h, sizeof(csrf_h), "X-CSRF-Token: %s", csrf ? csrf : "");
    const char *h[3] = {cookie, csrf ? csrf_h : NULL, NULL};
    return itest_http_headers(itest_env("PL_API_URL"), method, path, NULL, body, h);
}

/* Signs in with key: the cookie's token and the CSRF token (65 bytes each). */
static void sign_in(const char *key, char token[80], char csrf[80])
{
    char body[128];
    snprintf(body, sizeof(body), "{\"api_key\": \"%s\"}", key);
    struct itest_response r = itest_api("POST", "/ui/session", NULL, body);
    assert_int_equal(r.status, 201);
    char cookie[256];
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_non_null(strstr(cookie, "; HttpOnly"));
    assert_non_null(strstr(cookie, "; SameSite=Strict"));
    assert_non_null(strstr(cookie, "; Path=/"));
    assert_non_null(strstr(cookie, "; Max-Age=43200"));
    assert_true(sscanf(cookie, "pl_session=%64[0-9a-f];", token) == 1);
    assert_int_equal(strlen(token), 64);
    snprintf(csrf, 80, "%s", itest_json_str(&r, "csrf_token"));
    assert_int_equal(strlen(csrf), 64);
    itest_response_free(&r);
}

static void test_sessions(void **state)
{
    (void)state;
    PGconn *db = itest_pg(NULL);
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    struct itest_response r = itest_api("POST", "/ui/session", NULL, "{\"api_key\": \"pl_nope\"}");
    assert_int_equal(r.status, 401);
    itest_response_free(&r);
    r = itest_api("POST", "/ui/session", NULL, "{\"key\": 1}");
    assert_int_equal(r.status, 400);
    itest_response_free(&r);

    char token[80], csrf[80];
    sign_in(t.owner_key, token, csrf);
    r = as_browser("GET", "/ui/session", token, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "role"), "owner");
    assert_string_equal(itest_json_str(&r, "tenant_id"), t.id);
    assert_string_equal(itest_json_str(&r, "csrf_token"), csrf);
    itest_response_free(&r);
    /* a read with the cookie alone; a mutation needs the CSRF token */
    r = as_browser("GET", "/v1/control/killswitch", token, NULL, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    r = as_browser("POST", "/v1/control/killswitch/enable", token, NULL, NULL);
    assert_int_equal(r.status, 403);
    itest_response_free(&r);
    r = as_browser("POST", "/v1/control/killswitch/enable", token, "0123", NULL);
    assert_int_equal(r.status, 403);
    itest_response_free(&r);
    r = as_browser("POST", "/v1/control/killswitch/enable", token, csrf, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    r = as_browser("POST", "/v1/control/killswitch/disable", token, csrf, NULL);
    assert_int_equal(r.status, 200);
    itest_response_free(&r);
    /* the audit entry names the signed-in key */
    const char *p[2] = {t.id, "killswitch.enable"};
    char *actor =
        itest_sql(db, "SELECT actor FROM audit_log WHERE tenant_id = $1 AND action = $2", 2, p);
    assert_true(strncmp(actor, "key:", 4) == 0);
    free(actor);

    /* a viewer's session may read and not act, whatever the token */
    char vtoken[80], vcsrf[80];
    sign_in(t.viewer_key, vtoken, vcsrf);
    r = as_browser("POST", "/v1/control/killswitch/enable", vtoken, vcsrf, NULL);
    assert_int_equal(r.status, 403);
    itest_response_free(&r);

    /* sign-out needs the token, clears the cookie, and ends the session */
    r = as_browser("DELETE", "/ui/session", token, NULL, NULL);
    assert_int_equal(r.status, 403);
    itest_response_free(&r);
    r = as_browser("DELETE", "/ui/session", token, csrf, NULL);
    assert_int_equal(r.status, 204);
    char cookie[256];
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_non_null(strstr(cookie, "pl_session=; Path=/; Max-Age=0"));
    itest_response_free(&r);
    r = as_browser("GET", "/v1/control/killswitch", token, NULL, NULL);
    assert_int_equal(r.status, 401);
    itest_response_free(&r);

    /* an expired session is refused */
    const char *q[1] = {t.id};
    free(itest_sql(db,
                   "UPDATE ui_sessions SET expires_at = now() - interval '1 second'"
                   " WHERE tenant_id = $1 RETURNING 1",
                   1, q));
    r = as_browser("GET", "/ui/session", vtoken, NULL, NULL);
    assert_int_equal(r.status, 401);
    itest_response_free(&r);
    /* only the token's hash is stored */
    q[0] = token;
    char *n = itest_sql(db, "SELECT count(*) FROM ui_sessions WHERE token_hash = $1", 1, q);
    assert_string_equal(n, "0");
    free(n);
    PQfinish(db);
}

/* A one-time sign-in link: made by a key for itself, redeemed once for a session of that key
 * (303 to /ui/ with the cookie); used or expired links are 410. */
static void test_signin_link(void **state)
{
    (void)state;
    PGconn *db = itest_pg(NULL);
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    struct itest_response r = itest_api("POST", "/ui/links", NULL, NULL);
    assert_int_equal(r.status, 401);
    itest_response_free(&r);
    r = itest_api("POST", "/ui/links", t.viewer_key, NULL);
    assert_int_equal(r.status, 201);
    char path[160];
    snprintf(path, sizeof(path), "%s", itest_json_str(&r, "path"));
    itest_response_free(&r);
    assert_true(strncmp(path, "/ui/signin/", 11) == 0);

    r = itest_api("GET", path, NULL, NULL);
    assert_int_equal(r.status, 303);
    char loc[64], cookie[256], token[80];
    assert_true(header(&r, "Location", loc, sizeof(loc)));
    assert_string_equal(loc, "/ui/");
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_non_null(strstr(cookie, "; HttpOnly; SameSite=Strict"));
    assert_true(sscanf(cookie, "pl_session=%64[0-9a-f];", token) == 1);
    itest_response_free(&r);
    r = as_browser("GET", "/ui/session", token, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "role"), "viewer");
    itest_response_free(&r);
    /* once only */
    r = itest_api("GET", path, NULL, NULL);
    assert_int_equal(r.status, 410);
    itest_response_free(&r);
    /* an expired link */
    r = itest_api("POST", "/ui/links", t.owner_key, NULL);
    snprintf(path, sizeof(path), "%s", itest_json_str(&r, "path"));
    itest_response_free(&r);
    const char *q[1] = {t.id};
    free(itest_sql(db,
                   "UPDATE ui_signin_links SET expires_at = now() - interval '1 second'"
                   " WHERE tenant_id = $1 AND used_at IS NULL RETURNING 1",
                   1, q));
    r = itest_api("GET", path, NULL, NULL);
    assert_int_equal(r.status, 410);
    itest_response_free(&r);
    r = itest_api("GET", "/ui/signin/not-a-token", NULL, NULL);
    assert_int_equal(r.status, 410);
    itest_response_free(&r);
    PQfinish(db);
}

/* A request to base with the given header lines (NULL-ended, at most 3). */
static struct itest_response to(const char *base, const char *method, const char *path,
                                const char *body, const char *h1, const char *h2)
{
    const char *h[3] = {h1, h2, NULL};
    return itest_http_headers(base, method, path, NULL, body, h);
}

/* Behind a trusted auth proxy: the user it names signs in, but only from the configured
 * proxy addresses and only as a user the tenant added; approvals record the user. */
static void test_proxy_sign_in(void **state)
{
    (void)state;
    PGconn *db = itest_pg(NULL);
    struct itest_tenant t;
    itest_tenant_new(db, "team", &t);
    char name[64], header_line[128], path[128];
    snprintf(name, sizeof(name), "alice.%.8s@example.com", t.id);
    snprintf(header_line, sizeof(header_line), "X-Forwarded-User: %s", name);
    const char *p[2] = {t.id, name};
    free(itest_sql(db,
                   "INSERT INTO ui_users (tenant_id, name, role) VALUES ($1, $2, 'owner')"
                   " RETURNING id",
                   2, p));

    /* the stack's api has no proxy configured: a key is needed */
    struct itest_response r = itest_api("POST", "/ui/session", NULL, "{}");
    assert_int_equal(r.status, 400);
    itest_response_free(&r);

    const char *env[] = {"PL_UI_PROXY_HEADER=X-Forwarded-User",
                         "PL_UI_PROXY_ADDRESSES=10.0.0.9, 127.0.0.1", NULL};
    char log[128], base[64];
    pid_t api = itest_service_start("pl-api", "itest-ui-proxy", env, log);
    snprintf(base, sizeof(base), "%s", itest_service_url());
    r = to(base, "POST", "/ui/session", NULL, NULL, NULL);
    assert_int_equal(r.status, 401); /* no user named */
    itest_response_free(&r);
    r = to(base, "POST", "/ui/session", NULL, "X-Forwarded-User: mallory@example.com", NULL);
    assert_int_equal(r.status, 403); /* not a user of any tenant */
    itest_response_free(&r);
    r = to(base, "POST", "/ui/session", NULL, "X-Forwarded-User: two words", NULL);
    assert_int_equal(r.status, 401);
    itest_response_free(&r);
    r = to(base, "POST", "/ui/session", "{}", header_line, NULL);
    assert_int_equal(r.status, 201);
    assert_string_equal(itest_json_str(&r, "user_name"), name);
    assert_string_equal(itest_json_str(&r, "role"), "owner");
    assert_string_equal(itest_json_str(&r, "tenant_id"), t.id);
    char cookie[256], token[80], cookie_line[160], csrf_line[128];
    assert_true(header(&r, "Set-Cookie", cookie, sizeof(cookie)));
    assert_true(sscanf(cookie, "pl_session=%64[0-9a-f];", token) == 1);
    snprintf(cookie_line, sizeof(cookie_line), "Cookie: pl_session=%s", token);
    snprintf(csrf_line, sizeof(csrf_line), "X-CSRF-Token: %s", itest_json_str(&r, "csrf_token"));
    itest_response_free(&r);

    /* the approval records the user, the audit entry names it */
    char dep[37];
    itest_deployment_new(db, &t, "ab_passed", dep);
    snprintf(path, sizeof(path), "/v1/prompts/deployments/%s/approve", dep);
    r = to(base, "POST", path, NULL, cookie_line, csrf_line);
    assert_int_equal(r.status, 200);
    assert_string_equal(itest_json_str(&r, "approved_by"), name);
    itest_response_free(&r);
    const char *pa[1] = {dep};
    char *actor = itest_sql(db,
                            "SELECT actor FROM audit_log WHERE target = $1"
                            " AND detail->>'to' = 'shipped'",
                            1, pa);
    char want[96];
    snprintf(want, sizeof(want), "user:%s", name);
    assert_string_equal(actor, want);
    free(actor);
    /* links are for keys; a disabled user's session ends at once */
    r = to(base, "POST", "/ui/links", NULL, cookie_line, csrf_line);
    assert_int_equal(r.status, 400);
    itest_response_free(&r);
    free(itest_sql(db,
                   "UPDATE ui_users SET disabled_at = now() WHERE name = $2 AND tenant_id = $1"
                   " RETURNING 1",
                   2, p));
    r = to(base, "GET", "/ui/session", NULL, cookie_line, NULL);
    assert_int_equal(r.status, 401);
    itest_response_free(&r);
    itest_service_stop(api);

    /* from an address that is not the proxy's, the header is refused */
    const char *elsewhere[] = {"PL_UI_PROXY_HEADER=X-Forwarded-User",
                               "PL_UI_PROXY_ADDRESSES=10.0.0.9", NULL};
    api = itest_service_start("pl-api", "itest-ui-proxy", elsewhere, log);
    snprintf(base, sizeof(base), "%s", itest_service_url());
    r = to(base, "POST", "/ui/session", NULL, header_line, NULL);
    assert_int_equal(r.status, 403);
    itest_response_free(&r);
    itest_service_stop(api);
    PQfinish(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_and_headers), cmocka_unit_test(test_unknown_and_redirect),
        cmocka_unit_test(test_sessions),          cmocka_unit_test(test_signin_link),
        cmocka_unit_test(test_proxy_sign_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
