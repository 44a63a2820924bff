/* Unit tests for the A/B and monitor statistics (stats.h). The reference values were computed
 * independently in Python with exact integer arithmetic (math.comb sums over 2^n as Decimal),
 * small McNemar cases are also checked against Pascal's triangle, and the CUSUM's failure-run
 * length against its closed form ceil(h / log((1-p1)/(1-p0))). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "stats.h"

#include <math.h>
#include <stdbool.h>

static void expect_near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tol);
}

static void expect_rel(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want)))
        fail_msg("got %.17g, want %.17g (relative tolerance %g)", got, want, rel);
}

static void expect_wilson(long k, long n, double want_lo, double want_hi, double tol)
{
    double lo = -1.0, hi = -1.0;
    pl_stats_wilson(k, n, &lo, &hi);
    if (!(fabs(lo - want_lo) <= tol && fabs(hi - want_hi) <= tol))
        fail_msg("wilson(%ld, %ld) = [%.17g, %.17g], want [%.17g, %.17g]", k, n, lo, hi, want_lo,
                 want_hi);
}

/* Deterministic pass/fail streams for the CUSUM tests (xorshift64, independent of the
 * splitmix64 inside stats.c). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static bool rng_pass(uint64_t *s, double p)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53 < p;
}

/* ---- Wilson -------------------------------------------------------------------------------- */

static void test_wilson_known_values(void **state)
{
    (void)state;
    expect_wilson(45, 50, 0.786, 0.957, 5e-4);
    expect_wilson(45, 50, 0.7863976856252035, 0.9565242350681096, 1e-12);
    expect_wilson(40, 80, 0.3929741508611972, 0.6070258491388028, 1e-12);
    expect_wilson(1, 2, 0.09453120573423074, 0.9054687942657693, 1e-12);
    /* Symmetric around 1/2: k and n - k mirror each other. */
    double lo1, hi1, lo2, hi2;
    pl_stats_wilson(7, 31, &lo1, &hi1);
    pl_stats_wilson(24, 31, &lo2, &hi2);
    expect_near(lo1, 1.0 - hi2, 1e-12);
    expect_near(hi1, 1.0 - lo2, 1e-12);
}

static void test_wilson_edges(void **state)
{
    (void)state;
    double lo, hi;
    pl_stats_wilson(0, 30, &lo, &hi);
    assert_true(lo == 0.0);
    expect_near(hi, 0.11351339317396876, 1e-12);
    expect_near(hi, 0.114, 5e-4);
    pl_stats_wilson(30, 30, &lo, &hi);
    assert_true(hi == 1.0);
    expect_near(lo, 0.8864866068260312, 1e-12);
    expect_near(lo, 0.886, 5e-4);
    /* No data: the whole range. */
    pl_stats_wilson(0, 0, &lo, &hi);
    assert_true(lo == 0.0 && hi == 1.0);
    pl_stats_wilson(3, -5, &lo, &hi);
    assert_true(lo == 0.0 && hi == 1.0);
    /* k outside [0,n] is clamped. */
    expect_wilson(-3, 30, 0.0, 0.11351339317396876, 1e-12);
    expect_wilson(31, 30, 0.8864866068260312, 1.0, 1e-12);
    /* Every interval lies in [0,1] and holds k/n. */
    for (long n = 1; n <= 60; n++) {
        for (long k = 0; k <= n; k++) {
            pl_stats_wilson(k, n, &lo, &hi);
            double p = (double)k / (double)n;
            if (!(lo >= 0.0 && lo <= p && p <= hi && hi <= 1.0))
                fail_msg("wilson(%ld, %ld) = [%g, %g]", k, n, lo, hi);
        }
    }
    /* NULL outputs are allowed (a caller wanting one bound). */
    pl_stats_wilson(5, 10, NULL, &hi);
    pl_stats_wilson(5, 10, &lo, NULL);
    expect_near(lo, 1.0 - hi, 1e-12);
}

