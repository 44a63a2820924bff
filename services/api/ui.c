/* The dashboard's files at /ui/ (embedded, ui_assets.h), with the headers that keep a page
 * showing trace and prompt text safe: a Content-Security-Policy that allows scripts, styles
 * and requests from this origin only (no inline script or eval), no framing, no sniffing. */
#include "api.h"
#include "ui_assets.h"

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
