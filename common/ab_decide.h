/* The A/B harness's decision (architecture §7) as a pure function of the paired counts, so that the
 * harness and bench/stats run the very same rule.
 *
 * Held-out cluster items: the candidate passes iff
 *   - its point delta (candidate pass rate - baseline pass rate) is at least min_delta (a
 *     practical threshold on the observed improvement, not on a confidence bound), and
 *   - the exact two-sided McNemar p-value of the discordant pairs is below alpha.
 * Together they make a one-sided test at alpha / 2: with no true difference the A/B passes
 * at most alpha / 2 of the time (bench/stats measures it).
 * Guardrail items (passing traces of the same prompt): a one-sided paired non-inferiority
 * test (Tango's score test) at level alpha: the candidate must show that its guardrail pass
 * rate is not lower than the baseline's by guardrail_tolerance or more. A candidate worse by
 * the tolerance or more passes this gate at most alpha of the time. With no guardrail item the
 * gate is not applied (the report says so). */
#ifndef PL_AB_DECIDE_H
#define PL_AB_DECIDE_H

#include "stats.h"

#include <stdbool.h>
#include <stddef.h>

/** Paired outcomes: b = only the baseline passed, c = only the candidate passed. */
struct pl_ab_counts {
    long n, base_k, cand_k, b, c;      /**< held-out cluster items */
    long gn, gbase_k, gcand_k, gb, gc; /**< guardrail items */
};

struct pl_ab_thresholds {
    double min_delta, alpha, guardrail_tolerance;
};

struct pl_ab_decision {
    bool passed;
    double delta;     /**< candidate - baseline pass rate on the held-out items */
    double mcnemar_p; /**< exact two-sided */
    bool guardrail_tested;
    struct pl_stats_noninferiority guardrail; /**< delta, score z, lower bound, passed */
    char reason[512];
};

/**
 * @brief Decides. have_rules false (the project has no enabled eval rule) never passes.
 *        Fills every field of *out; the reason names the first gate that failed, or sums up
 *        the evidence when all passed.
 */
void pl_ab_decide(const struct pl_ab_counts *c, const struct pl_ab_thresholds *t, bool have_rules,
                  struct pl_ab_decision *out);

#endif
