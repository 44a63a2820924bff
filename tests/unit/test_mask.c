/* Unit tests for the masking of error messages (mask.h): one test per kind with its
 * negative cases, the order of the kinds, bounded output and arbitrary bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mask.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_SIZE 4096

static void expect_mask(const char *in, const char *want)
{
    char out[OUT_SIZE];
    size_t n = pl_mask_text(in, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("mask(\"%s\")\n  got  \"%s\"\n  want \"%s\"", in, out, want);
    assert_int_equal(n, strlen(want));
}

/* The text comes back unchanged. */
static void expect_same(const char *in)
{
    expect_mask(in, in);
}

/* Deterministic bytes for the robustness tests (xorshift64). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- one test per kind --------------------------------------------------------------------- */

static void test_mask_email(void **state)
{
    (void)state;
    expect_mask("mail to bob.smith+x@mail.example.co.uk failed", "mail to <EMAIL> failed");
    expect_mask("owner=ops_team@corp.example.com", "owner=<EMAIL>");
    expect_mask("<alice@example.org>", "<<EMAIL>>");
    /* Not e-mails: no dotted domain, no local part, a one-letter top label. */
    expect_same("user@host refused");
    expect_same("ping @channel now");
    expect_same("a@b.c is short");
    expect_same("@@@ weird @ text @");
}

static void test_mask_url(void **state)
{
    (void)state;
    expect_mask("see https://example.com/a?b=1.", "see <URL>.");
    expect_mask("(ftp://files.example.org/x)", "(<URL>)");
    expect_mask("read file:///etc/app.conf: denied", "read <URL>: denied");
    expect_mask("redis://:secret@cache:6379/0 down", "<URL> down");
    /* No scheme or nothing after it. */
    expect_same("scheme http: only");
    expect_same("odd a:// here");
}

static void test_mask_host(void **state)
{
    (void)state;
    expect_mask("connect db.example.com:5432 refused", "connect <HOST> refused");
    expect_mask("resolve proxy.cse.cuhk.edu.hk failed", "resolve <HOST> failed");
    expect_mask("to cache.svc.cluster.local:6379 and redis.svc:6379", "to <HOST> and <HOST>");
    expect_mask("rhost=biblioteka.wsi.edu.pl", "rhost=<HOST>");
    expect_mask("visit example.com.", "visit <HOST>.");
    /* Dotted words that are not hosts: code, files, config keys, loggers. */
    expect_same("at NameSystem.addStoredBlock");
    expect_same("in main.py and jquery.min.js");
    expect_same("mapred.task.id is deprecated");
    expect_same("log.info called");
    expect_mask("at Foo.java:42", "at Foo.java:<NUM>");
    /* A single label with a port stays a word: "memory:1024" is a key and a value. */
    expect_mask("dial db:5432 refused", "dial db:<NUM> refused");
}

static void test_mask_ip(void **state)
{
    (void)state;
    expect_mask("from 10.0.0.1 port 22", "from <IP> port <NUM>");
    expect_mask("to 10.251.73.220:50010.", "to <IP>.");
    expect_mask("/10.0.0.1:8080 closed", "/<IP> closed");
    expect_mask("peer [::1]:8080 gone", "peer <IP> gone");
    expect_mask("ll fe80::1%eth0 up", "ll <IP> up");
    expect_mask("v6 2001:db8::ff00:42:8329, 2607:f140:6000:8:c6b3:1ff:fecd:467f", "v6 <IP>, <IP>");
    expect_mask("mapped ::ffff:10.1.2.3 ok", "mapped <IP> ok");
    expect_mask("full 1:2:3:4:5:6:7:8", "full <IP>");
    /* Not addresses: a part above 255, five parts, C++ scopes, a time, a MAC. */
    expect_mask("ip 300.1.1.1", "ip <NUM>");
    expect_mask("ip 1.2.3.4.5", "ip <NUM>");
    expect_same("in Class::add and Foo::bar");
    expect_mask("at 12:34:56", "at <TS>");
    expect_mask("mac 5c:50:15:4c:18:13", "mac <HEX>");
}

static void test_mask_uuid(void **state)
{
    (void)state;
    expect_mask("instance 123e4567-e89b-12d3-a456-426614174000 died", "instance <UUID> died");
    expect_mask("[instance: B9000564-FE1A-409B-B8CC-1E88B294CD1D]", "[instance: <UUID>]");
    /* A group too short is no UUID (its parts are still masked on their own). */
    char out[OUT_SIZE];
    pl_mask_text("123e4567-e89b-12d3-a456-42661417400", out, sizeof(out));
    assert_null(strstr(out, "<UUID>"));
}

