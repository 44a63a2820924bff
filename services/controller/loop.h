/* The controller's work: the runtime control loop on failing traces (architecture §7).
 * For each trace the loop plans the next step from what is stored (common/control.h),
 * executes it and stores it as an action, until a remediation passes, a gate escalates, a
 * block, or no policy is left. Every step is read back from the database before the next one
 * is planned, so a replayed or redelivered failure, or a restarted controller, continues
 * where the stored steps end: a stored step is never executed again. */
#ifndef PL_CONTROLLER_LOOP_H
#define PL_CONTROLLER_LOOP_H

#include "llm.h"
#include "service.h"
#include "worker.h"

struct controller {
    struct pl_service *svc;
    struct pl_llm_client *llm;       /* the consumer's */
    struct pl_llm_client *sweep_llm; /* the sweeper's: a client runs one batch at a time */
};

/** @brief The pl.failures batch handler (pl_worker_run_batch); arg is the struct controller. */
enum pl_handle_result pl_controller_handle(struct pl_service *svc, struct pl_worker_item *items,
                                           size_t n, void *arg);

/**
 * @brief One sweep, by one replica at a time (an advisory lock): runs the actions kept
 *        `pending` while a kill switch was on, for tenants whose switch is off now, and goes
 *        on with their traces' loops; rejects escalations older than their project's
 *        hitl_timeout_s (reason `timeout`).
 */
void pl_controller_sweep(struct controller *c);

#endif
