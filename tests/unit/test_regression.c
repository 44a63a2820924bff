/* Unit tests for the monitor's sequential test (regression.h). The statistic is recomputed
 * here from its definition by brute force (for every restart point and alternative, the
 * product of the likelihood ratios since that point; then the weighted average), not by the
 * running sums regression.c keeps, with the bounds of stats.h, whose own values are checked
 * independently in test_stats.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "regression.h"
#include "stats.h"

#include <math.h>
#include <string.h>

static void expect_near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

static double alternative(double r, int j)
{
    double q = r - pl_regression_drops[j];
    return q < r / 10 ? r / 10 : q;
}

/* The statistic after the stream x[0..n) against the fixed reference r, by definition:
 * restart point 0 weighs 1/2, restart point k * BLOCK weighs 1/(2k(k+1)). */
static double log_e_brute(double r, const bool *x, long n)
{
    double total = 0.0;
    for (long s = 0; s < n || s == 0; s += PL_REGRESSION_BLOCK) {
        double k = (double)(s / PL_REGRESSION_BLOCK);
        double w = s == 0 ? 0.5 : 1.0 / (2.0 * k * (k + 1.0));
        for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++) {
            double q = alternative(r, j), lr = 1.0;
            for (long i = s; i < n; i++)
                lr *= x[i] ? q / r : (1 - q) / (1 - r);
            total += w * lr / PL_REGRESSION_ALTERNATIVES;
        }
    }
    return log(total);
}

/* A stream of `fails` failures then `passes` passes (order matters across restart points). */
static double log_e_by_hand(double r, long passes, long fails)
{
    bool x[4096];
    assert_true(passes + fails <= 4096);
    for (long i = 0; i < fails + passes; i++)
        x[i] = i >= fails;
    return log_e_brute(r, x, fails + passes);
}

static void test_init_and_split(void **state)
{
    (void)state;
    struct pl_regression t;
    assert_int_equal(pl_regression_init(&t, 0.01, 0.02, false, 5000, 4500), 0);
    expect_near(pl_regression_alpha_baseline(&t) + pl_regression_alpha_test(&t), 0.01, 1e-15);
    expect_near(pl_regression_baseline_lower(&t),
                pl_stats_cp_lower(4500, 5000, pl_regression_alpha_baseline(&t)), 0);
    expect_near(pl_regression_reference(&t), pl_regression_baseline_lower(&t) - 0.02, 1e-15);
    expect_near(pl_regression_threshold(&t), -log(0.008), 1e-12);
    /* before any trace only the ship's restart point has begun: half the weight, ratio 1 */
    expect_near(pl_regression_log_e(&t), log(0.5), 1e-15);
    assert_false(pl_regression_regressed(&t));
    assert_int_equal(pl_regression_init(&t, 0.0, 0.02, false, 10, 9), -1);
    assert_int_equal(pl_regression_init(&t, 1.0, 0.02, false, 10, 9), -1);
    assert_int_equal(pl_regression_init(&t, NAN, 0.02, false, 10, 9), -1);
    assert_int_equal(pl_regression_init(&t, 0.01, -0.1, false, 10, 9), -1);
    for (int i = 0; i < 1000; i++)
        pl_regression_add(&t, false);
    assert_false(pl_regression_regressed(&t)); /* an invalid test never rejects */
    /* a canary's baseline starts empty whatever is passed */
    assert_int_equal(pl_regression_init(&t, 0.01, 0.02, true, 5000, 4500), 0);
    assert_true(t.base_n == 0 && t.base_k == 0);
    expect_near(pl_regression_baseline_lower(&t), 0.0, 0);
}

static void test_statistic_by_hand(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, false, 1000, 900);
    double r = pl_regression_reference(&t);
    /* 350 traces: good, then a run of failures, so restart points 1..3 matter */
    bool x[350];
    uint64_t rng = 5;
    for (int i = 0; i < 350; i++)
        x[i] = pl_stats_rng_uniform(&rng) < (i < 200 ? 0.92 : 0.4);
    long k = 0;
    for (int i = 0; i < 350; i++) {
        pl_regression_add(&t, x[i]);
        k += x[i];
        if (i % 7 == 0 || i >= 195)
            expect_near(pl_regression_log_e(&t), log_e_brute(r, x, i + 1), 1e-9);
    }
    assert_int_equal(t.n, 350);
    assert_int_equal(t.k, k);
}