static void test_mask_hash_hex(void **state)
{
    (void)state;
    expect_mask("md5 d41d8cd98f00b204e9800998ecf8427e", "md5 <HASH>");
    expect_mask("sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1 <HASH>");
    expect_mask("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "sha256 <HASH>");
    expect_mask("GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers", "GET /v2/<HASH>/servers");
    expect_mask("ptr 0xdeadBEEF and 0x0)", "ptr <HEX> and <HEX>)");
    expect_mask("commit 5d41402abc4b2a7", "commit <HEX>");
    /* 33 hex digits: not a hash length, still a hex id. */
    expect_mask("id d41d8cd98f00b204e9800998ecf8427ef", "id <HEX>");
    /* Words made of hex letters, short ids, a bare prefix. */
    expect_same("deadbeef and facade");
    expect_same("cafe12 is short");
    expect_same("0x alone");
}

static void test_mask_numbers(void **state)
{
    (void)state;
    expect_mask("retry 3 of 5", "retry <NUM> of <NUM>");
    expect_mask("x=-1 y=+2 z=3.14 w=-2.5e-3", "x=<NUM> y=<NUM> z=<NUM> w=<NUM>");
    expect_mask("range 10-20", "range <NUM>-<NUM>");
    expect_mask("ARPT: 620701.011328: wl0", "ARPT: <NUM>: wl0");
    /* Version-like dotted numbers are one number. */
    expect_mask("version 2.7.14 installed", "version <NUM> installed");
    /* Digits inside a word, or after a dot inside a dotted word, stay with the word. */
    expect_same("blk_38865049064139660 python3 x86_64 v1.2 invoke.434 1st");
    expect_mask("node-12 blk_-5", "node-<NUM> blk_-<NUM>");
}

static void test_mask_dates(void **state)
{
    (void)state;
    expect_mask("at 2017-05-16T05:54:58.530160+00:00 x", "at <TS> x");
    expect_mask("at 2017-05-16 05:54:58,123 x", "at <TS> x");
    expect_mask("at 2017-05-16T05:54:58Z", "at <TS>");
    expect_mask("on 2017-05-16.", "on <TS>.");
    expect_mask("2005-06-03-15.42.50.363779 R02-M1", "<TS> R02-M1");
    expect_mask("Jun 14 15:16:01 combo sshd", "<TS> combo sshd");
    expect_mask("at Sat Jun 18 02:23:10 2005", "at <TS>");
    expect_mask("Jun  4 05:06:07", "<TS>");
    expect_mask("took until 15:16:01.123, then 12:30", "took until <TS>, then <TS>");
    expect_mask("lifetime 00:01", "lifetime <TS>");
    /* Month and day names alone are words. */
    expect_mask("due Jun 14", "due Jun <NUM>");
    expect_same("May I ask");
}

static void test_mask_durations(void **state)
{
    (void)state;
    expect_mask("took 250ms", "took <DUR>");
    expect_mask("after 1.5s, 3m and 1h30m", "after <DUR>, <DUR> and <DUR>");
    expect_mask("in 10\xc2\xb5s or 15ns", "in <DUR> or <DUR>");
    expect_mask("timed out after 5 seconds", "timed out after <DUR>");
    expect_mask("took 0.607292 sec. to complete", "took <DUR>. to complete");
    expect_mask("for 2 days", "for <DUR>");
    /* One-letter units and "us" need no space; "1st" and "5m3" are words. */
    expect_mask("5 us and 3 m", "<NUM> us and <NUM> m");
    expect_same("1st 5m3 2nd");
}

static void test_mask_quoted(void **state)
{
    (void)state;
    expect_mask("key=\"some value\" next", "key=<STR> next");
    expect_mask("name='x' path=\"a\\\"b\"", "name=<STR> path=<STR>");
    expect_mask("empty=\"\"", "empty=<STR>");
    /* Not right after '=', or never closed. */
    expect_same("key = \"spaced\"");
    expect_same("said \"hello\"");
    expect_same("key=\"never closed");
}

/* ---- order, bounds, bytes ------------------------------------------------------------------ */

static void test_mask_order(void **state)
{
    (void)state;
    /* A URL holding an IP, a port and numbers is one URL, not an IP and numbers. */
    expect_mask("GET http://10.0.0.1:8080/v1/items/42?page=3 failed", "GET <URL> failed");
    /* An e-mail's domain is not a separate host. */
    expect_mask("from root@db.example.com", "from <EMAIL>");
    /* A quoted value swallows what it holds. */
    expect_mask("url=\"http://example.com/x\" n=\"42\"", "url=<STR> n=<STR>");
    /* A UUID is not a run of hex ids and numbers, a date not numbers. */
    expect_mask("a 123e4567-e89b-12d3-a456-426614174000 b 2017-05-16", "a <UUID> b <TS>");
    /* Durations before numbers, hosts before IPs. */
    expect_mask("5s 5 hostname-1.example.com", "<DUR> <NUM> <HOST>");
}

static void test_mask_bounded(void **state)
{
    (void)state;
    /* 1 MiB line of mixed content. */
    const char *piece = "user bob@example.com at 10.0.0.1:80 took 5ms id 0xff x=\"q\" ";
    size_t plen = strlen(piece), n = 1 << 20;
    char *in = malloc(n + 1);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++)
        in[i] = piece[i % plen];
    in[n] = '\0';
    size_t big = 5 * n + 1;
    char *full = malloc(big);
    assert_non_null(full);
    size_t want = pl_mask_text(in, full, big);
    assert_int_equal(want, strlen(full));

    /* A small buffer for the whole line: the full length is still reported. */
    char buf[300];
    assert_int_equal(pl_mask_text(in, buf, 100), want);
    assert_memory_equal(buf, full, strlen(buf));

    /* Every size, on a 4 KiB prefix: NUL-terminated inside the buffer, nothing written past
     * it, a prefix of the full result, never half a placeholder, same length reported. */
    in[4096] = '\0';
    want = pl_mask_text(in, full, big);
    for (size_t sz = 0; sz < 290; sz++) {
        memset(buf, 'Z', sizeof(buf));
        size_t got = pl_mask_text(in, buf, sz);
        assert_int_equal(got, want);
        for (size_t i = sz; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'Z');
        if (sz == 0)
            continue;
        size_t len = strnlen(buf, sz);
        assert_true(len < sz);
        assert_memory_equal(buf, full, len);
        char *lt = strrchr(buf, '<');
        if (lt)
            assert_non_null(strchr(lt, '>'));
    }
    /* The documented bound never truncates: a lone digit is the worst case (5x). */
    char out5[5 * 9 + 1];
    assert_int_equal(pl_mask_text("1 2 3 4 5", out5, sizeof(out5)), 5 * 5 + 4);
    char out1[6];
    assert_int_equal(pl_mask_text("7", out1, sizeof(out1)), 5);
    assert_string_equal(out1, "<NUM>");
    free(full);
    free(in);
}

