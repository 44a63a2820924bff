/* Unit tests for the A/B and monitor statistics (stats.h). The reference values were computed
 * independently in Python: exact integer and fraction arithmetic for McNemar, the binomial
 * tails and Clopper–Pearson bounds; Simpson integration of the Beta(1/2,1/2) mixture for the
 * confidence sequence; golden-section maximisation of the restricted likelihood for Tango's
 * score test. Small McNemar cases are also checked against Pascal's triangle, and betainc
 * against binomial tails summed here term by term. */
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

/* Deterministic pass/fail streams (xorshift64, independent of the splitmix64 in stats.c). */
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

/* ---- bounds --------------------------------------------------------------------------------- */

/* P(X >= k | n, p) summed term by term in long double: an independent check of betainc. */
static double binom_tail(long k, long n, double p)
{
    long double sum = 0.0L;
    for (long j = k; j <= n; j++) {
        long double c = 1.0L; /* C(n, j) */
        for (long i = 1; i <= j; i++)
            c = c * (long double)(n - j + i) / (long double)i;
        sum += c * powl(p, (long double)j) * powl(1.0L - p, (long double)(n - j));
    }
    return (double)sum;
}

static void test_betainc_matches_binomial_tail(void **state)
{
    (void)state;
    /* Python, exact fractions: P(X >= 4 | 10, 0.3) and P(X >= 45 | 50, 0.85) */
    expect_rel(pl_stats_betainc(0.3, 4, 7), 0.3503892816, 1e-9);
    expect_rel(pl_stats_betainc(0.85, 45, 6), 0.21935333540143837, 1e-11);
    static const long ns[] = {1, 7, 30, 120};
    static const double ps[] = {0.01, 0.2, 0.5, 0.77, 0.99};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 5; b++)
            for (long k = 1; k <= ns[a]; k += ns[a] / 7 + 1)
                expect_near(pl_stats_betainc(ps[b], (double)k, (double)(ns[a] - k + 1)),
                            binom_tail(k, ns[a], ps[b]), 1e-12);
    /* symmetry and the ends */
    expect_near(pl_stats_betainc(0.4, 3.5, 9.25) + pl_stats_betainc(0.6, 9.25, 3.5), 1.0, 1e-13);
    assert_true(pl_stats_betainc(0.0, 2, 3) == 0.0);
    assert_true(pl_stats_betainc(1.0, 2, 3) == 1.0);
    assert_true(isnan(pl_stats_betainc(0.5, 0, 3)));
    assert_true(isnan(pl_stats_betainc(1.5, 2, 3)));
    /* large arguments converge (a + b ~ 10^6) and stay inside [0,1] */
    double big = pl_stats_betainc(0.9, 900000, 100001);
    assert_true(big > 0.4 && big < 0.6);
}

static void test_cp_lower(void **state)
{
    (void)state;
    /* Python, bisection on the exact binomial tail in fractions */
    expect_near(pl_stats_cp_lower(45, 50, 0.025), 0.7818646335657977, 1e-9);
    expect_near(pl_stats_cp_lower(18, 20, 0.002), 0.5775502153986004, 1e-9);
    expect_near(pl_stats_cp_lower(3, 10, 0.05), 0.0872644339141503, 1e-9);
    /* the defining property at a larger n, through the independent tail sum */
    double lo = pl_stats_cp_lower(93, 110, 0.01);
    expect_near(binom_tail(93, 110, lo), 0.01, 1e-9);
    /* k == n: p^n = alpha; k == 0 and no data: 0 */
    expect_near(pl_stats_cp_lower(46, 46, 0.05), pow(0.05, 1.0 / 46.0), 1e-15);
    assert_true(pl_stats_cp_lower(0, 50, 0.05) == 0.0);
    assert_true(pl_stats_cp_lower(5, 0, 0.05) == 0.0);
    assert_true(pl_stats_cp_lower(5, 10, 0.0) == 0.0);
    assert_true(pl_stats_cp_lower(5, 10, NAN) == 0.0);
    /* more data, tighter; smaller alpha, wider */
    assert_true(pl_stats_cp_lower(900, 1000, 0.002) > pl_stats_cp_lower(90, 100, 0.002));
    assert_true(pl_stats_cp_lower(90, 100, 0.001) < pl_stats_cp_lower(90, 100, 0.01));
}

static void test_cs_lower(void **state)
{
    (void)state;
    /* Python: bisection on the mixture's closed form, whose log marginal was checked against
     * Simpson integration of the Beta(1/2,1/2) mixture (agreement 1e-13) */
    expect_near(pl_stats_cs_lower(90, 100, 0.002), 0.7318677225725357, 1e-9);
    expect_near(pl_stats_cs_lower(900, 1000, 0.002), 0.8526027318142146, 1e-9);
    /* time-uniform costs width: below the fixed-sample bound at the same n and alpha */
    for (long n = 20; n <= 20000; n *= 10)
        assert_true(pl_stats_cs_lower(n * 9 / 10, n, 0.002) <
                    pl_stats_cp_lower(n * 9 / 10, n, 0.002));
    assert_true(pl_stats_cs_lower(0, 10, 0.05) == 0.0);
    assert_true(pl_stats_cs_lower(3, -1, 0.05) == 0.0);
}

