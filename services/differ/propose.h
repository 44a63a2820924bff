/* The differ's stage logic (architecture §7): from a cluster event to a `proposed` deployment.
 * Gathers the cluster's prompt, its live version and representative traces, asks the LLM
 * to diagnose and edit the system prompt, validates the reply, and creates the deployment
 * through pl_deploy_create (one open deployment per project and signature; a replayed event
 * creates nothing). */
#ifndef PL_DIFFER_PROPOSE_H
#define PL_DIFFER_PROPOSE_H

#include "llm.h"
#include "service.h"
#include "worker.h"

#include <json-c/json.h>

/**
 * @brief Handles one pl.clusters event (already schema-checked for its uuids).
 * @returns PL_HANDLED (proposed, or nothing to do, or gave up on the LLM's replies),
 *          PL_HANDLE_DLQ (event fields unusable) or PL_HANDLE_RETRY (database or LLM
 *          transport failure), with reason filled when not PL_HANDLED.
 */
enum pl_handle_result pl_differ_handle_event(struct pl_service *svc, struct pl_llm_client *llm,
                                             json_object *ev, char *reason, size_t reasonsz);

/**
 * @brief Checks an LLM reply to the meta-prompt: a JSON object with a non-empty
 *        proposed_prompt of at most max_bytes that differs from current (whitespace at the
 *        ends ignored) and an optional string rationale (diagnosis folded in).
 * @returns 0 with *prompt and *rationale (caller frees), -1 with the reason in why.
 */
int pl_differ_check_reply(const char *reply, const char *current, size_t max_bytes, char **prompt,
                          char **rationale, char *why, size_t whysz);

#endif
