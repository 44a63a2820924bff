/* Unit tests for failure templates and signatures (template.h): the message-local rules,
 * order independence, the signature format and bounded output. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mask.h"
#include "template.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TPL_SIZE 4096

static void expect_template(const char *text, const char *want)
{
    char out[TPL_SIZE];
    assert_int_equal(pl_template_from_text(text, out, sizeof(out)), 0);
    if (strcmp(out, want) != 0)
        fail_msg("template(\"%s\")\n  got  \"%s\"\n  want \"%s\"", text, out, want);
}

static void expect_same_template(const char *a, const char *b)
{
    char ta[TPL_SIZE], tb[TPL_SIZE];
    assert_int_equal(pl_template_from_text(a, ta, sizeof(ta)), 0);
    assert_int_equal(pl_template_from_text(b, tb, sizeof(tb)), 0);
    if (strcmp(ta, tb) != 0)
        fail_msg("templates differ:\n  \"%s\" -> \"%s\"\n  \"%s\" -> \"%s\"", a, ta, b, tb);
}

static void expect_other_template(const char *a, const char *b)
{
    char ta[TPL_SIZE], tb[TPL_SIZE];
    assert_int_equal(pl_template_from_text(a, ta, sizeof(ta)), 0);
    assert_int_equal(pl_template_from_text(b, tb, sizeof(tb)), 0);
    if (strcmp(ta, tb) == 0)
        fail_msg("templates should differ:\n  \"%s\"\n  \"%s\" -> \"%s\"", a, b, ta);
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- templates ----------------------------------------------------------------------------- */

static void test_template_deterministic(void **state)
{
    (void)state;
    const char *msg = "Connection to db-3.example.com:5432 refused after 250ms (attempt 3)";
    char a[TPL_SIZE], b[TPL_SIZE];
    assert_int_equal(pl_template_from_text(msg, a, sizeof(a)), 0);
    assert_int_equal(pl_template_from_text(msg, b, sizeof(b)), 0);
    assert_string_equal(a, b);
    assert_string_equal(a, "Connection to <*> refused after <*> (attempt <*>)");
    /* pl_template_from_text is exactly mask + build. */
    char masked[TPL_SIZE], c[TPL_SIZE];
    pl_mask_text(msg, masked, sizeof(masked));
    assert_int_equal(pl_template_build(masked, c, sizeof(c)), 0);
    assert_string_equal(a, c);
}

static void test_template_variable_parts(void **state)
{
    (void)state;
    const char *a = "Connection to 10.0.0.1:5432 refused after 250ms (attempt 3)";
    const char *b = "Connection to  db.example.com:6543 refused after 1.5s (attempt 12)";
    expect_same_template(a, b);
    expect_same_template("PacketResponder 1 for block blk_38865049064139660 terminating",
                         "PacketResponder 2 for block blk_-6952295868487656571 terminating");
    expect_same_template("user alice@example.com not found in /srv/app/users.db",
                         "user bob@example.org not found in /var/lib/app/x.db");
    expect_same_template("timeout at 2017-05-16T05:54:58Z waiting for 3f2a9c1e77",
                         "timeout at Jun 14 15:16:01 waiting for 0xdeadbeef");
    expect_same_template("GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1",
                         "GET /latest/meta-data/ HTTP/1.1");
    /* The same variable parts in different words are different templates. */
    expect_other_template("Connection to 10.0.0.1 refused", "Connection to 10.0.0.1 reset");
    expect_other_template("disk full on /var", "disk quota exceeded on /var");

    char sa[PL_SIGNATURE_SIZE], sb[PL_SIGNATURE_SIZE], ta[TPL_SIZE], tb[TPL_SIZE];
    assert_int_equal(pl_template_from_text(a, ta, sizeof(ta)), 0);
    assert_int_equal(pl_template_from_text(b, tb, sizeof(tb)), 0);
    assert_int_equal(pl_template_signature(PL_GROUPING_VERSION, "p1", "DBError", ta, sa), 0);
    assert_int_equal(pl_template_signature(PL_GROUPING_VERSION, "p1", "DBError", tb, sb), 0);
    assert_string_equal(sa, sb);
}