/* Coverage over a whole stream: the bound at alpha = 0.05 may exceed the true rate at some
 * point of a 2000-long stream in at most ~5 % of streams (Ville); the fixed-sample bound,
 * checked at every n, does far more often. */
static void test_cs_lower_time_uniform(void **state)
{
    (void)state;
    uint64_t rng = 99;
    int cs_crossed = 0, cp_crossed = 0;
    const int streams = 300;
    for (int s = 0; s < streams; s++) {
        long k = 0;
        bool cs = false, cp = false;
        for (long n = 1; n <= 2000; n++) {
            k += rng_pass(&rng, 0.8);
            if (n % 10 == 0) {
                cs = cs || pl_stats_cs_lower(k, n, 0.05) > 0.8;
                cp = cp || pl_stats_cp_lower(k, n, 0.05) > 0.8;
            }
        }
        cs_crossed += cs;
        cp_crossed += cp;
    }
    assert_true(cs_crossed <= streams * 5 / 100);
    assert_true(cp_crossed > 3 * cs_crossed && cp_crossed > streams * 15 / 100);
}

static void test_normal_quantile(void **state)
{
    (void)state;
    expect_near(pl_stats_normal_quantile(0.975), 1.959963984540054, 1e-9);
    expect_near(pl_stats_normal_quantile(0.95), 1.6448536269514722, 1e-9);
    expect_near(pl_stats_normal_quantile(0.5), 0.0, 1e-9);
    expect_near(pl_stats_normal_quantile(0.001), -3.090232306167813, 1e-9);
    assert_true(isnan(pl_stats_normal_quantile(0.0)));
    assert_true(isnan(pl_stats_normal_quantile(1.0)));
    expect_near(pl_stats_normal_sf(1.959963984540054), 0.025, 1e-12);
}

static void test_noninferiority(void **state)
{
    (void)state;
    struct pl_stats_noninferiority r;
    /* Python: the restricted likelihood maximised by golden-section search, not the closed
     * form used here */
    assert_int_equal(pl_stats_noninferiority(5, 3, 100, 0.03, 0.05, &r), 0);
    expect_near(r.z, 0.3482906180368054, 1e-6);
    expect_near(r.delta, -0.02, 1e-15);
    assert_false(r.passed);
    assert_int_equal(pl_stats_noninferiority(2, 0, 120, 0.03, 0.05, &r), 0);
    expect_near(r.z, 0.8562150654238823, 1e-6);
    assert_int_equal(pl_stats_noninferiority(10, 4, 80, 0.05, 0.05, &r), 0);
    expect_near(r.z, -0.5484085092392684, 1e-6);
    /* no discordance: z = sqrt(n m / (1 - m)) */
    assert_int_equal(pl_stats_noninferiority(0, 0, 100, 0.03, 0.05, &r), 0);
    expect_near(r.z, sqrt(100 * 0.03 / 0.97), 1e-9);
    assert_true(r.passed);
    assert_true(r.lower > -0.03 && r.lower < 0.0);
    assert_int_equal(pl_stats_noninferiority(0, 0, 40, 0.03, 0.05, &r), 0);
    assert_false(r.passed);
    /* the lower bound is where the score statistic equals z_(1-alpha), and agrees with the
     * decision: passed iff lower > -margin */
    assert_int_equal(pl_stats_noninferiority(3, 6, 150, 0.03, 0.05, &r), 0);
    struct pl_stats_noninferiority at;
    assert_int_equal(pl_stats_noninferiority(3, 6, 150, -r.lower, 0.05, &at), 0);
    expect_near(at.z, pl_stats_normal_quantile(0.95), 1e-6);
    for (long b = 0; b <= 12; b += 3)
        for (long c = 0; c <= 12; c += 4) {
            assert_int_equal(pl_stats_noninferiority(b, c, 120, 0.03, 0.05, &r), 0);
            assert_true(r.passed == (r.lower > -0.03 + 1e-9) || fabs(r.lower + 0.03) < 1e-6);
        }
    /* invalid input */
    assert_int_equal(pl_stats_noninferiority(5, 6, 10, 0.03, 0.05, &r), -1);
    assert_false(r.passed);
    assert_int_equal(pl_stats_noninferiority(0, 0, 0, 0.03, 0.05, &r), -1);
    assert_int_equal(pl_stats_noninferiority(-1, 0, 10, 0.03, 0.05, &r), -1);
    assert_int_equal(pl_stats_noninferiority(0, 0, 10, 1.0, 0.05, &r), -1);
    assert_int_equal(pl_stats_noninferiority(0, 0, 10, 0.03, 0.0, &r), -1);
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
        cmocka_unit_test(test_betainc_matches_binomial_tail),
        cmocka_unit_test(test_cp_lower),
        cmocka_unit_test(test_cs_lower),
        cmocka_unit_test(test_cs_lower_time_uniform),
        cmocka_unit_test(test_normal_quantile),
        cmocka_unit_test(test_noninferiority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
