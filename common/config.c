/* Configuration: defaults, the libconfig file, PL_<SECTION>_<KEY> overrides, one table. */
#include "config.h"

#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL };

/* One row per setting: the single source of names, types, limits and env names. */
struct config_field {
    const char *section;
    const char *key;
    enum config_type type;
    size_t offset;
    size_t size;         /* strings: buffer size */
    long min, max;       /* ints: inclusive range; strings: min length */
    const char *choices; /* strings: "a|b|c" or NULL */
};

#define STR(sec, k, field, minlen, ch)                                                             \
    {                                                                                              \
        sec, k, CONFIG_STRING, offsetof(struct pl_config, field),                                  \
            sizeof(((struct pl_config *)0)->field), minlen, 0, ch                                  \
    }
#define INT(sec, k, field, lo, hi)                                                                 \
    {                                                                                              \
        sec, k, CONFIG_INT, offsetof(struct pl_config, field), sizeof(int), lo, hi, NULL           \
    }
#define BOOL(sec, k, field)                                                                        \
    {                                                                                              \
        sec, k, CONFIG_BOOL, offsetof(struct pl_config, field), sizeof(bool), 0, 1, NULL           \
    }

static const struct config_field config_fields[] = {
    STR("log", "level", log_level, 1, "debug|info|warn|error"),
    STR("http", "bind", http_bind, 1, NULL),
    INT("http", "port", http_port, 0, 65535),
    INT("http", "threads", http_threads, 1, 64),
    INT("http", "max_body_bytes", http_max_body_bytes, 1024, 64 * 1024 * 1024),
    INT("http", "per_ip_limit", http_per_ip_limit, 0, 1000000),
    INT("http", "max_connections", http_max_connections, 16, 1000000),
    INT("http", "timeout_s", http_timeout_s, 1, 3600),
    INT("http", "max_header_bytes", http_max_header_bytes, 1024, 1024 * 1024),
    STR("pg", "dsn", pg_dsn, 1, NULL),
    INT("pg", "pool_size", pg_pool_size, 1, 64),
    STR("kafka", "brokers", kafka_brokers, 1, NULL),
    STR("kafka", "group_id", kafka_group_id, 0, NULL),
    INT("kafka", "session_timeout_ms", kafka_session_timeout_ms, 1000, 300000),
    INT("kafka", "delivery_timeout_ms", kafka_delivery_timeout_ms, 1000, 300000),
    STR("kafka", "topic_traces", kafka_topic_traces, 1, NULL),
    STR("kafka", "topic_clusters", kafka_topic_clusters, 1, NULL),
    STR("kafka", "topic_deployments", kafka_topic_deployments, 1, NULL),
    STR("kafka", "topic_dlq", kafka_topic_dlq, 1, NULL),
    STR("kafka", "topic_actions", kafka_topic_actions, 1, NULL),
    STR("kafka", "topic_failures", kafka_topic_failures, 1, NULL),
    STR("kafka", "topic_audit", kafka_topic_audit, 1, NULL),
    BOOL("outbox", "relay", outbox_relay),
    INT("outbox", "poll_ms", outbox_poll_ms, 10, 60000),
    INT("outbox", "batch", outbox_batch, 1, 10000),
    STR("llm", "base_url", llm_base_url, 1, NULL),
    STR("llm", "api_key", llm_api_key, 0, NULL),
    STR("llm", "model", llm_model, 1, NULL),
    INT("llm", "timeout_ms", llm_timeout_ms, 10, 600000),
    INT("llm", "connect_timeout_ms", llm_connect_timeout_ms, 10, 60000),
    INT("llm", "budget_ms", llm_budget_ms, 10, 3600000),
    INT("llm", "max_attempts", llm_max_attempts, 1, 20),
    INT("llm", "backoff_ms", llm_backoff_ms, 1, 60000),
    INT("llm", "backoff_max_ms", llm_backoff_max_ms, 1, 600000),
    INT("llm", "max_concurrency", llm_max_concurrency, 1, 256),
    INT("llm", "max_reply_bytes", llm_max_reply_bytes, 1024, 64 * 1024 * 1024),
    INT("llm", "price_prompt_microusd_per_mtok", llm_price_prompt_microusd_per_mtok, 0, 1000000000),
    INT("llm", "price_completion_microusd_per_mtok", llm_price_completion_microusd_per_mtok, 0,
        1000000000),
    INT("differ", "max_examples", differ_max_examples, 1, 50),
    INT("differ", "max_prompt_bytes", differ_max_prompt_bytes, 64, 1024 * 1024),
    INT("differ", "proposal_attempts", differ_proposal_attempts, 1, 10),
    INT("abharness", "resume_after_ms", abharness_resume_after_ms, 0, 86400000),
    INT("abharness", "resume_interval_ms", abharness_resume_interval_ms, 100, 3600000),
    INT("ui", "session_ttl_s", ui_session_ttl_s, 60, 2592000),
    BOOL("ui", "cookie_secure", ui_cookie_secure),
    STR("ui", "proxy_header", ui_proxy_header, 0, NULL),
    STR("ui", "proxy_addresses", ui_proxy_addresses, 0, NULL),
    INT("controller", "batch", controller_batch, 1, 1000),
    INT("controller", "sweep_interval_ms", controller_sweep_interval_ms, 50, 3600000),
    INT("eval", "max_rules_per_project", eval_max_rules_per_project, 1, 10000),
    INT("eval", "trace_budget_ms", eval_trace_budget_ms, 0, 600000),
    INT("eval", "tenant_budget_ms", eval_tenant_budget_ms, 0, 3600000),
    INT("eval", "tenant_window_ms", eval_tenant_window_ms, 100, 3600000),
    STR("audit", "key", audit_key, 0, NULL),
    STR("audit", "key_file", audit_key_file, 0, NULL),
    INT("audit", "publish_interval_s", audit_publish_interval_s, 0, 86400),
    STR("detector", "backfill", detector_backfill, 0, NULL),
};
#define CONFIG_NFIELDS (sizeof(config_fields) / sizeof(config_fields[0]))

