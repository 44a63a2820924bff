/* The monitor's stage logic (architecture §7): after a prompt version ships, every live trace that
 * names that version is scored with the project's eval rules and fed to a per-deployment
 * rolling window (regression_metric) and to the sequential test of common/regression.h
 * against the version it replaced: that version's pre-ship live traces, or during a canary
 * its traces served concurrently. A regression moves the deployment monitoring → regressed
 * and, when the project has auto_rollback_enabled, rolls it back (the base version is live
 * again). A canary that meets its promotion rule is promoted to 100 % (monitoring →
 * monitoring, system:canary_promote).
 *
 * State lives in PostgreSQL (monitor_observations, one row per scored trace received after
 * the ship; monitor_state, the test), advanced in the transaction that inserts the
 * observations: a replayed trace inserts nothing and changes nothing, and a restart
 * continues from what was committed. */
#ifndef PL_MONITOR_WATCH_H
#define PL_MONITOR_WATCH_H

#include "service.h"
#include "worker.h"

/**
 * @brief Handles a batch of pl.traces and pl.deployments messages (in one consumer group):
 *        `shipped` events start monitoring; traces of watched versions are scored; alarms
 *        are acted on.
 */
enum pl_handle_result pl_monitor_batch(struct pl_service *svc, struct pl_worker_item *items,
                                       size_t n, void *arg);

/**
 * @brief Acts on every regressed deployment still `monitoring` (→ regressed), every
 *        `regressed` one whose project allows auto-rollback (→ rolled_back), and every canary
 *        whose test allows promotion (→ 100 %). Also run on its own after a restart, so a crash
 *        between a decision and its transition is repaired.
 * @returns 0, or -1 on a database error (err filled).
 */
int pl_monitor_act_on_alarms(struct pl_service *svc, PGconn *conn, struct pl_pg_error *err);

#endif