/* ---- McNemar ------------------------------------------------------------------------------- */

static void test_mcnemar_known_values(void **state)
{
    (void)state;
    expect_near(pl_stats_mcnemar_exact(15, 5), 0.0414, 1e-4);
    expect_rel(pl_stats_mcnemar_exact(15, 5), 0.04138946533203125, 1e-12);
    assert_true(pl_stats_mcnemar_exact(0, 10) == 0.001953125);
    assert_true(pl_stats_mcnemar_exact(10, 0) == 0.001953125);
    expect_rel(pl_stats_mcnemar_exact(100, 130), 0.055613577781392386, 1e-10);
    /* No discordant pairs, equal counts, or counts one apart: no evidence. */
    assert_true(pl_stats_mcnemar_exact(0, 0) == 1.0);
    assert_true(pl_stats_mcnemar_exact(10, 10) == 1.0);
    assert_true(pl_stats_mcnemar_exact(5000, 5000) == 1.0);
    assert_true(pl_stats_mcnemar_exact(1, 0) == 1.0);
    assert_true(pl_stats_mcnemar_exact(3, 4) == 1.0);
    /* Negative counts are a caller's bug: never "significant". */
    assert_true(pl_stats_mcnemar_exact(-1, 10) == 1.0);
    assert_true(pl_stats_mcnemar_exact(10, -1) == 1.0);
}

static void test_mcnemar_large(void **state)
{
    (void)state;
    expect_rel(pl_stats_mcnemar_exact(5000, 5200), 0.04878796312682245, 1e-9);
    expect_rel(pl_stats_mcnemar_exact(50000, 50500), 0.11547629006868125, 1e-8);
    expect_rel(pl_stats_mcnemar_exact(49000, 51000), 2.588716038346898e-10, 1e-8);
    expect_rel(pl_stats_mcnemar_exact(45000, 55000), 8.600341645714696e-220, 1e-8);
    /* 2 * 0.5^100000 underflows: 0, never NaN or negative. */
    double p = pl_stats_mcnemar_exact(0, 100000);
    assert_false(isnan(p));
    assert_true(p == 0.0);
    p = pl_stats_mcnemar_exact(100000, 100001);
    assert_true(p == 1.0);
}

static void test_mcnemar_matches_pascal(void **state)
{
    (void)state;
    /* Binomial coefficients up to n = 50 are exact in a double (C(50,25) < 2^53). */
    static double row[51]; /* row n of the triangle, zeros beyond it */
    row[0] = 1.0;
    for (int n = 0; n <= 50; n++) {
        for (int i = n; i > 0; i--)
            row[i] += row[i - 1];
        for (int b = 0; b <= n; b++) {
            int c = n - b, m = b < c ? b : c;
            double tail = 0.0;
            for (int i = 0; i <= m; i++)
                tail += row[i];
            double want = fmin(1.0, 2.0 * tail / ldexp(1.0, n));
            double got = pl_stats_mcnemar_exact(b, c);
            if (!(fabs(got - want) <= 1e-12 * want))
                fail_msg("mcnemar(%d, %d) = %.17g, want %.17g", b, c, got, want);
        }
    }
}

static void test_mcnemar_symmetry(void **state)
{
    (void)state;
    for (long b = 0; b <= 120; b += 3) {
        for (long c = 0; c <= 120; c += 7) {
            double p = pl_stats_mcnemar_exact(b, c);
            assert_true(p == pl_stats_mcnemar_exact(c, b));
            assert_true(p >= 0.0 && p <= 1.0);
        }
    }
    assert_true(pl_stats_mcnemar_exact(5000, 5200) == pl_stats_mcnemar_exact(5200, 5000));
    /* More lopsided with the same total: a smaller p-value. */
    double prev = 1.0;
    for (long b = 100; b >= 0; b -= 5) {
        double p = pl_stats_mcnemar_exact(b, 200 - b);
        assert_true(p <= prev);
        prev = p;
    }
}

