/* The detector's stage logic: a batch of pl.traces messages becomes stored traces, eval
 * results, failure signatures, clusters and (at the threshold) pl.clusters events. */
#ifndef PL_DETECT_H
#define PL_DETECT_H

#include "worker.h"

/** @brief Batch handler for pl_worker_run_batch (arg unused). */
enum pl_handle_result detect_batch(struct pl_service *svc, struct pl_worker_item *items, size_t n,
                                   void *arg);

#endif
