/* Statistics for the A/B harness and the regression monitor (see stats.h). */
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

double pl_stats_normal_sf(double z)
{
    return 0.5 * erfc(z / M_SQRT2);
}

double pl_stats_normal_quantile(double p)
{
    if (!(p > 0.0 && p < 1.0))
        return NAN;
    double lo = -40.0, hi = 40.0; /* P(Z <= -40) underflows: every p in (0,1) is inside */
    for (int i = 0; i < 200 && hi - lo > 1e-12; i++) {
        double mid = 0.5 * (lo + hi);
        if (1.0 - pl_stats_normal_sf(mid) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* The continued fraction of I_x(a,b) / (x^a (1-x)^b / (a B(a,b))), evaluated by the modified
 * Lentz method; it converges fast for x < (a+1)/(a+b+2). */
static double betainc_fraction(double x, double a, double b)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny)
        d = tiny;
    d = 1.0 / d;
    double f = d;
    for (int m = 1; m < 1000000; m++) {
        double dm = (double)m;
        /* the even step d_{2m}, then the odd step d_{2m+1} */
        for (int odd = 0; odd < 2; odd++) {
            double num =
                odd ? -(a + dm) * (a + b + dm) * x / ((a + 2.0 * dm) * (a + 2.0 * dm + 1.0))
                    : dm * (b - dm) * x / ((a + 2.0 * dm - 1.0) * (a + 2.0 * dm));
            d = 1.0 + num * d;
            if (fabs(d) < tiny)
                d = tiny;
            c = 1.0 + num / c;
            if (fabs(c) < tiny)
                c = tiny;
            d = 1.0 / d;
            double step = c * d;
            f *= step;
            if (odd && fabs(step - 1.0) < 1e-15)
                return f;
        }
    }
    return f;
}

double pl_stats_betainc(double x, double a, double b)
{
    if (!(a > 0.0 && b > 0.0 && x >= 0.0 && x <= 1.0))
        return NAN;
    if (x == 0.0 || x == 1.0)
        return x;
    int sign;
    double log_front = a * log(x) + b * log1p(-x) -
                       (lgamma_r(a, &sign) + lgamma_r(b, &sign) - lgamma_r(a + b, &sign));
    if (x < (a + 1.0) / (a + b + 2.0))
        return exp(log_front) * betainc_fraction(x, a, b) / a;
    return 1.0 - exp(log_front) * betainc_fraction(1.0 - x, b, a) / b;
}

/* Shared argument handling of the two lower bounds: @returns false when they are 0. */
static bool bound_args(long *k, long n, double alpha)
{
    if (n <= 0 || !(alpha > 0.0 && alpha < 1.0))
        return false;
    if (*k > n)
        *k = n;
    return *k > 0;
}

/* The smallest p in [lo, hi] with above(p) true, for a predicate that is false below some
 * point and true above it; 100 halvings reach the double's resolution. */
static double bisect_lowest(double lo, double hi, bool (*above)(double p, const void *arg),
                            const void *arg)
{
    for (int i = 0; i < 100 && hi - lo > 1e-15; i++) {
        double mid = 0.5 * (lo + hi);
        if (above(mid, arg))
            hi = mid;
        else
            lo = mid;
    }
    return lo;
}

struct bound_arg {
    double k, n, log_level; /* log_level: log(alpha) for CP, log(1/alpha) for the CS */
};

/* CP: P(X >= k | p) = I_p(k, n-k+1) grows with p; the bound is where it reaches alpha. */
static bool cp_tail_reaches(double p, const void *arg)
{
    const struct bound_arg *a = arg;
    return log(pl_stats_betainc(p, a->k, a->n - a->k + 1.0)) >= a->log_level;
}

double pl_stats_cp_lower(long k, long n, double alpha)
{
    if (!bound_args(&k, n, alpha))
        return 0.0;
    if (k == n) /* closed form: p^n = alpha */
        return exp(log(alpha) / (double)n);
    struct bound_arg a = {(double)k, (double)n, log(alpha)};
    return bisect_lowest(0.0, (double)k / (double)n, cp_tail_reaches, &a);
}

/* log M_n(p) of the Beta(1/2,1/2) mixture: log B(k+1/2, n-k+1/2) - log B(1/2,1/2)
 * - k log p - (n-k) log(1-p). It falls as p rises towards k/n, where M_n <= 1. */
static bool cs_inside(double p, const void *arg)
{
    const struct bound_arg *a = arg;
    int sign;
    double f = a->n - a->k;
    double log_mix = lgamma_r(a->k + 0.5, &sign) + lgamma_r(f + 0.5, &sign) -
                     lgamma_r(a->n + 1.0, &sign) - log(M_PI);
    double log_lik = a->k * log(p) + (f > 0.0 ? f * log1p(-p) : 0.0);
    return log_mix - log_lik < a->log_level;
}

double pl_stats_cs_lower(long k, long n, double alpha)
{
    if (!bound_args(&k, n, alpha))
        return 0.0;
    struct bound_arg a = {(double)k, (double)n, -log(alpha)};
    return bisect_lowest(0.0, (double)k / (double)n, cs_inside, &a);
}

/* Tango's score statistic at delta0: the discordant probabilities q10 (only the baseline
 * passes) and q01 = q10 + delta0 maximise the likelihood under delta = delta0; q10 is the
 * positive root of 2n q^2 - B q - b delta0 (1 - delta0) = 0. */
static double tango_z(double b, double c, double n, double delta0)
{
    double m = n - b - c;
    double B = b * (1.0 - 3.0 * delta0) + c * (1.0 - delta0) - 2.0 * m * delta0;
    double disc = B * B + 8.0 * n * b * delta0 * (1.0 - delta0);
    double q10 = (B + sqrt(disc > 0.0 ? disc : 0.0)) / (4.0 * n);
    double var = (2.0 * q10 + delta0 - delta0 * delta0) / n;
    double diff = (c - b) / n - delta0;
    if (!(var > 0.0)) /* no discordance possible under delta0: only equality is no evidence */
        return diff > 0.0 ? INFINITY : (diff < 0.0 ? -INFINITY : 0.0);
    return diff / sqrt(var);
}

struct tango_arg {
    double b, c, n, z;
};

static bool tango_not_rejected(double delta0, const void *arg)
{
    const struct tango_arg *t = arg;
    return tango_z(t->b, t->c, t->n, delta0) <= t->z;
}

int pl_stats_noninferiority(long b, long c, long n, double margin, double alpha,
                            struct pl_stats_noninferiority *out)
{
    *out = (struct pl_stats_noninferiority){0};
    if (n <= 0 || b < 0 || c < 0 || b + c > n || !(margin >= 0.0 && margin < 1.0) ||
        !(alpha > 0.0 && alpha <= 0.5))
        return -1;
    double dn = (double)n, z = pl_stats_normal_quantile(1.0 - alpha);
    out->delta = ((double)c - (double)b) / dn;
    out->z = tango_z((double)b, (double)c, dn, -margin);
    struct tango_arg t = {(double)b, (double)c, dn, z};
    /* Z falls as delta0 rises: the bound is the delta0 where it comes down to z. */
    out->lower = bisect_lowest(-1.0 + 1e-12, out->delta, tango_not_rejected, &t);
    out->passed = out->z > z;
    return 0;
}

uint64_t pl_stats_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double pl_stats_rng_uniform(uint64_t *state)
{
    return (double)(pl_stats_rng_next(state) >> 11) * 0x1.0p-53;
}
