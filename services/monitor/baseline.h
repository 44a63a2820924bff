/* The pre-ship baseline of a shipped deployment (architecture §7): the live pass rate of the
 * version it replaced, from the newest traces of that version the detector stored before the ship,
 * scored now with the project's eval rules, the same way the monitor scores live traces. */
#ifndef PL_MONITOR_BASELINE_H
#define PL_MONITOR_BASELINE_H

#include "eval_rule_store.h"
#include "pg.h"

#include <json-c/json.h>
#include <stdbool.h>

/**
 * @brief A live trace passes when it has no error, no span error, and passes every enabled
 *        rule of the project. trace is the trace object of a pl.traces envelope.
 */
bool pl_monitor_trace_passes(const struct pl_rule_set *rules, json_object *trace);

/**
 * @brief Counts the passes among the newest `limit` traces of deployment_id's base version
 *        received before its shipped_at. @returns 0 with *n and *k filled (0 and 0 when the
 *        deployment has no base version or the version has no stored trace), -1 with err.
 */
int pl_monitor_baseline_count(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              const struct pl_rule_set *rules, long limit, long *n, long *k,
                              struct pl_pg_error *err);

#endif
