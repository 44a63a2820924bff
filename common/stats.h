/* Statistics for the A/B harness (architecture §7) and the regression monitor (architecture §7):
 * Wilson intervals for pass rates, the exact McNemar test and a paired non-inferiority test on the
 * A/B's paired outcomes, and the exact and time-uniform rate bounds the monitor's sequential
 * test is built from (common/regression.h).
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

/** @brief The standard normal's upper tail P(Z > z). */
double pl_stats_normal_sf(double z);

/**
 * @brief The standard normal's quantile: z with P(Z <= z) = p, for 0 < p < 1 (bisection on
 *        erfc to 1e-12; NaN outside (0,1)).
 */
double pl_stats_normal_quantile(double p);

/**
 * @brief The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0,1]
 *        (NaN otherwise): the binomial tail P(X >= k | n, p) is I_p(k, n - k + 1). Lentz's
 *        continued fraction, on the side of the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) where it
 *        converges fast; relative error ~1e-13, a few hundred terms for a + b ~ 10^6.
 */
double pl_stats_betainc(double x, double a, double b);

/**
 * @brief The exact (Clopper–Pearson) one-sided lower confidence bound for a binomial rate
 *        from k successes in a fixed number n of trials: P(bound > p) <= alpha for every true
 *        p. It is the p at which P(X >= k | n, p) = alpha (0 when k == 0). Valid for a sample
 *        whose size was fixed before it was looked at, not for one that keeps growing (use
 *        pl_stats_cs_lower then). k is clamped into [0,n]; n <= 0 or alpha outside (0,1)
 *        gives 0 (no information).
 */
double pl_stats_cp_lower(long k, long n, double alpha);

/**
 * @brief Time-uniform lower bound of a Bernoulli rate from k successes in the first n of a
 *        stream: P(the bound ever exceeds p, at any n) <= alpha. It is the lower end of the
 *        confidence sequence {p : M_n(p) < 1/alpha}, M_n the Beta(1/2,1/2) mixture of the
 *        likelihood ratios against p, a nonnegative martingale under p, so Ville's inequality
 *        bounds the chance it ever reaches 1/alpha (Robbins 1970; Howard, Ramdas, McAuliffe,
 *        Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences").
 *        Same clamping as pl_stats_cp_lower.
 */
double pl_stats_cs_lower(long k, long n, double alpha);

/**
 * Paired non-inferiority (Tango's score test, Tango 1998, Stat Med 17:891): n pairs, b where
 * only the first arm (baseline) passed, c where only the second (candidate) passed. The
 * difference is delta = p_candidate - p_baseline = (c - b) / n; the test of
 * H0: delta <= -margin against H1: delta > -margin uses the score statistic with the
 * discordant probabilities estimated under H0 (restricted maximum likelihood), which keeps
 * its size near alpha with few discordant pairs, where a Wald test does not.
 */
struct pl_stats_noninferiority {
    double delta; /**< observed (c - b) / n */
    double z;     /**< score statistic at delta0 = -margin; larger favours non-inferiority */
    double lower; /**< one-sided lower confidence bound of delta at the given alpha */
    bool passed;  /**< z > z_(1-alpha), i.e. lower > -margin */
};

/**
 * @brief Runs the test at one-sided level alpha. @returns 0, or -1 (and *out zeroed, passed
 *        false) when n <= 0, b or c is negative, b + c > n, margin is outside [0,1) or alpha
 *        outside (0, 0.5].
 */
int pl_stats_noninferiority(long b, long c, long n, double margin, double alpha,
                            struct pl_stats_noninferiority *out);

/**
 * @brief splitmix64 (Steele, Lea, Flood 2014): the simulations' PRNG, the same on every
 *        platform; any seed (0 too) is fine. @returns the next 64 bits and advances *state.
 */
uint64_t pl_stats_rng_next(uint64_t *state);

/** @brief Uniform in [0,1) from the top 53 bits (u < p never holds at p = 0, always at 1). */
double pl_stats_rng_uniform(uint64_t *state);

#endif