static void test_mask_arbitrary_bytes(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    static const char alphabet[] = "aZ09.:-_@/ =\"'x5fF[]%+eE,;()<>\\";
    char in[512], out[5 * sizeof(in) + 1], again[5 * sizeof(in) + 1];
    for (int round = 0; round < 20000; round++) {
        size_t len = rng_next(&seed) % sizeof(in);
        for (size_t i = 0; i < len; i++) {
            uint64_t r = rng_next(&seed);
            /* Half raw bytes (NULs and high bytes included), half token-ish characters. */
            in[i] = (r & 1) ? (char)(r >> 8) : alphabet[(r >> 8) % (sizeof(alphabet) - 1)];
        }
        size_t n = pl_mask_textn(in, len, out, sizeof(out));
        assert_true(n <= 5 * len);
        /* No NUL inside: every input NUL became a space. */
        assert_int_equal(strlen(out), n);
        /* Deterministic. */
        assert_int_equal(pl_mask_textn(in, len, again, sizeof(again)), n);
        assert_memory_equal(out, again, n + 1);
    }
    /* A NUL is a separator. */
    char nul[OUT_SIZE];
    pl_mask_textn("a\0"
                  "42",
                  4, nul, sizeof(nul));
    assert_string_equal(nul, "a <NUM>");
    /* Pathological shapes stay fast (bounded scanners): long dotted words, hex, quotes. */
    size_t big = 1 << 20;
    char *p = malloc(big + 1), *o = malloc(5 * big + 1);
    assert_non_null(p);
    assert_non_null(o);
    static const char *const shapes[] = {"a.", "ab", "1.", "=\"", ":", "0x", "a@", "-1"};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (size_t i = 0; i < big; i++)
            p[i] = shapes[s][i % 2];
        p[big] = '\0';
        pl_mask_text(p, o, 5 * big + 1);
    }
    free(o);
    free(p);
}

static void test_mask_placeholder_len(void **state)
{
    (void)state;
    assert_int_equal(pl_mask_placeholder_len("<NUM>x"), 5);
    assert_int_equal(pl_mask_placeholder_len("<EMAIL>"), 7);
    assert_int_equal(pl_mask_placeholder_len("<IP>"), 4);
    assert_int_equal(pl_mask_placeholder_len("<NUMBER>"), 0);
    assert_int_equal(pl_mask_placeholder_len("<*>"), 0);
    assert_int_equal(pl_mask_placeholder_len("NUM"), 0);
    assert_int_equal(pl_mask_placeholder_len(""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_email),
        cmocka_unit_test(test_mask_url),
        cmocka_unit_test(test_mask_host),
        cmocka_unit_test(test_mask_ip),
        cmocka_unit_test(test_mask_uuid),
        cmocka_unit_test(test_mask_hash_hex),
        cmocka_unit_test(test_mask_numbers),
        cmocka_unit_test(test_mask_dates),
        cmocka_unit_test(test_mask_durations),
        cmocka_unit_test(test_mask_quoted),
        cmocka_unit_test(test_mask_order),
        cmocka_unit_test(test_mask_bounded),
        cmocka_unit_test(test_mask_arbitrary_bytes),
        cmocka_unit_test(test_mask_placeholder_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