static const struct config_field *config_find(const char *section, const char *key)
{
    for (size_t i = 0; i < CONFIG_NFIELDS; i++)
        if (strcmp(config_fields[i].section, section) == 0 &&
            strcmp(config_fields[i].key, key) == 0)
            return &config_fields[i];
    return NULL;
}

static bool config_section_known(const char *section)
{
    for (size_t i = 0; i < CONFIG_NFIELDS; i++)
        if (strcmp(config_fields[i].section, section) == 0)
            return true;
    return false;
}

static bool config_choice_ok(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, value, len) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static int config_store_string(struct pl_config *cfg, const struct config_field *f,
                               const char *value, char *err, size_t errsz)
{
    size_t len = strlen(value);
    if (len >= f->size) {
        snprintf(err, errsz, "%s.%s: value longer than %zu characters", f->section, f->key,
                 f->size - 1);
        return -1;
    }
    if ((long)len < f->min) {
        snprintf(err, errsz, "%s.%s: must not be empty", f->section, f->key);
        return -1;
    }
    if (f->choices && !config_choice_ok(f->choices, value)) {
        snprintf(err, errsz, "%s.%s: \"%s\" is not one of %s", f->section, f->key, value,
                 f->choices);
        return -1;
    }
    memcpy((char *)cfg + f->offset, value, len + 1);
    return 0;
}

static int config_store_int(struct pl_config *cfg, const struct config_field *f, long long v,
                            char *err, size_t errsz)
{
    if (v < f->min || v > f->max) {
        snprintf(err, errsz, "%s.%s: %lld is out of range [%ld, %ld]", f->section, f->key, v,
                 f->min, f->max);
        return -1;
    }
    *(int *)((char *)cfg + f->offset) = (int)v;
    return 0;
}

int pl_config_set(struct pl_config *cfg, const char *section, const char *key, const char *value,
                  char *err, size_t errsz)
{
    const struct config_field *f = config_find(section, key);
    if (!f) {
        snprintf(err, errsz, "unknown setting %s.%s", section, key);
        return -1;
    }
    switch (f->type) {
    case CONFIG_STRING:
        return config_store_string(cfg, f, value, err, errsz);
    case CONFIG_INT: {
        long long v;
        if (pl_parse_ll(value, &v) != 0) {
            snprintf(err, errsz, "%s.%s: \"%s\" is not an integer", section, key, value);
            return -1;
        }
        return config_store_int(cfg, f, v, err, errsz);
    }
    case CONFIG_BOOL: {
        bool b;
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
            b = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
            b = false;
        else {
            snprintf(err, errsz, "%s.%s: \"%s\" is not a boolean (true|false)", section, key,
                     value);
            return -1;
        }
        *(bool *)((char *)cfg + f->offset) = b;
        return 0;
    }
    }
    return -1;
}

