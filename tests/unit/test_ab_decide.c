/* Unit tests for the A/B decision (ab_decide.h): every gate in its order, on counts whose
 * outcome can be checked by hand.
 *
 * McNemar, b = 5, c = 15: p = 2 * P(X <= 5 | 20, 1/2)
 *   = 2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20 = 43400 / 1048576 = 0.041389.
 * Tango's score with no discordant pair (b = c = 0) on n items at margin m: the restricted
 * estimate of "only the baseline passed" is m, so z = m / sqrt(m (1 - m) / n)
 * = sqrt(n m / (1 - m)), and the one-sided lower bound at level alpha is -z_a^2 / (n + z_a^2)
 * (z_a = 1.644854 at alpha 0.05). Margin 0.03: n = 100 gives z = sqrt(3 / 0.97) = 1.758631 >
 * 1.644854 and bound -0.026343 > -0.03 (passes); n = 40 gives z = sqrt(1.2 / 0.97) =
 * 1.112256 and bound -0.063353 (fails). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ab_decide.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define Z95_ONE_SIDED 1.6448536269514722

static const struct pl_ab_thresholds defaults = {0.05, 0.05, 0.03};

static void expect_near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

static void expect_reason(const struct pl_ab_decision *d, const char *prefix)
{
    if (strncmp(d->reason, prefix, strlen(prefix)) != 0)
        fail_msg("reason \"%s\" does not start with \"%s\"", d->reason, prefix);
}

/* 100 held-out items, 40 -> 50 passes with b = 5, c = 15 (delta 0.10, McNemar p 0.0414), and
 * gn guardrail items that all pass under both prompts. */
static struct pl_ab_counts improving(long gn)
{
    return (struct pl_ab_counts){.n = 100,
                                 .base_k = 40,
                                 .cand_k = 50,
                                 .b = 5,
                                 .c = 15,
                                 .gn = gn,
                                 .gbase_k = gn,
                                 .gcand_k = gn};
}

static void test_no_rules_never_passes(void **state)
{
    (void)state;
    struct pl_ab_counts c = improving(100); /* passes every other gate */
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, false, &d);
    assert_false(d.passed);
    expect_reason(&d, "the project has no enabled eval rules");
}

static void test_no_held_out_items(void **state)
{
    (void)state;
    struct pl_ab_counts c = {.gn = 100, .gbase_k = 100, .gcand_k = 100};
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_false(d.passed);
    expect_reason(&d, "no held-out cluster traces to replay");
    expect_near(d.delta, 0.0, 0.0);
    expect_near(d.mcnemar_p, 1.0, 0.0);
}

static void test_delta_below_min_delta(void **state)
{
    (void)state;
    /* 1000 items, 500 -> 540 with c = 40, b = 0: overwhelming evidence (p = 2^-39) of a gain
     * of 0.04, which is below min_delta 0.05: the threshold is on the point delta, and it is
     * checked before McNemar. A failing guardrail is not reached either. */
    struct pl_ab_counts c = {.n = 1000,
                             .base_k = 500,
                             .cand_k = 540,
                             .b = 0,
                             .c = 40,
                             .gn = 10,
                             .gbase_k = 10,
                             .gcand_k = 0,
                             .gb = 10};
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_false(d.passed);
    expect_near(d.delta, 0.04, 1e-15);
    expect_near(d.mcnemar_p, ldexp(1.0, -39), 1e-20);
    expect_reason(&d, "delta 0.040 is below min_delta 0.050");
}

static void test_delta_equal_to_min_delta_is_enough(void **state)
{
    (void)state;
    /* 40 -> 50 of 100 is a delta of exactly 0.1; the difference of the rounded rates
     * 0.5 - 0.4 would be 0.09999999999999998. */
    struct pl_ab_counts c = improving(0);
    struct pl_ab_thresholds t = {0.1, 0.05, 0.03};
    struct pl_ab_decision d;
    pl_ab_decide(&c, &t, true, &d);
    assert_true(d.passed);
    expect_near(d.delta, 0.1, 0.0);
}