/* ---- CUSUM --------------------------------------------------------------------------------- */

static void test_cusum_init_rejects(void **state)
{
    (void)state;
    struct pl_stats_cusum c;
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 4.0), 0);
    assert_true(c.p0 == 0.9 && c.p1 == 0.7 && c.h == 4.0);
    assert_true(c.s == 0.0 && c.n == 0 && !c.alarmed);

    assert_int_equal(pl_stats_cusum_init(&c, 0.7, 0.9, 4.0), -1);  /* p1 > p0 */
    assert_int_equal(pl_stats_cusum_init(&c, 0.7, 0.7, 4.0), -1);  /* p1 == p0 */
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.0, 4.0), -1);  /* p1 == 0 */
    assert_int_equal(pl_stats_cusum_init(&c, 1.0, 0.7, 4.0), -1);  /* p0 == 1 */
    assert_int_equal(pl_stats_cusum_init(&c, 1.5, 0.7, 4.0), -1);  /* p0 > 1 */
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, -0.1, 4.0), -1); /* p1 < 0 */
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 0.0), -1);  /* h == 0 */
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, -1.0), -1); /* h < 0 */
    assert_int_equal(pl_stats_cusum_init(&c, NAN, 0.7, 4.0), -1);
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, NAN, 4.0), -1);
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, NAN), -1);
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, INFINITY), -1);
    assert_int_equal(pl_stats_cusum_init(NULL, 0.9, 0.7, 4.0), -1);

    /* A CUSUM whose init failed never alarms and its state stays clean (no NaN). */
    for (int i = 0; i < 100; i++)
        assert_false(pl_stats_cusum_add(&c, false));
    assert_true(c.s == 0.0 && !c.alarmed);
    assert_false(pl_stats_cusum_add(NULL, false));
}

static void test_cusum_all_pass_never_alarms(void **state)
{
    (void)state;
    struct pl_stats_cusum c;
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 4.0), 0);
    for (int i = 0; i < 100000; i++)
        assert_false(pl_stats_cusum_add(&c, true));
    assert_true(c.s == 0.0);
    assert_int_equal(c.n, 100000);
    assert_false(c.alarmed);
}

static void test_cusum_failures_alarm_at_formula(void **state)
{
    (void)state;
    const double cases[][3] = {
        {0.9, 0.7, 4.0}, {0.9, 0.7, 3.0}, {0.9, 0.7, 5.0}, {0.95, 0.8, 5.0}, {0.8, 0.5, 2.5},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        double p0 = cases[k][0], p1 = cases[k][1], h = cases[k][2];
        long want = (long)ceil(h / log((1.0 - p1) / (1.0 - p0)));
        struct pl_stats_cusum c;
        assert_int_equal(pl_stats_cusum_init(&c, p0, p1, h), 0);
        long n = 0;
        bool alarm = false;
        while (!alarm && n < 1000) {
            alarm = pl_stats_cusum_add(&c, false);
            n++;
        }
        if (n != want)
            fail_msg("p0=%g p1=%g h=%g: alarm after %ld failures, want %ld", p0, p1, h, n, want);
        assert_true(c.alarmed);
        assert_int_equal(c.n, want);
        /* Sticky: passes bring S down but the alarm stays until init. */
        for (int i = 0; i < 50; i++)
            assert_true(pl_stats_cusum_add(&c, true));
        assert_true(c.s < h);
        assert_int_equal(pl_stats_cusum_init(&c, p0, p1, h), 0);
        assert_false(c.alarmed);
        assert_false(pl_stats_cusum_add(&c, true));
    }
    /* With p0=0.9, p1=0.7, h=4: log 3 per failure, so the 4th failure (S = 4.39) alarms. */
    struct pl_stats_cusum c;
    assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 4.0), 0);
    for (int i = 0; i < 3; i++)
        assert_false(pl_stats_cusum_add(&c, false));
    expect_near(c.s, 3.0 * log(3.0), 1e-12);
    assert_true(pl_stats_cusum_add(&c, false));
}

