#include "stats.h"

#include <float.h>
#include <math.h>

void pl_stats_wilson(long k, long n, double *lo, double *hi)
{
    double l = 0.0, u = 1.0;
    if (n > 0) {
        if (k < 0)
            k = 0;
        if (k > n)
            k = n;
        double dn = (double)n;
        double p = (double)k / dn;
        double z2 = PL_STATS_Z95 * PL_STATS_Z95;
        double denom = 1.0 + z2 / dn;
        double centre = (p + z2 / (2.0 * dn)) / denom;
        double half = PL_STATS_Z95 / denom * sqrt(p * (1.0 - p) / dn + z2 / (4.0 * dn * dn));
        l = centre - half;
        u = centre + half;
        /* At 0/n and n/n the bound is exactly 0 or 1 in exact arithmetic; rounding would leave
         * 1e-17 or 0.9999999999999999, which reads as "not certain" in a report. */
        if (k == 0 || l < 0.0)
            l = 0.0;
        if (k == n || u > 1.0)
            u = 1.0;
    }
    if (lo)
        *lo = l;
    if (hi)
        *hi = u;
}

double pl_stats_mcnemar_exact(long b, long c)
{
    if (b < 0 || c < 0)
        return 1.0;
    /* In double so that b + c cannot overflow a long (counts below 2^53 convert exactly). */
    double n = (double)b + (double)c;
    double m = (double)(b < c ? b : c);
    /* With min(b,c) >= (b+c-1)/2 the lower tail holds at least half the mass (b == c, or
     * |b-c| == 1 where it is exactly half), so the doubled tail is >= 1. */
    if (n - 2.0 * m <= 1.0)
        return 1.0;

    /* P(X = m) in log space: 2^n and C(n,m) overflow a double from n = 1024 and ~1030 on,
     * their logs do not. lgamma_r because lgamma writes the global signgam (a data race). */
    int sign;
    double log_pm = lgamma_r(n + 1.0, &sign) - lgamma_r(m + 1.0, &sign) -
                    lgamma_r(n - m + 1.0, &sign) - n * M_LN2;

    /* The tail sum relative to P(X = m): t(i-1) = t(i) * i / (n - i + 1). Every term is at
     * most 1 and positive, so nothing overflows or cancels. The ratio r shrinks as i falls
     * (it is < 1 here since m < n/2), so the rest of the sum is at most t * r / (1 - r):
     * stop once that cannot change the sum, usually a few sqrt(n) terms below m. */
    double term = 1.0, sum = 1.0;
    for (double i = m; i > 0.0; i -= 1.0) {
        double r = i / (n - i + 1.0);
        term *= r;
        sum += term;
        if (term * r < sum * (1.0 - r) * (DBL_EPSILON / 4.0))
            break;
    }

    /* exp underflows to 0 for tails below ~1e-308, which is the right answer, never NaN. */
    double p = exp(M_LN2 + log_pm + log(sum));
    return p < 1.0 ? p : 1.0;
}

/* 0 < p1 < p0 < 1 and 0 < h < inf; written so that NaN fails every comparison. */
static bool cusum_params_ok(double p0, double p1, double h)
{
    return p1 > 0.0 && p1 < p0 && p0 < 1.0 && h > 0.0 && isfinite(h);
}

/* The log-likelihood ratios of the two outcomes. pl_stats_cusum_add and pl_stats_cusum_arl
 * both take them from here, so a simulated run and a live one add the very same doubles. */
static void cusum_weights(double p0, double p1, double *w_pass, double *w_fail)
{
    *w_pass = log(p1 / p0);
    *w_fail = log((1.0 - p1) / (1.0 - p0));
}

static double cusum_step(double s, double w)
{
    s += w;
    return s > 0.0 ? s : 0.0;
}

int pl_stats_cusum_init(struct pl_stats_cusum *c, double p0, double p1, double h)
{
    if (!c)
        return -1;
    *c = (struct pl_stats_cusum){0};
    if (!cusum_params_ok(p0, p1, h))
        return -1;
    c->p0 = p0;
    c->p1 = p1;
    c->h = h;
    return 0;
}

bool pl_stats_cusum_add(struct pl_stats_cusum *c, bool pass)
{
    /* A zeroed (failed init) CUSUM has no valid weights: log(0/0) would poison s with NaN. */
    if (!c || !cusum_params_ok(c->p0, c->p1, c->h))
        return false;
    double w_pass, w_fail;
    cusum_weights(c->p0, c->p1, &w_pass, &w_fail);
    c->s = cusum_step(c->s, pass ? w_pass : w_fail);
    c->n++;
    if (c->s >= c->h)
        c->alarmed = true;
    return c->alarmed;
}

/* splitmix64 (Steele, Lea, Flood 2014): a full-period 64-bit generator, any seed (0 too) is
 * fine, and it is the same on every platform, unlike rand(). */
static uint64_t splitmix64_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0,1) from the top 53 bits: u < p is then never true at p = 0, always at p = 1. */
static double splitmix64_uniform(uint64_t *state)
{
    return (double)(splitmix64_next(state) >> 11) * 0x1.0p-53;
}

double pl_stats_cusum_arl(double p0, double p1, double h, double p, int runs, long max_n,
                          uint64_t seed)
{
    if (!cusum_params_ok(p0, p1, h) || !(p >= 0.0 && p <= 1.0) || runs <= 0 || max_n <= 0)
        return -1.0;
    double w_pass, w_fail;
    cusum_weights(p0, p1, &w_pass, &w_fail);

    uint64_t state = seed;
    double total = 0.0; /* a sum of integers, exact up to 2^53 observations */
    for (int r = 0; r < runs; r++) {
        double s = 0.0;
        long n = 0;
        while (n < max_n) {
            n++;
            s = cusum_step(s, splitmix64_uniform(&state) < p ? w_pass : w_fail);
            if (s >= h)
                break;
        }
        total += (double)n;
    }
    return total / (double)runs;
}
