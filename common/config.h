/* Service configuration: built-in defaults, then a libconfig file, then PL_<SECTION>_<KEY>
 * environment overrides (12-factor). Every value is type- and range-checked. */
#ifndef PL_CONFIG_H
#define PL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct pl_config {
    char log_level[16];

    char http_bind[64];
    int http_port;
    int http_threads;
    int http_max_body_bytes;
    int http_per_ip_limit;     /* open connections from one client address; 0: no limit */
    int http_max_connections;  /* open connections in all (lowered to the open-file limit) */
    int http_timeout_s;        /* an idle connection is closed after this long */
    int http_max_header_bytes; /* request line and headers; larger get 431 (414: the URI) */

    char pg_dsn[1024];
    int pg_pool_size;

    char kafka_brokers[512];
    char kafka_group_id[128];
    int kafka_session_timeout_ms;
    int kafka_delivery_timeout_ms;
    char kafka_topic_traces[128];
    char kafka_topic_clusters[128];
    char kafka_topic_deployments[128];
    char kafka_topic_dlq[128];
    char kafka_topic_actions[128];
    char kafka_topic_failures[128];
    char kafka_topic_audit[128]; /* the audit chains' heads, published outside PostgreSQL */

    bool outbox_relay;
    int outbox_poll_ms;
    int outbox_batch;

    /* The LLM endpoint (OpenAI-compatible chat completions), for differ, abharness, controller
     * and the api's execute route. */
    char llm_base_url[512];
    char llm_api_key[512];
    char llm_model[128];
    int llm_timeout_ms; /* one attempt */
    int llm_connect_timeout_ms;
    int llm_budget_ms; /* one call, all attempts and waits included */
    int llm_max_attempts;
    int llm_backoff_ms; /* first retry delay; doubles per attempt, with jitter */
    int llm_backoff_max_ms;
    int llm_max_concurrency;
    int llm_max_reply_bytes;
    int llm_price_prompt_microusd_per_mtok; /* for cost accounting: 150000 = $0.15 per 1M */
    int llm_price_completion_microusd_per_mtok;

    int differ_max_examples;     /* failing traces shown to the LLM */
    int differ_max_prompt_bytes; /* a longer proposal is refused */
    int differ_proposal_attempts;

    int abharness_resume_after_ms;    /* an ab_running row untouched this long is orphaned */
    int abharness_resume_interval_ms; /* how often to look for orphans */

    int ui_session_ttl_s;  /* a dashboard session's lifetime */
    bool ui_cookie_secure; /* mark the session cookie Secure (the dashboard is served over TLS) */
    char ui_proxy_header[64];     /* the user-name header a trusted auth proxy sets; "" disables */
    char ui_proxy_addresses[512]; /* comma-separated IPs the proxy header is accepted from */

    int controller_batch;             /* failing traces handled together (LLM calls overlap) */
    int controller_sweep_interval_ms; /* how often to resume kept actions and time out escalations
                                       */

    int eval_max_rules_per_project; /* eval rules a project may have (POST beyond: 422) */
    int eval_trace_budget_ms;       /* one trace's rules in the detector; 0: unbounded */
    int eval_tenant_budget_ms;      /* costly-rule time per tenant per window; 0: unbounded */
    int eval_tenant_window_ms;

    /* The audit chain's HMAC key, held outside the database: the value (better: the
     * PL_AUDIT_KEY environment variable) or a file holding it (a mounted Secret). */
    char audit_key[512];
    char audit_key_file[512];
    int audit_publish_interval_s; /* how often the heads are published; 0: never */

    char detector_backfill[64]; /* run as this backfill (pl-admin replay), not the live group */
};

/** @brief Fills defaults for a service ("api", "detector", ...): its port and group id. */
void pl_config_defaults(struct pl_config *cfg, const char *service);

/**
 * @brief Sets one setting from text, as an environment variable would.
 * @returns 0, or -1 with a message naming the setting in err (unknown setting, bad type,
 *          out of range).
 */
int pl_config_set(struct pl_config *cfg, const char *section, const char *key, const char *value,
                  char *err, size_t errsz);

/**
 * @brief Applies the file at path (NULL: none), then the process environment.
 * @returns 0, or -1 with the file, line and setting named in err.
 */
int pl_config_load(struct pl_config *cfg, const char *path, char *err, size_t errsz);

/**
 * @brief Parses `--config FILE` from argv (the only flag services take) and loads.
 * @returns 0; -1 with err set on a bad flag or config.
 */
int pl_config_from_args(struct pl_config *cfg, const char *service, int argc, char **argv,
                        char *err, size_t errsz);

#endif