/* Rejects exactly when the hand-computed statistic first reaches log(1/alpha_test). */
static void test_rejects_at_threshold(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, false, 2000, 1800);
    double r = pl_regression_reference(&t), threshold = pl_regression_threshold(&t);
    long first = 0;
    for (long f = 1; f < 1000 && !first; f++)
        if (log_e_by_hand(r, 0, f) >= threshold)
            first = f;
    assert_true(first > 1);
    for (long f = 1; f < first; f++) {
        pl_regression_add(&t, false);
        assert_false(pl_regression_regressed(&t));
    }
    pl_regression_add(&t, false);
    assert_true(pl_regression_regressed(&t));
}

/* Passes at the baseline's rate never reject: each pass is evidence against every drop. */
static void test_good_version_never_rejects(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, false, 5000, 4500);
    for (int i = 0; i < 100000; i++) {
        pl_regression_add(&t, i % 10 != 0); /* 0.9, the baseline's rate */
        assert_false(pl_regression_regressed(&t));
    }
    /* only the newest restart points keep any weight: far below the threshold */
    assert_true(pl_regression_log_e(&t) < -10.0);
}

/* A version good for 3,000 traces that then fails every time is caught within a few dozen
 * traces of the drop (the restart points), not after its clean history is outweighed: the
 * ship's restart point alone would need over a thousand. */
static void test_late_drop_is_caught_quickly(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, false, 1000, 900);
    for (int i = 0; i < 3000; i++)
        pl_regression_add(&t, i % 10 != 0);
    double ship_only = t.log_lr[PL_REGRESSION_ALTERNATIVES - 1];
    int after = 0;
    while (!pl_regression_regressed(&t) && after < 5000) {
        pl_regression_add(&t, false);
        after++;
    }
    assert_true(after > 0 && after < 40);
    /* the ship's restart point alone is still far from the threshold */
    double per_fail = t.log_lr[PL_REGRESSION_ALTERNATIVES - 1] - ship_only;
    assert_true(ship_only + per_fail < pl_regression_threshold(&t) - 50.0);
}

/* Without baseline traces the reference is below 0: nothing can be a regression. */
static void test_no_baseline_no_decision(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, false, 0, 0);
    for (int i = 0; i < 5000; i++)
        pl_regression_add(&t, false);
    assert_false(pl_regression_regressed(&t));
    assert_true(pl_regression_log_e(&t) <= 0.0); /* every ratio stays 1 */
}

/* The state that is stored (counts and log_lr) restores to the same test: one pass over a
 * stream equals the same stream cut into pieces and restored between them. */
static void test_restore_continues_identically(void **state)
{
    (void)state;
    for (int canary = 0; canary < 2; canary++) {
        struct pl_regression whole, piece;
        pl_regression_init(&whole, 0.01, 0.02, canary, 3000, 2600);
        pl_regression_init(&piece, 0.01, 0.02, canary, 3000, 2600);
        uint64_t rng = 7;
        for (int i = 0; i < 5000; i++) {
            bool base = canary && pl_stats_rng_uniform(&rng) < 0.9;
            bool pass = pl_stats_rng_uniform(&rng) < (base ? 0.85 : 0.8);
            if (base) {
                pl_regression_add_baseline(&whole, pass);
                pl_regression_add_baseline(&piece, pass);
            } else {
                pl_regression_add(&whole, pass);
                pl_regression_add(&piece, pass);
            }
            if (i % 37 == 0) { /* store and load */
                struct pl_regression fresh;
                pl_regression_init(&fresh, 0.01, 0.02, canary, piece.base_n, piece.base_k);
                fresh.base_n = piece.base_n;
                fresh.base_k = piece.base_k;
                fresh.n = piece.n;
                fresh.k = piece.k;
                memcpy(fresh.log_lr, piece.log_lr, sizeof(fresh.log_lr));
                memcpy(fresh.log_c, piece.log_c, sizeof(fresh.log_c));
                piece = fresh;
            }
        }
        assert_memory_equal(whole.log_lr, piece.log_lr, sizeof(whole.log_lr));
        assert_memory_equal(whole.log_c, piece.log_c, sizeof(whole.log_c));
        assert_true(whole.n == piece.n && whole.base_n == piece.base_n);
    }
}

/* A canary's reference follows its growing baseline: each shipped trace is tested against
 * the reference of the baseline counts at that moment (the time-uniform bound). */