void pl_config_defaults(struct pl_config *cfg, const char *service)
{
    static const struct {
        const char *service;
        int port;
    } ports[] = {{"api", 8080},       {"detector", 9101}, {"differ", 9102},
                 {"abharness", 9103}, {"monitor", 9104},  {"controller", 9105}};
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
    snprintf(cfg->http_bind, sizeof(cfg->http_bind), "127.0.0.1");
    cfg->http_port = 0;
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
        if (strcmp(ports[i].service, service) == 0)
            cfg->http_port = ports[i].port;
    cfg->http_threads = 4;
    cfg->http_max_body_bytes = 1024 * 1024;
    cfg->http_per_ip_limit = 256;
    cfg->http_max_connections = 4096;
    cfg->http_timeout_s = 30;
    cfg->http_max_header_bytes = 16384;
    snprintf(cfg->pg_dsn, sizeof(cfg->pg_dsn), "postgresql:///promptloop");
    cfg->pg_pool_size = 4;
    snprintf(cfg->kafka_brokers, sizeof(cfg->kafka_brokers), "127.0.0.1:9092");
    /* The api's handlers block on the database and on broker acknowledgements (tens of ms
     * on the mock cluster), so it needs more threads than cores to keep requests in flight. */
    if (strcmp(service, "api") == 0) {
        cfg->http_threads = 16;
        cfg->pg_pool_size = 16;
    }
    if (strcmp(service, "api") != 0)
        snprintf(cfg->kafka_group_id, sizeof(cfg->kafka_group_id), "pl-%s", service);
    cfg->kafka_session_timeout_ms = 10000;
    cfg->kafka_delivery_timeout_ms = 10000;
    snprintf(cfg->kafka_topic_traces, sizeof(cfg->kafka_topic_traces), "pl.traces");
    snprintf(cfg->kafka_topic_clusters, sizeof(cfg->kafka_topic_clusters), "pl.clusters");
    snprintf(cfg->kafka_topic_deployments, sizeof(cfg->kafka_topic_deployments), "pl.deployments");
    snprintf(cfg->kafka_topic_dlq, sizeof(cfg->kafka_topic_dlq), "pl.dlq");
    snprintf(cfg->kafka_topic_actions, sizeof(cfg->kafka_topic_actions), "pl.actions");
    snprintf(cfg->kafka_topic_failures, sizeof(cfg->kafka_topic_failures), "pl.failures");
    snprintf(cfg->kafka_topic_audit, sizeof(cfg->kafka_topic_audit), "pl.audit");
    cfg->outbox_relay = true;
    cfg->outbox_poll_ms = 100;
    cfg->outbox_batch = 100;
    snprintf(cfg->llm_base_url, sizeof(cfg->llm_base_url), "http://127.0.0.1:8090/v1");
    snprintf(cfg->llm_model, sizeof(cfg->llm_model), "gpt-4o-mini");
    cfg->llm_timeout_ms = 30000;
    cfg->llm_connect_timeout_ms = 5000;
    cfg->llm_budget_ms = 120000;
    cfg->llm_max_attempts = 4;
    cfg->llm_backoff_ms = 200;
    cfg->llm_backoff_max_ms = 10000;
    cfg->llm_max_concurrency = 16;
    cfg->llm_max_reply_bytes = 1024 * 1024;
    cfg->differ_max_examples = 5;
    cfg->differ_max_prompt_bytes = 32 * 1024;
    cfg->differ_proposal_attempts = 3;
    cfg->abharness_resume_after_ms = 60000;
    cfg->abharness_resume_interval_ms = 10000;
    cfg->ui_session_ttl_s = 43200;
    cfg->ui_cookie_secure = false;
    cfg->controller_batch = 64;
    cfg->controller_sweep_interval_ms = 1000;
    cfg->eval_max_rules_per_project = 50;
    cfg->eval_trace_budget_ms = 250;
    cfg->eval_tenant_budget_ms = 250;
    cfg->eval_tenant_window_ms = 1000;
    cfg->audit_publish_interval_s = 60;
}

/* Skips spaces, newlines and comments (//, #, slash-star) from p; returns where text goes on. */
static const char *config_skip_blank(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

/* libconfig 1.5 wraps a decimal literal that does not fit in 32 bits (4294975592 reads as
 * 8296): whether the literal of setting key, which libconfig read as v from the setting that
 * starts on line, is not v. The key is the first name followed by = or : (outside strings and
 * comments) from the start of that line; its value may be on a later line. */
static bool config_int_literal_wrapped(const char *path, int line, const char *key, long long v)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(f);
    if (!m)
        return false;
    fclose(m);
    /* where the setting's line starts; the file is read from its start all the same, so
     * that a comment or a string that began on an earlier line is known as one */
    const char *line_start = text;
    for (int at = 1; at < line && line_start; at++) {
        line_start = strchr(line_start, '\n');
        line_start = line_start ? line_start + 1 : NULL;
    }
    bool wrapped = false;
    size_t klen = strlen(key);
    for (const char *p = text; line_start && *p;) {
        if (*p == '"') { /* a string: skip it, escapes included */
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            p += *p == '"';
        } else if (*p == '#' || (p[0] == '/' && (p[1] == '/' || p[1] == '*'))) {
            p = config_skip_blank(p);
        } else if (isalpha((unsigned char)*p) || *p == '_' || *p == '*') {
            const char *name = p;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '*')
                p++;
            const char *sep = config_skip_blank(p);
            if (name >= line_start && (size_t)(p - name) == klen && strncmp(name, key, klen) == 0 &&
                (*sep == '=' || *sep == ':')) {
                const char *value = config_skip_blank(sep + 1);
                /* libconfig's integers are decimal (leading zeros too: 080 is 80) or 0x hex */
                const char *digits = value + (*value == '-' || *value == '+');
                bool hex = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
                errno = 0;
                long long literal = strtoll(value, NULL, hex ? 16 : 10);
                wrapped = errno == ERANGE || literal != v;
                break;
            }
        } else {
            p++;
        }
    }
    free(text);
    return wrapped;
}

