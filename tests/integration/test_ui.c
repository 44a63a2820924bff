/* The dashboard's files over HTTP from the stack's api: embedded pages answer with their
 * content types and the security headers (a Content-Security-Policy without inline scripts or
 * eval, no framing, no sniffing); an unknown file is 404; /ui redirects to /ui/. */
#include "itest.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_and_headers),
        cmocka_unit_test(test_unknown_and_redirect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