static void test_template_rules(void **state)
{
    (void)state;
    /* Words holding digits or placeholders, paths, reverse-DNS names are variables. */
    expect_template("worker-7 failed on node42", "<*> failed on <*>");
    expect_template("cannot open /etc/app/conf.d/x.yml: denied", "cannot open <*>: denied");
    expect_template("cannot open ./run.sh or ../lib/a", "cannot open <*> or <*>");
    expect_template("com.example.billing.nightly: job failed", "<*>: job failed");
    /* Consecutive variables, also joined by ',' or ':', are one. */
    expect_template("ids 1, 2, 3 and 4,5 done", "ids <*> and <*> done");
    expect_template("peers 10.0.0.1 10.0.0.2 down", "peers <*> down");
    /* A size unit belongs to its number; an aside of variables only is dropped. */
    expect_template("sent 1190 bytes (1.16 KB) in 2 s", "sent <*> in <*> s");
    expect_template("connection from 1.2.3.4 () at 12:00", "connection from <*> at <*>");
    expect_template("stored (estimated size 93.0 B, free 317.1 KB)",
                    "stored (estimated size <*>, free <*>)");
    /* A call's argument list is kept; an aside with words too. */
    expect_template("chdir(/tmp/x) failed", "chdir(<*>) failed");
    expect_template("refused (permission denied)", "refused (permission denied)");
    /* Dot leaders split a key from its value. */
    expect_template("icache prefetch depth........0", "icache prefetch depth...<*>");
    /* The name after "for user" / "as user" is a value. */
    expect_template("session opened for user cyrus by (uid=0)",
                    "session opened for user <*> by (uid=<*>)");
    expect_template("login as user admin", "login as user <*>");
    expect_template("user unknown", "user unknown");
    /* Whitespace is normalised, punctuation kept. */
    expect_template("  a\t\tb ;  c=d  ", "a b ; c=d");
    expect_template("", "");
    /* Placeholder-looking text from the message counts as a variable only when exact. */
    expect_template("<NUM> and <NOPE>", "<*> and <NOPE>");
}

static void test_template_golden(void **state)
{
    (void)state;
    /* Templates are part of signatures: a change to any of these needs a new
     * PL_GROUPING_VERSION (and an alias from the old signatures). */
    expect_template("BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is "
                    "added to blk_7128370237687728475 size 67108864",
                    "BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> "
                    "size <*>");
    expect_template("authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= "
                    "rhost=218.188.2.4",
                    "authentication failure; logname= uid=<*> euid=<*> tty=NODEVssh ruser= "
                    "rhost=<*>");
    expect_template("proxy.cse.cuhk.edu.hk:5070 close, 1190 bytes (1.16 KB) sent, 1671 bytes "
                    "received, lifetime 00:02",
                    "<*> close, <*> sent, <*> received, lifetime <*>");
    expect_template("ValueError: invalid literal for int() with base 10: 'abc'",
                    "ValueError: invalid literal for int() with base <*>: 'abc'");
}

static void test_template_order_independence(void **state)
{
    (void)state;
    static const char *const msgs[] = {
        "Connection to 10.0.0.1:5432 refused",
        "Connection to db.example.com:5432 refused",
        "Connection to cache refused",
        "session opened for user cyrus by (uid=0)",
        "session opened for user news by (uid=0)",
        "Timeout after 30s waiting for lock 0x7f3a",
        "Timeout after 5 seconds waiting for lock 0x1",
        "KeyError: 'user_id'",
        "KeyError: 'order_id'",
        "disk full on /var/lib/postgres",
        "disk full on /srv",
        "ids 1, 2, 3 missing",
        "ids 4 missing",
        "rate limited: retry in 250ms",
        "upstream 503 from https://api.example.com/v1/items?page=2",
        "upstream 502 from https://api.example.com/v1/users",
    };
    enum { N = sizeof(msgs) / sizeof(msgs[0]) };
    static char first[N][TPL_SIZE], second[N][TPL_SIZE];
    for (size_t i = 0; i < N; i++)
        assert_int_equal(pl_template_from_text(msgs[i], first[i], TPL_SIZE), 0);
    /* Another order (a fixed permutation: 7 is prime to 16), twice, with other work between:
     * every message keeps its template. */
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < N; k++) {
            size_t i = (k * 7 + 3) % N;
            char noise[TPL_SIZE];
            assert_int_equal(pl_template_from_text(msgs[(i + 5) % N], noise, TPL_SIZE), 0);
            assert_int_equal(pl_template_from_text(msgs[i], second[i], TPL_SIZE), 0);
        }
        for (size_t i = 0; i < N; i++)
            assert_string_equal(first[i], second[i]);
    }
    /* Reverse order, signatures included. */
    for (size_t k = N; k-- > 0;) {
        char sig1[PL_SIGNATURE_SIZE], sig2[PL_SIGNATURE_SIZE];
        assert_int_equal(pl_template_from_text(msgs[k], second[k], TPL_SIZE), 0);
        assert_string_equal(first[k], second[k]);
        assert_int_equal(pl_template_signature(1, "p", "E", first[k], sig1), 0);
        assert_int_equal(pl_template_signature(1, "p", "E", second[k], sig2), 0);
        assert_string_equal(sig1, sig2);
    }
}

/* ---- signatures ---------------------------------------------------------------------------- */

static void test_template_signature_format(void **state)
{
    (void)state;
    char sig[PL_SIGNATURE_SIZE];
    assert_int_equal(pl_template_signature(1, "p1", "TypeError", "x <*>", sig), 0);
    assert_int_equal(strlen(sig), 71);
    assert_memory_equal(sig, "sha256:", 7);
    assert_true(is_lower_hex(sig + 7, 64));
    /* Pinned: the encoding "<len>:<field>\n" x 4 must not change silently. */
    assert_string_equal(sig, "sha256:"
                             "a115c482c5226183394ba966ffec42f7062ac0eef30a5bfe8557afda7b20bac4");
}

