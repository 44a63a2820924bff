/* Statistics for the A/B harness (SPEC §9) and the regression monitor (SPEC §10): Wilson
 * intervals for pass rates, the exact McNemar test on paired outcomes and a one-sided Bernoulli
 * CUSUM that detects a drop of the pass rate after ship.
 *
 * Everything here is pure computation: no allocation, no global state (lgamma_r, not lgamma,
 * so the harness may score arms on several threads), deterministic for a given input. */
#ifndef PL_STATS_H
#define PL_STATS_H

#include <stdbool.h>
#include <stdint.h>

/** z for a two-sided 95% interval: the 0.975 quantile of the standard normal. */
#define PL_STATS_Z95 1.959963984540054

/**
 * @brief Wilson score interval at 95% for k successes out of n trials, written to *lo and *hi
 *        (both clamped to [0,1]). n <= 0 gives [0,1] (no data, no information); k is clamped
 *        into [0,n]. Chosen over the normal (Wald) interval because it stays inside [0,1] and
 *        keeps its coverage at 0/n and n/n, which the small held-out sets hit often.
 */
void pl_stats_wilson(long k, long n, double *lo, double *hi);

/**
 * @brief Exact two-sided McNemar test on the discordant counts of a paired comparison (b and
 *        c: the pairs where only one arm passed, one count per arm; the test is symmetric, so
 *        which is which does not matter). It is the binomial test of min(b,c) successes in b+c
 *        trials with p = 0.5: @returns min(1, 2 * P(X <= min(b,c))), in [0,1], never NaN.
 *        b + c == 0 gives 1.0; a negative count is invalid and also gives 1.0 (no evidence,
 *        so nothing ships on a caller's bug). Computed in log space with a recursive tail sum:
 *        the relative error is below 1e-9 up to b + c = 10^5 (it grows slowly with b + c, from
 *        the cancellation between lgamma values); tails below ~1e-308 come back as 0. The cost
 *        is O(min(b,c)) at worst, O(sqrt(b+c)) in practice (the sum stops once its terms are
 *        negligible).
 */
double pl_stats_mcnemar_exact(long b, long c);

/**
 * One-sided Bernoulli CUSUM for a drop of a pass rate from p0 (in control) to p1 < p0 (out of
 * control). Each observation adds its log-likelihood ratio w = log(P1(x) / P0(x)): a pass adds
 * log(p1/p0) < 0, a failure adds log((1-p1)/(1-p0)) > 0, and S = max(0, S + w). The alarm is
 * raised when S >= h. It is the sequential test with the shortest detection delay for a given
 * false-alarm rate (Page, Moustakides), and needs no window: one double of state.
 * Fill it with pl_stats_cusum_init(); the fields are read-only for callers.
 */
struct pl_stats_cusum {
    double p0;    /**< in-control pass rate */
    double p1;    /**< out-of-control pass rate, p1 < p0 */
    double h;     /**< alarm threshold on s, in nats */
    double s;     /**< the CUSUM statistic, >= 0 */
    long n;       /**< observations added since init */
    bool alarmed; /**< sticky: set at the first s >= h, cleared only by init */
};

/**
 * @brief Starts a CUSUM at S = 0. @returns 0, or -1 (and zeroes *c, which then never alarms)
 *        unless 0 < p1 < p0 < 1 and 0 < h < infinity.
 */
int pl_stats_cusum_init(struct pl_stats_cusum *c, double p0, double p1, double h);

/**
 * @brief Adds one observation (pass or fail). @returns true once S has reached h at this or
 *        any earlier observation: the alarm stays raised (S and n keep being updated, for the
 *        record) until pl_stats_cusum_init() starts over. A CUSUM whose init failed returns
 *        false.
 */
bool pl_stats_cusum_add(struct pl_stats_cusum *c, bool pass);

/**
 * @brief Average run length (observations until the first alarm) of the CUSUM (p0, p1, h)
 *        when the true pass rate is p, estimated by Monte Carlo over `runs` runs. A run that
 *        has not alarmed after max_n observations counts as max_n, so the estimate is a lower
 *        bound when runs get capped. At p = p0 it is the mean time to a false alarm, at p = p1
 *        the mean detection delay: the pair is how h is chosen. The PRNG (splitmix64) is
 *        seeded with `seed`, so the same arguments always give the same value.
 *        @returns the mean, or -1.0 for invalid CUSUM parameters, p outside [0,1], runs <= 0
 *        or max_n <= 0.
 */
double pl_stats_cusum_arl(double p0, double p1, double h, double p, int runs, long max_n,
                          uint64_t seed);

#endif