static void test_mcnemar_not_significant(void **state)
{
    (void)state;
    /* p = 0.041389 is not below alpha 0.04 (and is below 0.05: see test_all_gates_pass). */
    struct pl_ab_counts c = improving(100);
    struct pl_ab_thresholds t = {0.05, 0.04, 0.03};
    struct pl_ab_decision d;
    pl_ab_decide(&c, &t, true, &d);
    assert_false(d.passed);
    expect_near(d.delta, 0.1, 1e-15);
    expect_near(d.mcnemar_p, 43400.0 / 1048576.0, 1e-12);
    expect_reason(&d, "McNemar p = 0.04139 is not below alpha 0.04 (b=5, c=15)");
}

static void test_guardrail_not_non_inferior(void **state)
{
    (void)state;
    /* 40 guardrail items with no discordance cannot show a margin of 0.03. */
    struct pl_ab_counts c = improving(40);
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_false(d.passed);
    assert_true(d.guardrail_tested);
    assert_false(d.guardrail.passed);
    expect_near(d.guardrail.delta, 0.0, 0.0);
    expect_near(d.guardrail.z, sqrt(40 * 0.03 / 0.97), 1e-9);
    expect_near(d.guardrail.z, 1.112256, 1e-6);
    double z2 = Z95_ONE_SIDED * Z95_ONE_SIDED;
    expect_near(d.guardrail.lower, -z2 / (40 + z2), 1e-9);
    expect_reason(&d, "guardrail not shown non-inferior: 40/40 -> 40/40");
}

static void test_guardrail_broken(void **state)
{
    (void)state;
    /* A candidate that breaks 10 of 100 guardrail items (delta -0.10) fails however many
     * items there are. */
    struct pl_ab_counts c = improving(100);
    c.gcand_k = 90;
    c.gb = 10;
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_false(d.passed);
    expect_near(d.guardrail.delta, -0.1, 1e-15);
    assert_true(d.guardrail.lower < -0.1);
    assert_true(d.guardrail.z < 0);
    expect_reason(&d, "guardrail not shown non-inferior: 100/100 -> 90/100, delta -0.100");
}

static void test_all_gates_pass(void **state)
{
    (void)state;
    struct pl_ab_counts c = improving(100);
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_true(d.passed);
    expect_near(d.delta, 0.1, 1e-15);
    expect_near(d.mcnemar_p, 0.041389, 1e-6);
    assert_true(d.guardrail_tested);
    assert_true(d.guardrail.passed);
    expect_near(d.guardrail.z, sqrt(100 * 0.03 / 0.97), 1e-9);
    expect_near(d.guardrail.z, 1.758631, 1e-6);
    double z2 = Z95_ONE_SIDED * Z95_ONE_SIDED;
    expect_near(d.guardrail.lower, -z2 / (100 + z2), 1e-9);
    assert_true(d.guardrail.lower > -0.03);
    expect_reason(&d, "candidate passes 50/100 held-out failures vs 40/100 (delta 0.100");
    assert_non_null(strstr(d.reason, "guardrail 100/100 -> 100/100"));
}

static void test_no_guardrail_items_gate_not_applied(void **state)
{
    (void)state;
    struct pl_ab_counts c = improving(0);
    struct pl_ab_decision d;
    pl_ab_decide(&c, &defaults, true, &d);
    assert_true(d.passed);
    assert_false(d.guardrail_tested);
    assert_non_null(strstr(d.reason, "no guardrail traces, guardrail gate not applied"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_rules_never_passes),
        cmocka_unit_test(test_no_held_out_items),
        cmocka_unit_test(test_delta_below_min_delta),
        cmocka_unit_test(test_delta_equal_to_min_delta_is_enough),
        cmocka_unit_test(test_mcnemar_not_significant),
        cmocka_unit_test(test_guardrail_not_non_inferior),
        cmocka_unit_test(test_guardrail_broken),
        cmocka_unit_test(test_all_gates_pass),
        cmocka_unit_test(test_no_guardrail_items_gate_not_applied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