static int config_apply_file(struct pl_config *cfg, const char *path, char *err, size_t errsz)
{
    config_t lc;
    config_init(&lc);
    int rc = -1;
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, errsz, "%s: cannot read file", path);
        else
            snprintf(err, errsz, "%s:%d: %s", path, config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    config_setting_t *root = config_root_setting(&lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        const char *sname = config_setting_name(sec);
        if (!config_setting_is_group(sec) || !config_section_known(sname)) {
            snprintf(err, errsz, "%s:%d: unknown section \"%s\"", path,
                     config_setting_source_line(sec), sname);
            goto out;
        }
        for (int j = 0; j < config_setting_length(sec); j++) {
            config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            const char *kname = config_setting_name(s);
            const struct config_field *f = config_find(sname, kname);
            int line = config_setting_source_line(s);
            char why[256];
            if (!f) {
                snprintf(err, errsz, "%s:%d: unknown setting %s.%s", path, line, sname, kname);
                goto out;
            }
            int type = config_setting_type(s);
            int r;
            if (f->type == CONFIG_STRING && type == CONFIG_TYPE_STRING)
                r = config_store_string(cfg, f, config_setting_get_string(s), why, sizeof(why));
            else if (f->type == CONFIG_INT &&
                     (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)) {
                if (type == CONFIG_TYPE_INT &&
                    config_int_literal_wrapped(path, line, kname, config_setting_get_int64(s))) {
                    snprintf(why, sizeof(why), "%s.%s: out of range [%ld, %ld]", sname, kname,
                             f->min, f->max);
                    r = -1;
                } else {
                    r = config_store_int(cfg, f, config_setting_get_int64(s), why, sizeof(why));
                }
            } else if (f->type == CONFIG_BOOL && type == CONFIG_TYPE_BOOL) {
                *(bool *)((char *)cfg + f->offset) = config_setting_get_bool(s) != 0;
                r = 0;
            } else {
                static const char *const tnames[] = {"a string", "an integer", "a boolean"};
                snprintf(why, sizeof(why), "%s.%s: must be %s", sname, kname, tnames[f->type]);
                r = -1;
            }
            if (r != 0) {
                snprintf(err, errsz, "%s:%d: %s", path, line, why);
                goto out;
            }
        }
    }
    rc = 0;
out:
    config_destroy(&lc);
    return rc;
}

static int config_apply_env(struct pl_config *cfg, char *err, size_t errsz)
{
    for (size_t i = 0; i < CONFIG_NFIELDS; i++) {
        const struct config_field *f = &config_fields[i];
        char name[128];
        int n = snprintf(name, sizeof(name), "PL_%s_%s", f->section, f->key);
        for (int k = 0; k < n; k++)
            name[k] = (char)toupper((unsigned char)name[k]);
        const char *v = getenv(name);
        if (!v)
            continue;
        char why[256];
        if (pl_config_set(cfg, f->section, f->key, v, why, sizeof(why)) != 0) {
            snprintf(err, errsz, "environment %s: %s", name, why);
            return -1;
        }
    }
    return 0;
}

int pl_config_load(struct pl_config *cfg, const char *path, char *err, size_t errsz)
{
    if (path && config_apply_file(cfg, path, err, errsz) != 0)
        return -1;
    return config_apply_env(cfg, err, errsz);
}

int pl_config_from_args(struct pl_config *cfg, const char *service, int argc, char **argv,
                        char *err, size_t errsz)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else {
            snprintf(err, errsz, "usage: %s [--config FILE] (unexpected \"%s\")", argv[0], argv[i]);
            return -1;
        }
    }
    pl_config_defaults(cfg, service);
    return pl_config_load(cfg, path, err, errsz);
}
