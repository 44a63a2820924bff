/* Unit tests for the deployment lifecycle table (architecture §5): the legal-move predicate is
 * checked exhaustively against an independently written list of moves. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "deploy.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The lifecycle (architecture §5), transcribed by hand (one triple per legal move), NOT derived
 * from deploy.c. */
static const struct expected_move {
    enum pl_deploy_status from;
    enum pl_deploy_status to;
    enum pl_deploy_actor actor;
} expected_moves[] = {
    /* (new) -> proposed: differ */
    {PL_DEPLOY_NEW, PL_DEPLOY_PROPOSED, PL_ACTOR_DIFFER},
    /* proposed -> ab_running: abharness */
    {PL_DEPLOY_PROPOSED, PL_DEPLOY_AB_RUNNING, PL_ACTOR_ABHARNESS},
    /* ab_running -> ab_passed, ab_failed: abharness */
    {PL_DEPLOY_AB_RUNNING, PL_DEPLOY_AB_PASSED, PL_ACTOR_ABHARNESS},
    {PL_DEPLOY_AB_RUNNING, PL_DEPLOY_AB_FAILED, PL_ACTOR_ABHARNESS},
    /* ab_passed -> shipped: abharness with autoship */
    {PL_DEPLOY_AB_PASSED, PL_DEPLOY_SHIPPED, PL_ACTOR_AUTOSHIP},
    /* ab_passed, proposed -> shipped: owner (api approve) */
    {PL_DEPLOY_AB_PASSED, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER},
    {PL_DEPLOY_PROPOSED, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER},
    /* shipped -> monitoring: monitor */
    {PL_DEPLOY_SHIPPED, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR},
    /* monitoring -> regressed: monitor */
    {PL_DEPLOY_MONITORING, PL_DEPLOY_REGRESSED, PL_ACTOR_MONITOR},
    /* monitoring -> monitoring: the monitor promotes a canary to 100 % (architecture §7) */
    {PL_DEPLOY_MONITORING, PL_DEPLOY_MONITORING, PL_ACTOR_CANARY_PROMOTE},
    /* shipped, monitoring, regressed -> rolled_back: owner, or monitor with auto_rollback */
    {PL_DEPLOY_SHIPPED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_OWNER},
    {PL_DEPLOY_MONITORING, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_OWNER},
    {PL_DEPLOY_REGRESSED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_OWNER},
    {PL_DEPLOY_SHIPPED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK},
    {PL_DEPLOY_MONITORING, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK},
    {PL_DEPLOY_REGRESSED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK},
    /* proposed, ab_running, ab_passed -> rejected: owner (api reject) */
    {PL_DEPLOY_PROPOSED, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
    {PL_DEPLOY_AB_RUNNING, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
    {PL_DEPLOY_AB_PASSED, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
    {PL_DEPLOY_SHIPPED, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
    {PL_DEPLOY_MONITORING, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
    {PL_DEPLOY_REGRESSED, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
};
#define N_EXPECTED (sizeof(expected_moves) / sizeof(expected_moves[0]))

/* Written out independently of the enum order (the API names). */
static const struct {
    enum pl_deploy_status s;
    const char *name;
} status_names[] = {
    {PL_DEPLOY_PROPOSED, "proposed"},   {PL_DEPLOY_AB_RUNNING, "ab_running"},
    {PL_DEPLOY_AB_PASSED, "ab_passed"}, {PL_DEPLOY_AB_FAILED, "ab_failed"},
    {PL_DEPLOY_SHIPPED, "shipped"},     {PL_DEPLOY_MONITORING, "monitoring"},
    {PL_DEPLOY_REGRESSED, "regressed"}, {PL_DEPLOY_ROLLED_BACK, "rolled_back"},
    {PL_DEPLOY_REJECTED, "rejected"},
};
#define N_NAMES (sizeof(status_names) / sizeof(status_names[0]))

static bool expected_allowed(int from, int to, int actor)
{
    for (size_t i = 0; i < N_EXPECTED; i++)
        if ((int)expected_moves[i].from == from && (int)expected_moves[i].to == to &&
            (int)expected_moves[i].actor == actor)
            return true;
    return false;
}

static void test_allowed_exhaustive(void **state)
{
    (void)state;
    int nallowed = 0;
    for (int from = PL_DEPLOY_NEW; from < PL_DEPLOY_NSTATUS; from++)
        for (int to = PL_DEPLOY_NEW; to < PL_DEPLOY_NSTATUS; to++)
            for (int actor = 0; actor < PL_ACTOR_NACTORS; actor++) {
                bool want = expected_allowed(from, to, actor);
                bool got = pl_deploy_allowed((enum pl_deploy_status)from, (enum pl_deploy_status)to,
                                             (enum pl_deploy_actor)actor);
                if (got != want)
                    fail_msg("pl_deploy_allowed(from=%d, to=%d, actor=%d) = %d, the table says %d",
                             from, to, actor, got, want);
                nallowed += got;
            }
    /* Every row of the table is reachable and nothing else is. */
    assert_int_equal(nallowed, (int)N_EXPECTED);
}

static void test_allowed_spot_checks(void **state)
{
    (void)state;
    /* A few moves named explicitly, so a failure is easy to read. */
    assert_true(pl_deploy_allowed(PL_DEPLOY_NEW, PL_DEPLOY_PROPOSED, PL_ACTOR_DIFFER));
    assert_false(pl_deploy_allowed(PL_DEPLOY_NEW, PL_DEPLOY_PROPOSED, PL_ACTOR_OWNER));
    assert_true(pl_deploy_allowed(PL_DEPLOY_PROPOSED, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER));
    assert_false(pl_deploy_allowed(PL_DEPLOY_PROPOSED, PL_DEPLOY_SHIPPED, PL_ACTOR_AUTOSHIP));
    assert_false(pl_deploy_allowed(PL_DEPLOY_AB_PASSED, PL_DEPLOY_SHIPPED, PL_ACTOR_ABHARNESS));
    assert_false(pl_deploy_allowed(PL_DEPLOY_AB_FAILED, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER));
    assert_false(pl_deploy_allowed(PL_DEPLOY_SHIPPED, PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER));
    assert_false(pl_deploy_allowed(PL_DEPLOY_REGRESSED, PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR));
    assert_false(pl_deploy_allowed(PL_DEPLOY_SHIPPED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_MONITOR));
    assert_true(
        pl_deploy_allowed(PL_DEPLOY_REGRESSED, PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK));
    assert_false(pl_deploy_allowed(PL_DEPLOY_ROLLED_BACK, PL_DEPLOY_REJECTED, PL_ACTOR_OWNER));
    /* Nothing may ever move back to "new". */
    assert_false(pl_deploy_allowed(PL_DEPLOY_PROPOSED, PL_DEPLOY_NEW, PL_ACTOR_DIFFER));
}

static void test_terminal_has_no_way_out(void **state)
{
    (void)state;
    for (int s = PL_DEPLOY_NEW; s < PL_DEPLOY_NSTATUS; s++) {
        bool want_terminal =
            s == PL_DEPLOY_AB_FAILED || s == PL_DEPLOY_REJECTED || s == PL_DEPLOY_ROLLED_BACK;
        if (pl_deploy_terminal((enum pl_deploy_status)s) != want_terminal)
            fail_msg("pl_deploy_terminal(%d) != %d", s, want_terminal);
        /* Consistency with the table: a terminal status has no legal move out. */
        if (want_terminal)
            for (int to = PL_DEPLOY_NEW; to < PL_DEPLOY_NSTATUS; to++)
                for (int a = 0; a < PL_ACTOR_NACTORS; a++)
                    assert_false(pl_deploy_allowed((enum pl_deploy_status)s,
                                                   (enum pl_deploy_status)to,
                                                   (enum pl_deploy_actor)a));
    }
    assert_true(pl_deploy_terminal(PL_DEPLOY_AB_FAILED));
    assert_true(pl_deploy_terminal(PL_DEPLOY_REJECTED));
    assert_true(pl_deploy_terminal(PL_DEPLOY_ROLLED_BACK));
    assert_false(pl_deploy_terminal(PL_DEPLOY_SHIPPED));
    assert_false(pl_deploy_terminal(PL_DEPLOY_REGRESSED));
    assert_false(pl_deploy_terminal(PL_DEPLOY_NEW));
}

static void test_allowed_out_of_range(void **state)
{
    (void)state;
    const int bad[] = {-1, PL_DEPLOY_NSTATUS, PL_DEPLOY_NSTATUS + 1, 31, 32, 1000};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (int s = PL_DEPLOY_NEW; s < PL_DEPLOY_NSTATUS; s++)
            for (int a = 0; a < PL_ACTOR_NACTORS; a++) {
                assert_false(pl_deploy_allowed((enum pl_deploy_status)bad[i],
                                               (enum pl_deploy_status)s, (enum pl_deploy_actor)a));
                assert_false(pl_deploy_allowed((enum pl_deploy_status)s,
                                               (enum pl_deploy_status)bad[i],
                                               (enum pl_deploy_actor)a));
            }
    /* Out-of-range actors never get a move, even a move that exists for some actor. */
    const int bad_actor[] = {-1, PL_ACTOR_NACTORS, PL_ACTOR_NACTORS + 7};
    for (size_t i = 0; i < sizeof(bad_actor) / sizeof(bad_actor[0]); i++)
        for (int from = PL_DEPLOY_NEW; from < PL_DEPLOY_NSTATUS; from++)
            for (int to = PL_DEPLOY_NEW; to < PL_DEPLOY_NSTATUS; to++)
                assert_false(pl_deploy_allowed((enum pl_deploy_status)from,
                                               (enum pl_deploy_status)to,
                                               (enum pl_deploy_actor)bad_actor[i]));
}

static void check_allowed_from(enum pl_deploy_status to, enum pl_deploy_actor actor,
                               const char *want, int want_n)
{
    char buf[160];
    memset(buf, 'X', sizeof(buf));
    int n = pl_deploy_allowed_from(to, actor, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, want_n);
}

static void test_allowed_from_literals(void **state)
{
    (void)state;
    check_allowed_from(PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER, "{proposed,ab_passed}", 2);
    check_allowed_from(PL_DEPLOY_SHIPPED, PL_ACTOR_AUTOSHIP, "{ab_passed}", 1);
    check_allowed_from(PL_DEPLOY_REJECTED, PL_ACTOR_OWNER,
                       "{proposed,ab_running,ab_passed,shipped,monitoring,regressed}", 6);
    check_allowed_from(PL_DEPLOY_ROLLED_BACK, PL_ACTOR_OWNER, "{shipped,monitoring,regressed}", 3);
    check_allowed_from(PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK,
                       "{shipped,monitoring,regressed}", 3);
    check_allowed_from(PL_DEPLOY_AB_RUNNING, PL_ACTOR_ABHARNESS, "{proposed}", 1);
    check_allowed_from(PL_DEPLOY_AB_PASSED, PL_ACTOR_ABHARNESS, "{ab_running}", 1);
    check_allowed_from(PL_DEPLOY_AB_FAILED, PL_ACTOR_ABHARNESS, "{ab_running}", 1);
    check_allowed_from(PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR, "{shipped}", 1);
    check_allowed_from(PL_DEPLOY_REGRESSED, PL_ACTOR_MONITOR, "{monitoring}", 1);
    /* Illegal for this actor: the empty array. */
    check_allowed_from(PL_DEPLOY_SHIPPED, PL_ACTOR_MONITOR, "{}", 0);
    check_allowed_from(PL_DEPLOY_REJECTED, PL_ACTOR_DIFFER, "{}", 0);
    check_allowed_from(PL_DEPLOY_ROLLED_BACK, PL_ACTOR_MONITOR, "{}", 0);
    /* "new" is never a stored status, so creation has no array members. */
    check_allowed_from(PL_DEPLOY_PROPOSED, PL_ACTOR_DIFFER, "{}", 0);
    check_allowed_from(PL_DEPLOY_NEW, PL_ACTOR_OWNER, "{}", 0);
}

/* The array literal must agree with pl_deploy_allowed for every (to, actor). */
static void test_allowed_from_matches_spec(void **state)
{
    (void)state;
    for (int to = PL_DEPLOY_NEW; to < PL_DEPLOY_NSTATUS; to++)
        for (int a = 0; a < PL_ACTOR_NACTORS; a++) {
            char want[160];
            size_t len = (size_t)snprintf(want, sizeof(want), "{");
            int want_n = 0;
            /* Enum order (the order the array is written in). */
            for (int from = PL_DEPLOY_PROPOSED; from < PL_DEPLOY_NSTATUS; from++)
                if (expected_allowed(from, to, a)) {
                    const char *nm = NULL;
                    for (size_t k = 0; k < N_NAMES; k++)
                        if ((int)status_names[k].s == from)
                            nm = status_names[k].name;
                    assert_non_null(nm);
                    len += (size_t)snprintf(want + len, sizeof(want) - len, "%s%s",
                                            want_n++ ? "," : "", nm);
                }
            snprintf(want + len, sizeof(want) - len, "}");
            char got[160];
            int n = pl_deploy_allowed_from((enum pl_deploy_status)to, (enum pl_deploy_actor)a, got,
                                           sizeof(got));
            if (strcmp(got, want) != 0 || n != want_n)
                fail_msg("allowed_from(to=%d, actor=%d) = %s (%d), want %s (%d)", to, a, got, n,
                         want, want_n);
        }
}

static void test_allowed_from_small_buffer(void **state)
{
    (void)state;
    /* "{proposed,ab_running,ab_passed,shipped,monitoring,regressed}" is 61 characters; give
     * far less and watch the guard bytes after the declared size. */
    for (size_t sz = 1; sz <= 62; sz++) {
        char buf[96];
        memset(buf, '#', sizeof(buf));
        pl_deploy_allowed_from(PL_DEPLOY_REJECTED, PL_ACTOR_OWNER, buf, sz);
        for (size_t i = sz; i < sizeof(buf); i++)
            if (buf[i] != '#')
                fail_msg("bufsz %zu: byte %zu was written", sz, i);
        /* Always NUL-terminated inside the buffer. */
        assert_non_null(memchr(buf, '\0', sz));
        assert_true(strlen(buf) < sz);
    }
    /* Exactly enough room: the full literal. */
    char exact[62];
    assert_int_equal(
        pl_deploy_allowed_from(PL_DEPLOY_REJECTED, PL_ACTOR_OWNER, exact, sizeof(exact)), 6);
    assert_string_equal(exact, "{proposed,ab_running,ab_passed,shipped,monitoring,regressed}");
    /* bufsz 0 writes nothing at all. */
    char none[4] = {'#', '#', '#', '#'};
    pl_deploy_allowed_from(PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER, none, 0);
    assert_memory_equal(none, "####", 4);
}

static void test_status_names_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_NAMES; i++) {
        const char *nm = pl_deploy_status_name(status_names[i].s);
        assert_non_null(nm);
        assert_string_equal(nm, status_names[i].name);
        enum pl_deploy_status out = PL_DEPLOY_NEW;
        assert_int_equal(pl_deploy_status_parse(status_names[i].name, &out), 0);
        assert_int_equal(out, status_names[i].s);
    }
    /* Every real status has a name, and names are distinct. */
    for (int s = PL_DEPLOY_PROPOSED; s < PL_DEPLOY_NSTATUS; s++)
        for (int t = s + 1; t < PL_DEPLOY_NSTATUS; t++)
            assert_string_not_equal(pl_deploy_status_name((enum pl_deploy_status)s),
                                    pl_deploy_status_name((enum pl_deploy_status)t));
    assert_null(pl_deploy_status_name(PL_DEPLOY_NEW));
    assert_null(pl_deploy_status_name(PL_DEPLOY_NSTATUS));
    assert_null(pl_deploy_status_name((enum pl_deploy_status) - 1));
    assert_null(pl_deploy_status_name((enum pl_deploy_status)99));
}

static void test_status_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"",           "new",           "Shipped",  "SHIPPED",   "shipped ",
                         " shipped",   "ship",          "shippedx", "ab-passed", "abpassed",
                         "rolledback", "rolled_back\n", "(new)",    "null",      "proposed,"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum pl_deploy_status out = PL_DEPLOY_MONITORING;
        if (pl_deploy_status_parse(bad[i], &out) != -1)
            fail_msg("pl_deploy_status_parse(\"%s\") accepted", bad[i]);
        /* A failed parse leaves the output alone. */
        assert_int_equal(out, PL_DEPLOY_MONITORING);
    }
}

static void test_actor_names(void **state)
{
    (void)state;
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_DIFFER), "differ");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_ABHARNESS), "abharness");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_AUTOSHIP), "system:autoship");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_OWNER), "owner");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_MONITOR), "monitor");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_AUTO_ROLLBACK), "system:auto_rollback");
    assert_string_equal(pl_deploy_actor_name(PL_ACTOR_CANARY_PROMOTE), "system:canary_promote");
    assert_null(pl_deploy_actor_name(PL_ACTOR_NACTORS));
    assert_null(pl_deploy_actor_name((enum pl_deploy_actor) - 1));
    assert_null(pl_deploy_actor_name((enum pl_deploy_actor)100));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_exhaustive),
        cmocka_unit_test(test_allowed_spot_checks),
        cmocka_unit_test(test_terminal_has_no_way_out),
        cmocka_unit_test(test_allowed_out_of_range),
        cmocka_unit_test(test_allowed_from_literals),
        cmocka_unit_test(test_allowed_from_matches_spec),
        cmocka_unit_test(test_allowed_from_small_buffer),
        cmocka_unit_test(test_status_names_round_trip),
        cmocka_unit_test(test_status_parse_rejects),
        cmocka_unit_test(test_actor_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
