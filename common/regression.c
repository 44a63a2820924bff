/* The monitor's regression test (see regression.h). */
#include "regression.h"

#include "stats.h"

#include <math.h>
#include <string.h>

/* The drops below the reference that the mixture bets on, spaced roughly geometrically from
 * half a point to a quarter: each is as likely a priori, so a drop near any of them is found
 * about as fast as by an SPRT tuned to it, at the price of log(8) ~ 2.1 nats of evidence. */
const double pl_regression_drops[PL_REGRESSION_ALTERNATIVES] = {
    0.005, 0.01, 0.02, 0.035, 0.06, 0.1, 0.16, 0.25,
};

static bool regression_valid(const struct pl_regression *t)
{
    return t->alpha > 0.0 && t->alpha < 1.0 && t->tolerance >= 0.0 && t->tolerance < 1.0;
}

int pl_regression_init(struct pl_regression *t, double alpha, double tolerance, bool canary,
                       long base_n, long base_k)
{
    memset(t, 0, sizeof(*t));
    t->alpha = alpha;
    t->tolerance = tolerance;
    t->canary = canary;
    if (!canary && base_n > 0) {
        t->base_n = base_n;
        t->base_k = base_k < 0 ? 0 : (base_k > base_n ? base_n : base_k);
    }
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++)
        t->log_c[j] = log(0.5); /* the ship's restart point, where log_lr is 0 */
    t->ref_n = -1;              /* nothing computed yet */
    return regression_valid(t) ? 0 : -1;
}

double pl_regression_alpha_baseline(const struct pl_regression *t)
{
    return t->alpha * PL_REGRESSION_BASELINE_SHARE;
}

double pl_regression_alpha_test(const struct pl_regression *t)
{
    return t->alpha * (1.0 - PL_REGRESSION_BASELINE_SHARE);
}

double pl_regression_baseline_lower(const struct pl_regression *t)
{
    double a = pl_regression_alpha_baseline(t);
    return t->canary ? pl_stats_cs_lower(t->base_k, t->base_n, a)
                     : pl_stats_cp_lower(t->base_k, t->base_n, a);
}

double pl_regression_reference(const struct pl_regression *t)
{
    return pl_regression_baseline_lower(t) - t->tolerance;
}

/* Brings the reference and the per-alternative weights up to date with the baseline counts;
 * a bisection, so only when those counts changed. */
static void regression_refresh(struct pl_regression *t)
{
    if (t->ref_n == t->base_n && t->ref_k == t->base_k)
        return;
    t->ref_n = t->base_n;
    t->ref_k = t->base_k;
    t->ref = pl_regression_reference(t);
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++) {
        if (!(t->ref > 0.0)) { /* nothing lies below a reference of 0: no evidence either way */
            t->w_pass[j] = t->w_fail[j] = 0.0;
            continue;
        }
        /* never at or below 0: a tenth of the reference at the least */
        double q = t->ref - pl_regression_drops[j];
        if (q < t->ref * 0.1)
            q = t->ref * 0.1;
        t->w_pass[j] = log(q / t->ref);
        t->w_fail[j] = log1p(-q) - log1p(-t->ref);
    }
}

void pl_regression_add_baseline(struct pl_regression *t, bool pass)
{
    if (!t->canary)
        return;
    t->base_n++;
    t->base_k += pass;
}

/* log(exp(a) + exp(b)) without overflow */
static double log_add(double a, double b)
{
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log1p(exp(lo - hi));
}

void pl_regression_add(struct pl_regression *t, bool pass)
{
    if (t->n > 0 && t->n % PL_REGRESSION_BLOCK == 0) {
        /* the k-th restart point: weight 1/(2k(k+1)), the weights after the ship's sum to 1/2 */
        double k = (double)(t->n / PL_REGRESSION_BLOCK);
        double log_w = -log(2.0 * k * (k + 1.0));
        for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++)
            t->log_c[j] = log_add(t->log_c[j], log_w - t->log_lr[j]);
    }
    t->n++;
    t->k += pass;
    if (!regression_valid(t))
        return;
    regression_refresh(t);
    const double *w = pass ? t->w_pass : t->w_fail;
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++)
        t->log_lr[j] += w[j];
}

double pl_regression_log_e(const struct pl_regression *t)
{
    double max = t->log_lr[0] + t->log_c[0];
    for (int j = 1; j < PL_REGRESSION_ALTERNATIVES; j++)
        if (t->log_lr[j] + t->log_c[j] > max)
            max = t->log_lr[j] + t->log_c[j];
    double sum = 0.0;
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++)
        sum += exp(t->log_lr[j] + t->log_c[j] - max);
    return max + log(sum / PL_REGRESSION_ALTERNATIVES);
}

double pl_regression_threshold(const struct pl_regression *t)
{
    return -log(pl_regression_alpha_test(t));
}

bool pl_regression_regressed(const struct pl_regression *t)
{
    if (!regression_valid(t))
        return false;
    double threshold = pl_regression_threshold(t);
    /* the average is at most the largest term: most calls end here without an exp */
    for (int j = 0; j < PL_REGRESSION_ALTERNATIVES; j++)
        if (t->log_lr[j] + t->log_c[j] >= threshold)
            return pl_regression_log_e(t) >= threshold;
    return false;
}

bool pl_regression_promotable(const struct pl_regression *t, long min_samples)
{
    /* no comparison without a baseline: a canary whose replaced version gets no traffic
     * waits (an owner can roll it back) rather than being promoted untested */
    if (t->n < min_samples || t->n <= 0 || t->base_n < min_samples || pl_regression_regressed(t))
        return false;
    double shipped = (double)t->k / (double)t->n;
    double base = t->base_n > 0 ? (double)t->base_k / (double)t->base_n : 0.0;
    return shipped >= base - t->tolerance;
}
