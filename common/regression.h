/* The monitor's regression test (architecture §7): is the shipped version worse, on live traffic,
 * than the version it replaced, by more than a tolerance?
 *
 * H0: p_shipped >= p_baseline - tolerance (no regression) against H1: p_shipped below that.
 * The decision holds over an unbounded horizon: P(a version in H0 is ever declared regressed,
 * however long it is watched) <= alpha. alpha is split in two:
 *
 *  - alpha_baseline = alpha / 5 for a lower bound L on the baseline's pass rate: exact
 *    (Clopper–Pearson) when the baseline is a fixed sample taken before the ship, time-uniform
 *    (a confidence sequence) when it grows with concurrent canary traffic.
 *  - alpha_test = 4 alpha / 5 for a one-sided mixture SPRT of the shipped version's passes
 *    against the reference r = L - tolerance. Each alternative q_j = r - d_j (a grid of drops)
 *    contributes the likelihood ratio prod (q_j/r)^pass ((1-q_j)/(1-r))^fail of the traces
 *    after a restart point s; the statistic averages them over the alternatives and over the
 *    restart points with weights that sum to 1: half at the ship (s = 0), half spread over
 *    every PL_REGRESSION_BLOCK-th trace (w_k = 1/(2k(k+1)) at s = k * BLOCK), so a drop that
 *    starts long after the ship is judged on the traces since then, not diluted by the clean
 *    history. Under any p_shipped >= r every term is a nonnegative supermartingale (1 before
 *    its restart point), and so is their weighted average, which starts at 1; Ville's
 *    inequality bounds P(it ever reaches 1/alpha_test) by alpha_test (Wald 1945; Robbins
 *    1970; Johari, Koomen, Pekelis, Walsh 2017/2022 "Always valid inference"; Shin, Ramdas,
 *    Rinaldo 2023 "E-detectors"; Ramdas et al. 2023 "Game-theoretic statistics and safe
 *    anytime-valid inference"). When L <= p_baseline (probability >= 1 - alpha_baseline), H0
 *    puts p_shipped >= r, so the union bound gives alpha in all.
 *
 * r is recomputed before each observation of the shipped version from the baseline counts at
 * that moment (a predictable reference), so the outcome depends on the order of observations
 * only, never on how they were batched. Pure computation, no allocation. */
#ifndef PL_REGRESSION_H
#define PL_REGRESSION_H

#include <stdbool.h>

/** Number of alternatives in the mixture (drops below the reference, see regression.c). */
#define PL_REGRESSION_ALTERNATIVES 8

/** The drops d_j below the reference the mixture's alternatives sit at (q_j = r - d_j, but
 *  never below r / 10). */
extern const double pl_regression_drops[PL_REGRESSION_ALTERNATIVES];

/** Traces of the shipped version between two restart points of the statistic. */
#define PL_REGRESSION_BLOCK 100

/** Share of alpha spent on the baseline's bound; the rest goes to the sequential test. */
#define PL_REGRESSION_BASELINE_SHARE 0.2

/**
 * The test's state. base_n, base_k, n, k, log_lr and log_c are the state to store and restore
 * (set them after pl_regression_init); the rest is derived and may be left as init set it.
 */
struct pl_regression {
    double alpha, tolerance;
    bool canary;         /**< the baseline grows with concurrent traffic (time-uniform bound) */
    long base_n, base_k; /**< baseline observations and passes */
    long n, k;           /**< shipped version's observations and passes */
    double log_lr[PL_REGRESSION_ALTERNATIVES]; /**< log-likelihood ratio since the ship */
    /** log of sum over restart points s so far of w_s exp(-log_lr at s), per alternative:
     *  the statistic is the average over j of exp(log_lr[j] + log_c[j]) */
    double log_c[PL_REGRESSION_ALTERNATIVES];
    /* derived: the reference for the baseline counts it was computed from */
    long ref_n, ref_k;
    double ref;
    double w_pass[PL_REGRESSION_ALTERNATIVES], w_fail[PL_REGRESSION_ALTERNATIVES];
};

/**
 * @brief Starts a test with no observation of the shipped version. A fixed baseline (canary
 *        false) is base_k passes of base_n traces; a canary's starts empty and grows through
 *        pl_regression_add_baseline (base_n and base_k are then ignored).
 * @returns 0, or -1 unless 0 < alpha < 1 and 0 <= tolerance < 1 (the test then never
 *          rejects).
 */
int pl_regression_init(struct pl_regression *t, double alpha, double tolerance, bool canary,
                       long base_n, long base_k);

/** @brief A baseline observation (canary only: a fixed baseline ignores it). */
void pl_regression_add_baseline(struct pl_regression *t, bool pass);

/** @brief An observation of the shipped version. */
void pl_regression_add(struct pl_regression *t, bool pass);

/** @brief The baseline's lower bound L at alpha_baseline (0 without baseline traces). */
double pl_regression_baseline_lower(const struct pl_regression *t);

/** @brief The reference r = L - tolerance the next observation would be tested against. */
double pl_regression_reference(const struct pl_regression *t);

/** @brief log of the mixture's likelihood ratio (the e-value): 0 at the start. */
double pl_regression_log_e(const struct pl_regression *t);

/** @brief log(1 / alpha_test): the statistic's rejection threshold. */
double pl_regression_threshold(const struct pl_regression *t);

/** @brief alpha_baseline and alpha_test (they add up to alpha). */
double pl_regression_alpha_baseline(const struct pl_regression *t);
double pl_regression_alpha_test(const struct pl_regression *t);

/** @brief True when the statistic has reached its threshold: a regression. */
bool pl_regression_regressed(const struct pl_regression *t);

/**
 * @brief The canary's promotion rule: at least min_samples traces of the shipped version and
 *        at least as many of the baseline, no regression, and an observed pass rate not below
 *        the baseline's by more than the tolerance (so a canary that looks worse, or that has
 *        nothing to be compared with yet, keeps collecting evidence instead).
 */
bool pl_regression_promotable(const struct pl_regression *t, long min_samples);

#endif