static void test_canary_reference_moves(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, true, 0, 0);
    for (int i = 0; i < 900; i++)
        pl_regression_add_baseline(&t, i % 10 != 0);
    double r1 = pl_regression_reference(&t);
    expect_near(r1, pl_stats_cs_lower(810, 900, pl_regression_alpha_baseline(&t)) - 0.02, 1e-15);
    pl_regression_add(&t, false);
    double after_one = log_e_by_hand(r1, 0, 1);
    expect_near(pl_regression_log_e(&t), after_one, 1e-12);
    for (int i = 0; i < 9000; i++)
        pl_regression_add_baseline(&t, i % 10 != 0);
    double r2 = pl_regression_reference(&t);
    assert_true(r2 > r1); /* more baseline data, a tighter bound */
    pl_regression_add(&t, false);
    /* the second failure is weighed against r2: sum over j of LR_j(r1) * LR_j(r2) */
    double sum = 0.0;
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++) {
        double q1 = alternative(r1, j), q2 = alternative(r2, j);
        sum += (1 - q1) / (1 - r1) * (1 - q2) / (1 - r2);
    }
    expect_near(pl_regression_log_e(&t), log(0.5 * sum / PL_REGRESSION_ALTERNATIVES), 1e-12);
    /* a fixed baseline ignores baseline observations */
    struct pl_regression f;
    pl_regression_init(&f, 0.01, 0.02, false, 100, 90);
    pl_regression_add_baseline(&f, false);
    assert_true(f.base_n == 100 && f.base_k == 90);
}

static void test_promotion_rule(void **state)
{
    (void)state;
    struct pl_regression t;
    pl_regression_init(&t, 0.01, 0.02, true, 0, 0);
    for (int i = 0; i < 4500; i++)
        pl_regression_add_baseline(&t, i % 10 != 0); /* 0.9 */
    for (int i = 0; i < 499; i++)
        pl_regression_add(&t, i % 10 != 0);
    assert_false(pl_regression_promotable(&t, 500)); /* one short */
    pl_regression_add(&t, true);
    assert_true(pl_regression_promotable(&t, 500));
    /* no baseline traffic yet: nothing to compare with, not promoted */
    struct pl_regression alone;
    pl_regression_init(&alone, 0.01, 0.02, true, 0, 0);
    for (int i = 0; i < 1000; i++)
        pl_regression_add(&alone, true);
    assert_false(pl_regression_promotable(&alone, 500));
    for (int i = 0; i < 499; i++)
        pl_regression_add_baseline(&alone, true);
    assert_false(pl_regression_promotable(&alone, 500));
    pl_regression_add_baseline(&alone, true);
    assert_true(pl_regression_promotable(&alone, 500));
    /* looks worse than the tolerance: not promoted, though not significant yet */
    pl_regression_init(&t, 0.01, 0.02, true, 0, 0);
    for (int i = 0; i < 4500; i++)
        pl_regression_add_baseline(&t, i % 10 != 0);
    for (int i = 0; i < 500; i++)
        pl_regression_add(&t, i % 100 >= 13); /* 0.87 < 0.9 - 0.02 */
    assert_false(pl_regression_regressed(&t));
    assert_false(pl_regression_promotable(&t, 500));
}

/* The error rate under the null, in miniature (bench/stats runs the full simulation): a
 * version exactly at the edge of "no regression" (baseline - tolerance) is rejected in at
 * most ~alpha of the streams. */
static void test_edge_of_null_rarely_rejected(void **state)
{
    (void)state;
    uint64_t rng = 2026;
    int rejected = 0;
    for (int s = 0; s < 200; s++) {
        struct pl_regression t;
        long k = 0;
        for (int i = 0; i < 2000; i++)
            k += pl_stats_rng_uniform(&rng) < 0.9;
        pl_regression_init(&t, 0.05, 0.02, false, 2000, k);
        for (int i = 0; i < 5000 && !pl_regression_regressed(&t); i++)
            pl_regression_add(&t, pl_stats_rng_uniform(&rng) < 0.88);
        rejected += pl_regression_regressed(&t);
    }
    assert_true(rejected <= 200 * 5 / 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_split),
        cmocka_unit_test(test_statistic_by_hand),
        cmocka_unit_test(test_rejects_at_threshold),
        cmocka_unit_test(test_good_version_never_rejects),
        cmocka_unit_test(test_late_drop_is_caught_quickly),
        cmocka_unit_test(test_no_baseline_no_decision),
        cmocka_unit_test(test_restore_continues_identically),
        cmocka_unit_test(test_canary_reference_moves),
        cmocka_unit_test(test_promotion_rule),
        cmocka_unit_test(test_edge_of_null_rarely_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
