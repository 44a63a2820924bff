/* The detector's stage logic: a batch of pl.traces messages becomes stored traces, eval
 * results, failure signatures, clusters and (at the threshold) pl.clusters events. */
#ifndef PL_DETECT_H
#define PL_DETECT_H

#include "backfill.h"
#include "evaluate.h"
#include "worker.h"

/* What the stages share: the tenants' costly-rule time (may be NULL) and, in a backfill, its
 * range (NULL for the live group). */
struct detect_context {
    struct pl_eval_ledger *ledger;
    const struct pl_backfill *backfill;
};

/* The detector as pl_worker_stages (arg: a struct detect_context):
 * prepare parses, checks and evaluates a batch under the eval budgets; store writes it in one
 * transaction; release frees what prepare made. */
void *detect_prepare(struct pl_service *svc, struct pl_worker_item *items, size_t n, void *arg);
enum pl_handle_result detect_store(struct pl_service *svc, void *state, void *arg);
void detect_release(void *state);

#endif
