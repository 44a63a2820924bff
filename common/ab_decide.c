/* The A/B decision as a pure function of the paired counts (see ab_decide.h). */
#include "ab_decide.h"

#include <stdio.h>
#include <string.h>

void pl_ab_decide(const struct pl_ab_counts *c, const struct pl_ab_thresholds *t, bool have_rules,
                  struct pl_ab_decision *out)
{
    memset(out, 0, sizeof(*out));
    /* One division of the exact count difference: the difference of two rounded rates can
     * fall just below a min_delta the counts meet exactly (40 -> 50 of 100 gave 0.0999...). */
    out->delta = c->n > 0 ? (double)(c->cand_k - c->base_k) / (double)c->n : 0.0;
    out->mcnemar_p = pl_stats_mcnemar_exact(c->b, c->c);
    out->guardrail_tested =
        c->gn > 0 && pl_stats_noninferiority(c->gb, c->gc, c->gn, t->guardrail_tolerance, t->alpha,
                                             &out->guardrail) == 0;
    const struct pl_stats_noninferiority *g = &out->guardrail;
    if (!have_rules)
        snprintf(out->reason, sizeof(out->reason),
                 "the project has no enabled eval rules to score with");
    else if (c->n == 0)
        snprintf(out->reason, sizeof(out->reason), "no held-out cluster traces to replay");
    else if (out->delta < t->min_delta)
        snprintf(out->reason, sizeof(out->reason), "delta %.3f is below min_delta %.3f", out->delta,
                 t->min_delta);
    else if (!(out->mcnemar_p < t->alpha))
        snprintf(out->reason, sizeof(out->reason),
                 "McNemar p = %.4g is not below alpha %.3g (b=%ld, c=%ld)", out->mcnemar_p,
                 t->alpha, c->b, c->c);
    else if (c->gn > 0 && !g->passed)
        snprintf(out->reason, sizeof(out->reason),
                 "guardrail not shown non-inferior: %ld/%ld -> %ld/%ld, delta %.3f, lower "
                 "bound %.3f is not above -%.3f (score z = %.2f, alpha %.3g)",
                 c->gbase_k, c->gn, c->gcand_k, c->gn, g->delta, g->lower, t->guardrail_tolerance,
                 g->z, t->alpha);
    else {
        out->passed = true;
        if (c->gn > 0)
            snprintf(out->reason, sizeof(out->reason),
                     "candidate passes %ld/%ld held-out failures vs %ld/%ld (delta %.3f, McNemar "
                     "p = %.4g); guardrail %ld/%ld -> %ld/%ld, lower bound %.3f > -%.3f",
                     c->cand_k, c->n, c->base_k, c->n, out->delta, out->mcnemar_p, c->gbase_k,
                     c->gn, c->gcand_k, c->gn, g->lower, t->guardrail_tolerance);
        else
            snprintf(out->reason, sizeof(out->reason),
                     "candidate passes %ld/%ld held-out failures vs %ld/%ld (delta %.3f, McNemar "
                     "p = %.4g); no guardrail traces, guardrail gate not applied",
                     c->cand_k, c->n, c->base_k, c->n, out->delta, out->mcnemar_p);
    }
}