static void test_cusum_detects_drop(void **state)
{
    (void)state;
    /* At the out-of-control rate every stream must alarm well before 500 observations (the
     * mean delay is ~23); at the in-control rate the same streams mostly stay quiet that long. */
    long quiet = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ULL;
        struct pl_stats_cusum c;
        assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 4.0), 0);
        long n = 0;
        while (n < 500 && !pl_stats_cusum_add(&c, rng_pass(&s, 0.7)))
            n++;
        if (n >= 500)
            fail_msg("seed %llu: no alarm in 500 observations at p1", (unsigned long long)seed);

        s = seed * 0x9e3779b97f4a7c15ULL;
        assert_int_equal(pl_stats_cusum_init(&c, 0.9, 0.7, 4.0), 0);
        n = 0;
        while (n < 500 && !pl_stats_cusum_add(&c, rng_pass(&s, 0.9)))
            n++;
        if (n >= 500)
            quiet++;
    }
    assert_true(quiet >= 5);
}

static void test_cusum_arl(void **state)
{
    (void)state;
    const long max_n = 1000000;
    double in = pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.9, 2000, max_n, 42);
    double out = pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.7, 2000, max_n, 42);
    print_message("ARL p0=0.9 p1=0.7 h=4: in control %.1f, out of control %.2f\n", in, out);
    assert_true(in > 100.0);
    assert_true(in > 10.0 * out);
    assert_true(out > 4.0 && out < 50.0); /* at least ceil(4 / log 3) = 4 */
    /* A larger h trades detection delay for fewer false alarms. */
    double in5 = pl_stats_cusum_arl(0.9, 0.7, 5.0, 0.9, 2000, max_n, 42);
    double out5 = pl_stats_cusum_arl(0.9, 0.7, 5.0, 0.7, 2000, max_n, 42);
    assert_true(in5 > in && out5 > out);
    /* Deterministic for a seed. */
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.7, 500, max_n, 7) ==
                pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.7, 500, max_n, 7));
}

static void test_cusum_arl_edges(void **state)
{
    (void)state;
    /* p = 1: no run ever alarms, each counts as max_n. p = 0: the closed-form failure run. */
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 1.0, 10, 1000, 1) == 1000.0);
    double want = ceil(4.0 / log(3.0));
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.0, 10, 1000, 1) == want);
    /* Capped runs make the estimate a lower bound, never more than max_n. */
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.9, 100, 50, 1) <= 50.0);
    /* Invalid arguments. */
    assert_true(pl_stats_cusum_arl(0.7, 0.9, 4.0, 0.9, 10, 1000, 1) == -1.0);
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 0.0, 0.9, 10, 1000, 1) == -1.0);
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 1.5, 10, 1000, 1) == -1.0);
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, NAN, 10, 1000, 1) == -1.0);
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.9, 0, 1000, 1) == -1.0);
    assert_true(pl_stats_cusum_arl(0.9, 0.7, 4.0, 0.9, 10, 0, 1) == -1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson_known_values),
        cmocka_unit_test(test_wilson_edges),
        cmocka_unit_test(test_mcnemar_known_values),
        cmocka_unit_test(test_mcnemar_large),
        cmocka_unit_test(test_mcnemar_matches_pascal),
        cmocka_unit_test(test_mcnemar_symmetry),
        cmocka_unit_test(test_cusum_init_rejects),
        cmocka_unit_test(test_cusum_all_pass_never_alarms),
        cmocka_unit_test(test_cusum_failures_alarm_at_formula),
        cmocka_unit_test(test_cusum_detects_drop),
        cmocka_unit_test(test_cusum_arl),
        cmocka_unit_test(test_cusum_arl_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
