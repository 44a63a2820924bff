/* The A/B harness's stage logic (architecture §7): replays a held-out set under the current and the
 * candidate system prompt, scores both with the project's eval rules, decides with paired
 * statistics, and autoships when the project allows.
 *
 * Exactly one harness runs a deployment's A/B at a time: it holds a PostgreSQL session
 * advisory lock on the deployment id for the whole run. A harness that dies loses its
 * connection and with it the lock, so another (or the restarted one) can resume the
 * `ab_running` row; the decision itself is a guarded transition, so it happens once. */
#ifndef PL_ABHARNESS_REPLAY_H
#define PL_ABHARNESS_REPLAY_H

#include "llm.h"
#include "service.h"
#include "worker.h"

#include <json-c/json.h>
#include <stdbool.h>

/**
 * @brief Handles one pl.deployments event: `proposed` starts an A/B, `ab_passed` autoships
 *        when the project has prompt_autoship_enabled; other moves are ignored.
 */
enum pl_handle_result pl_ab_handle_event(struct pl_service *svc, struct pl_llm_client *llm,
                                         json_object *ev, char *reason, size_t reasonsz);

/**
 * @brief Resumes `ab_running` deployments nobody is running: all of them (startup), or
 *        those untouched for abharness.resume_after_ms. @returns how many it decided.
 */
int pl_ab_resume_orphans(struct pl_service *svc, struct pl_llm_client *llm, bool startup);

#endif