static void test_template_signature_fields(void **state)
{
    (void)state;
    char base[PL_SIGNATURE_SIZE], other[PL_SIGNATURE_SIZE];
    assert_int_equal(pl_template_signature(1, "p1", "TypeError", "x <*>", base), 0);
    assert_int_equal(pl_template_signature(2, "p1", "TypeError", "x <*>", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(pl_template_signature(1, "p2", "TypeError", "x <*>", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(pl_template_signature(1, "p1", "ValueError", "x <*>", other), 0);
    assert_string_not_equal(base, other);
    assert_int_equal(pl_template_signature(1, "p1", "TypeError", "y <*>", other), 0);
    assert_string_not_equal(base, other);
    /* The join is unambiguous: moving bytes between fields changes the signature. */
    char a[PL_SIGNATURE_SIZE], b[PL_SIGNATURE_SIZE];
    assert_int_equal(pl_template_signature(1, "ab", "c", "t", a), 0);
    assert_int_equal(pl_template_signature(1, "a", "bc", "t", b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(pl_template_signature(1, "a\n1:b", "", "t", a), 0);
    assert_int_equal(pl_template_signature(1, "a", "b", "t", b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(pl_template_signature(11, "p", "e", "t", a), 0);
    assert_int_equal(pl_template_signature(1, "1p", "e", "t", b), 0);
    assert_string_not_equal(a, b);
    /* NULL is "". */
    assert_int_equal(pl_template_signature(1, NULL, NULL, NULL, a), 0);
    assert_int_equal(pl_template_signature(1, "", "", "", b), 0);
    assert_string_equal(a, b);
}

static void test_template_group_id(void **state)
{
    (void)state;
    char g[PL_GROUP_ID_SIZE], h[PL_GROUP_ID_SIZE];
    pl_template_group_id("x <*>", g);
    assert_string_equal(g, "d33072d4f27453d3");
    pl_template_group_id("y <*>", h);
    assert_int_equal(strlen(h), 16);
    assert_true(is_lower_hex(h, 16));
    assert_string_not_equal(g, h);
}

/* ---- bounds -------------------------------------------------------------------------------- */

static void test_template_bounded(void **state)
{
    (void)state;
    /* A small buffer: cut between tokens, NUL-terminated, nothing written past it. */
    const char *msg = "alpha beta gamma delta 42 epsilon";
    char masked[256];
    pl_mask_text(msg, masked, sizeof(masked));
    char full[256];
    assert_int_equal(pl_template_build(masked, full, sizeof(full)), 0);
    for (size_t sz = 1; sz < strlen(full) + 1; sz++) {
        char buf[64];
        memset(buf, 'Z', sizeof(buf));
        assert_int_equal(pl_template_build(masked, buf, sz), -1);
        size_t len = strnlen(buf, sz);
        assert_true(len < sz);
        assert_memory_equal(buf, full, len);
        for (size_t i = sz; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'Z');
    }
    assert_int_equal(pl_template_build(masked, full, 0), -1);

    /* Long messages: more than 64 KiB, more than PL_TEMPLATE_MAX_TOKENS tokens. */
    size_t n = 200 * 1024;
    char *text = malloc(n + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = "word (x) 12 "[i % 12];
    text[n] = '\0';
    size_t osz = 3 * 5 * n + 1;
    char *out = malloc(osz);
    assert_non_null(out);
    assert_int_equal(pl_template_from_text(text, out, osz), -1); /* cut at the token cap */
    assert_true(strlen(out) < osz);
    assert_memory_equal(out, "word (x) <*> word (x) <*>", 25);
    /* Same long text, same template. */
    char *again = malloc(osz);
    assert_non_null(again);
    assert_int_equal(pl_template_from_text(text, again, osz), -1);
    assert_string_equal(out, again);
    /* 64 KiB of one word, and of unbalanced parentheses. */
    for (size_t i = 0; i < n; i++)
        text[i] = 'a';
    assert_int_equal(pl_template_from_text(text, out, osz), 0);
    assert_int_equal(strlen(out), n);
    for (size_t i = 0; i < n; i++)
        text[i] = "( "[i % 2];
    pl_template_from_text(text, out, osz);
    free(again);
    free(out);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_deterministic),
        cmocka_unit_test(test_template_variable_parts),
        cmocka_unit_test(test_template_rules),
        cmocka_unit_test(test_template_golden),
        cmocka_unit_test(test_template_order_independence),
        cmocka_unit_test(test_template_signature_format),
        cmocka_unit_test(test_template_signature_fields),
        cmocka_unit_test(test_template_group_id),
        cmocka_unit_test(test_template_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
