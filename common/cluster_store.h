/* SQL for what the detector writes: traces, failure_clusters, cluster_members, and the
 * pl.clusters event of a cluster that reaches its project's threshold. */
#ifndef PL_CLUSTER_STORE_H
#define PL_CLUSTER_STORE_H

#include "pg.h"
#include "template.h"

/** The columns, in order, of each COPY text row given to pl_cluster_store_batch. */
#define PL_CLUSTER_STORE_TRACE_COLUMNS                                                             \
    "tenant_id, project_id, id, external_id, name, model, input, output, error, spans, events,"    \
    " tags, metadata, latency_ms, cost, eval, eval_scores, prompt_name, prompt_version,"           \
    " created_at, received_at, eval_rules_version"

/** One failure of a batch: a trace that errored or failed a rule, and its signature. */
struct pl_cluster_failure {
    const char *tenant_id, *project_id, *trace_id; /* borrowed from the batch */
    const char *seen_at;                           /* ISO-8601 UTC, borrowed */
    char signature[PL_SIGNATURE_SIZE];
    char error_type[160];
    char template[1024];
    size_t tag; /* the caller's own reference (the detector: its entry); not used here */
};

/**
 * @brief Stores one batch in the caller's open transaction, idempotently (a replayed batch
 *        changes nothing):
 *        - traces_copy: the traces as COPY text rows (see PL_CLUSTER_STORE_TRACE_COLUMNS);
 *          traces already stored (same project and id) are left as they are;
 *        - failures (sorted here): clusters are created or widened (first/last seen), members
 *          added once, counts raised by the new members only;
 *        - a cluster whose count first reaches cluster_min_size gets one event on
 *          clusters_topic through the outbox.
 * @returns the number of threshold events written, or -1 with err filled.
 */
int pl_cluster_store_batch(PGconn *conn, const char *traces_copy, size_t traces_len,
                           struct pl_cluster_failure *failures, size_t nfailures,
                           int grouping_version, const char *clusters_topic,
                           struct pl_pg_error *err);

/**
 * @brief Publishes the batch's failing traces for the controller, in the caller's open
 *        transaction: one event on failures_topic through the outbox per trace of a project
 *        with an active policy rolled out to some traces, once per trace ever
 *        (control_failures), so a replayed batch publishes nothing again.
 * @returns the number of events written, or -1 with err filled.
 */
int pl_cluster_store_publish_failures(PGconn *conn, const struct pl_cluster_failure *failures,
                                      size_t nfailures, const char *failures_topic,
                                      struct pl_pg_error *err);

/**
 * @brief The API body {clusters:[{id, signature, error_message, error_type, count, first_seen,
 *        last_seen, project_id, status, trend_24h, deployment_id, deployment_status,
 *        sample_ids}], next_offset} for a tenant, newest first (by last_seen); project_id,
 *        status and from/to (ISO timestamps on last_seen) filter when not NULL.
 * @returns JSON text (caller frees), or NULL with err.
 */
char *pl_cluster_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                            const char *status, const char *from, const char *to, long long limit,
                            long long offset, struct pl_pg_error *err);

/**
 * @brief One cluster as listed, plus its newest 20 member traces (samples) and every
 *        deployment proposed for it, into *json (caller frees).
 * @returns 1 found, 0 not, -1 with err.
 */
int pl_cluster_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                         struct pl_pg_error *err);

/**
 * @brief Sets a cluster's triage status (new, acknowledged, resolved) with an audit entry by
 *        actor (none when it already has it). *json is the cluster afterwards.
 * @returns 1 done, 0 not found, -1 with err.
 */
int pl_cluster_store_set_status(PGconn *conn, const char *tenant_id, const char *id,
                                const char *status, const char *actor, char **json,
                                struct pl_pg_error *err);

#endif
