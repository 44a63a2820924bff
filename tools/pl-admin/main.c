/* pl-admin: operations on a promptloop installation — schema migrations, tenants,
 * projects, API keys, consumer-group offsets for replays, audit-chain verification.
 * Settings come from the environment like the services' (PL_PG_DSN, PL_KAFKA_BROKERS). */
#include "args.h"
#include "audit.h"
#include "auth.h"
#include "config.h"
#include "log.h"
#include "migrate.h"
#include "offsets.h"
#include "pg.h"
#include "project_store.h"
#include "registry.h"
#include "replay.h"
#include "util.h"

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char admin_usage[] =
    "usage: pl-admin COMMAND [options]\n"
    "  migrate\n"
    "  tenant create --name NAME --plan starter|pro|team|enterprise\n"
    "  project create --tenant ID --name NAME\n"
    "  apikey create --tenant ID --role owner|member|viewer [--name NAME]\n"
    "  offsets reset --group GROUP --topic TOPIC --to earliest|YYYY-MM-DDTHH:MM:SSZ\n"
    "  replay --stage detector --from YYYY-MM-DDTHH:MM:SSZ [--to TIME] [--name NAME] [--no-run]\n"
    "                (a backfill: its own group over the range, next to the live one; it\n"
    "                 re-evaluates stored traces under the rules changed since; runs it)\n"
    "  replay status [--name NAME]\n"
    "  audit verify --tenant ID [--expected-head HASH]\n"
    "                (HASH: a head published earlier; fails unless it is still in the chain)\n"
    "  audit rekey --tenant ID | --all\n"
    "                (keys chains written before the chain was keyed, once they verify)\n"
    "  user add --tenant ID --name NAME --role owner|member|viewer\n"
    "                (a dashboard user signed in by a trusted auth proxy: ui.proxy_header)\n"
    "  user disable --name NAME\n"
    "  prompt create --tenant ID --project ID --name NAME --system TEXT [--model MODEL]\n"
    "                (version 1, live in production; prints the prompt and version ids)\n"
    "Environment: PL_PG_DSN, PL_KAFKA_BROKERS, PL_AUDIT_KEY (see config/promptloop.cfg).\n";

static int admin_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int admin_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "pl-admin: %s\n", msg);
    return 1;
}

static PGconn *admin_connect(const struct pl_config *cfg)
{
    struct pl_pg_error err;
    PGconn *conn = pl_pg_connect(cfg->pg_dsn, &err);
    if (!conn)
        admin_fail("cannot connect to the database: %s", err.message);
    return conn;
}

/* Runs sql in a transaction with an audit entry; prints column 0 of the single row. */
static int admin_insert(PGconn *conn, const char *sql, int n, const char *const *params,
                        const char *tenant_param_or_null, const char *action, const char *detail)
{
    struct pl_pg_error err;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, &err) != 0)
        return admin_fail("%s", err.message);
    PGresult *res = pl_pg_query(conn, sql, n, params, &err);
    if (!res)
        return admin_fail("%s", err.message);
    const char *id = PQgetvalue(res, 0, 0);
    const char *tenant = tenant_param_or_null ? tenant_param_or_null : id;
    if (pl_audit_append(conn, tenant, "admin", action, id, detail, &err) != 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0) {
        PQclear(res);
        return admin_fail("%s", err.message);
    }
    printf("%s\n", id);
    PQclear(res);
    return 0;
}

static int admin_tenant_create(PGconn *conn, int argc, char **argv)
{
    const char *name = admin_opt(argc, argv, "--name"), *plan = admin_opt(argc, argv, "--plan");
    if (!name || !plan)
        return admin_fail("%s", "tenant create needs --name and --plan");
    if (strcmp(plan, "starter") && strcmp(plan, "pro") && strcmp(plan, "team") &&
        strcmp(plan, "enterprise"))
        return admin_fail("--plan must be starter, pro, team or enterprise, not \"%s\"", plan);
    const char *params[2] = {name, plan};
    return admin_insert(conn, "INSERT INTO tenants (name, plan) VALUES ($1, $2) RETURNING id", 2,
                        params, NULL, "tenant.create", "{}");
}

static int admin_project_create(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant"), *name = admin_opt(argc, argv, "--name");
    if (!tenant || !name || !pl_uuid_valid(tenant))
        return admin_fail("%s", "project create needs --tenant UUID and --name");
    json_object *s = json_object_new_object();
    json_object_object_add(s, "name", json_object_new_string(name));
    struct pl_pg_error err;
    char *json = NULL;
    int r =
        pl_project_store_create(conn, tenant, "admin", json_object_to_json_string(s), &json, &err);
    json_object_put(s);
    if (r < 0)
        return admin_fail("%s", err.message);
    if (r == 0)
        return admin_fail("a project named \"%s\" already exists", name);
    json_object *p = json_tokener_parse(json);
    printf("%s\n", json_object_get_string(json_object_object_get(p, "id")));
    json_object_put(p);
    free(json);
    return 0;
}

/* A registry prompt whose manifest holds one system message (the registry API takes full
 * manifests; this is for seeding a stack from scripts). */
static int admin_prompt_create(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant"),
               *project = admin_opt(argc, argv, "--project"),
               *name = admin_opt(argc, argv, "--name"), *system = admin_opt(argc, argv, "--system"),
               *model = admin_opt(argc, argv, "--model");
    if (!tenant || !project || !name || !system || !pl_uuid_valid(tenant) ||
        !pl_uuid_valid(project) || !*name)
        return admin_fail("%s", "prompt create needs --tenant UUID, --project UUID, --name and "
                                "--system");
    json_object *m = json_object_new_object(), *msgs = json_object_new_array(),
                *sys = json_object_new_object(), *mc = json_object_new_object();
    json_object_object_add(sys, "role", json_object_new_string("system"));
    json_object_object_add(sys, "content", json_object_new_string(system));
    json_object_array_add(msgs, sys);
    json_object_object_add(m, "messages", msgs);
    json_object_object_add(mc, "provider", json_object_new_string("openai"));
    json_object_object_add(mc, "model", json_object_new_string(model ? model : "gpt-4o-mini"));
    json_object_object_add(mc, "parameters", json_object_new_object());
    json_object_object_add(m, "model_configuration", mc);
    struct pl_pg_error err;
    char prompt_id[37], version_id[37];
    int r = pl_registry_create_prompt(conn, tenant, project, name,
                                      json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN),
                                      "admin", prompt_id, version_id, &err);
    json_object_put(m);
    if (r < 0)
        return admin_fail("%s", err.message);
    if (r == 0)
        return admin_fail("prompt \"%s\" exists already, or the project is not the tenant's", name);
    printf("%s %s\n", prompt_id, version_id);
    return 0;
}

static int admin_apikey_create(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant"), *role = admin_opt(argc, argv, "--role");
    const char *name = admin_opt(argc, argv, "--name");
    enum pl_role r;
    if (!tenant || !pl_uuid_valid(tenant) || !role || pl_auth_role_parse(role, &r) != 0)
        return admin_fail("%s", "apikey create needs --tenant UUID and --role owner|member|viewer");
    char key[PL_API_KEY_LEN + 1], hash[65], prefix[12];
    if (pl_auth_key_new(key, hash, prefix) != 0)
        return admin_fail("%s", "no random source");
    const char *params[5] = {tenant, name ? name : "", role, hash, prefix};
    struct pl_pg_error err;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, &err) != 0)
        return admin_fail("%s", err.message);
    PGresult *res = pl_pg_query(conn,
                                "INSERT INTO api_keys (tenant_id, name, role, key_hash, prefix)"
                                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                                5, params, &err);
    if (!res)
        return admin_fail("%s", err.message);
    char detail[128];
    snprintf(detail, sizeof(detail), "{\"role\":\"%s\",\"prefix\":\"%s\"}", role, prefix);
    int failed = pl_audit_append(conn, tenant, "admin", "apikey.create", PQgetvalue(res, 0, 0),
                                 detail, &err) != 0 ||
                 pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0;
    PQclear(res);
    if (failed)
        return admin_fail("%s", err.message);
    printf("%s\n", key); /* shown once: only its hash is stored */
    return 0;
}

/* A dashboard user whose name a trusted auth proxy sends (ui.proxy_header). */
static int admin_user_add(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant"), *role = admin_opt(argc, argv, "--role");
    const char *name = admin_opt(argc, argv, "--name");
    enum pl_role r;
    if (!tenant || !pl_uuid_valid(tenant) || !name || !role || pl_auth_role_parse(role, &r) != 0)
        return admin_fail("%s", "user add needs --tenant UUID, --name NAME and --role "
                                "owner|member|viewer");
    size_t n = strlen(name);
    for (const char *c = name; *c; c++)
        if (*c <= ' ' || *c > '~')
            n = 0;
    if (n == 0 || n > PL_USER_NAME_MAX)
        return admin_fail("--name must be 1 to %d printable characters without spaces, as the "
                          "proxy sends it",
                          PL_USER_NAME_MAX);
    const char *params[3] = {tenant, name, role};
    char detail[160];
    snprintf(detail, sizeof(detail), "{\"role\":\"%s\"}", role);
    return admin_insert(conn,
                        "INSERT INTO ui_users (tenant_id, name, role) VALUES ($1, $2, $3)"
                        " RETURNING id",
                        3, params, tenant, "user.add", detail);
}

/* Ends a user's dashboard access: its sessions stop working at their next request. */
static int admin_user_disable(PGconn *conn, int argc, char **argv)
{
    const char *name = admin_opt(argc, argv, "--name");
    if (!name)
        return admin_fail("%s", "user disable needs --name NAME");
    struct pl_pg_error err;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, &err) != 0)
        return admin_fail("%s", err.message);
    const char *params[1] = {name};
    PGresult *res = pl_pg_query(conn,
                                "UPDATE ui_users SET disabled_at = coalesce(disabled_at, now())"
                                " WHERE name = $1 RETURNING id, tenant_id",
                                1, params, &err);
    if (!res)
        return admin_fail("%s", err.message);
    if (PQntuples(res) != 1) {
        PQclear(res);
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, &err);
        return admin_fail("no user named \"%s\"", name);
    }
    int failed = pl_audit_append(conn, PQgetvalue(res, 0, 1), "admin", "user.disable",
                                 PQgetvalue(res, 0, 0), "{}", &err) != 0 ||
                 pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0;
    PQclear(res);
    if (failed)
        return admin_fail("%s", err.message);
    printf("user %s disabled\n", name);
    return 0;
}

/* Parses YYYY-MM-DDTHH:MM:SSZ to milliseconds since the epoch. */
static int admin_parse_time(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return -1;
    *ms = (int64_t)timegm(&tm) * 1000;
    return 0;
}

/* Moves a whole group to a time (or the start); its consumers must be stopped. */
static int admin_offsets_reset(const struct pl_config *cfg, int argc, char **argv)
{
    const char *group = admin_opt(argc, argv, "--group"), *topic = admin_opt(argc, argv, "--topic");
    const char *to = admin_opt(argc, argv, "--to");
    int64_t when = 0;
    bool earliest = to && strcmp(to, "earliest") == 0;
    if (!group || !topic || !to || (!earliest && admin_parse_time(to, &when) != 0))
        return admin_fail("%s", "offsets reset needs --group, --topic and --to "
                                "earliest|YYYY-MM-DDTHH:MM:SSZ");
    char err[512];
    rd_kafka_topic_partition_list_t *l = pl_offsets_at(
        cfg->kafka_brokers, topic, earliest ? PL_OFFSETS_EARLIEST : when, err, sizeof(err));
    if (!l)
        return admin_fail("%s", err);
    int rc = 0;
    if (pl_offsets_commit(cfg->kafka_brokers, group, topic, l, err, sizeof(err)) != 0)
        rc = admin_fail("%s", err);
    else
        for (int i = 0; i < l->cnt; i++)
            printf("%s[%d] -> %lld\n", topic, l->elems[i].partition, (long long)l->elems[i].offset);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static int admin_audit_verify(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant");
    if (!tenant || !pl_uuid_valid(tenant))
        return admin_fail("%s", "audit verify needs --tenant UUID");
    const char *expected = admin_opt(argc, argv, "--expected-head");
    struct pl_audit_head head;
    char err[512];
    long long n = pl_audit_verify_head(conn, tenant, expected, &head, err, sizeof(err));
    if (n < 0)
        return admin_fail("audit chain broken: %s", err);
    if (head.expected_found == 0)
        return admin_fail("audit head %s is not in the chain: entries up to it were "
                          "removed or rewritten (the chain now ends at %s, %lld entries)",
                          expected, head.hash[0] ? head.hash : "(empty)", head.rows);
    printf("audit chain ok: %lld entries, head %s\n", n, head.hash);
    return 0;
}

/* Keys the chains written before the chain was keyed: one tenant, or every tenant. */
static int admin_audit_rekey(PGconn *conn, int argc, char **argv)
{
    const char *tenant = admin_opt(argc, argv, "--tenant");
    bool all = admin_flag(argc, argv, "--all");
    if (all == (tenant != NULL) || (tenant && !pl_uuid_valid(tenant)))
        return admin_fail("%s", "audit rekey needs --tenant UUID or --all");
    struct pl_pg_error perr;
    PGresult *res = pl_pg_query(conn,
                                "SELECT DISTINCT tenant_id::text FROM audit_log"
                                " WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY 1",
                                1, (const char *const[]){tenant}, &perr);
    if (!res)
        return admin_fail("%s", perr.message);
    int rc = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        char err[512];
        long long n = pl_audit_rekey(conn, PQgetvalue(res, i, 0), err, sizeof(err));
        if (n < 0)
            rc = admin_fail("tenant %s: not rekeyed: %s", PQgetvalue(res, i, 0), err);
        else
            printf("tenant %s: %lld entries rekeyed\n", PQgetvalue(res, i, 0), n);
    }
    PQclear(res);
    return rc;
}

int main(int argc, char **argv)
{
    pl_log_init("admin", PL_LOG_WARN);
    struct pl_config cfg;
    char err[512];
    pl_config_defaults(&cfg, "admin");
    if (pl_config_load(&cfg, NULL, err, sizeof(err)) != 0)
        return admin_fail("%s", err);
    /* Only the commands that write or verify audit entries need the key; a key that is
     * set but unusable is an error for all of them. */
    if ((cfg.audit_key[0] || cfg.audit_key_file[0]) && pl_audit_key_load(&cfg, err, sizeof(err)))
        return admin_fail("%s", err);
    if (argc < 2) {
        fputs(admin_usage, stderr);
        return 2;
    }
    const char *cmd = argv[1], *sub = argc > 2 ? argv[2] : "";
    if (strcmp(cmd, "offsets") == 0 && strcmp(sub, "reset") == 0)
        return admin_offsets_reset(&cfg, argc - 3, argv + 3);
    if (strcmp(cmd, "replay") == 0)
        return admin_replay(&cfg, argc - 2, argv + 2);

    int (*fn)(PGconn *, int, char **) = NULL;
    if (strcmp(cmd, "tenant") == 0 && strcmp(sub, "create") == 0)
        fn = admin_tenant_create;
    else if (strcmp(cmd, "project") == 0 && strcmp(sub, "create") == 0)
        fn = admin_project_create;
    else if (strcmp(cmd, "apikey") == 0 && strcmp(sub, "create") == 0)
        fn = admin_apikey_create;
    else if (strcmp(cmd, "prompt") == 0 && strcmp(sub, "create") == 0)
        fn = admin_prompt_create;
    else if (strcmp(cmd, "user") == 0 && strcmp(sub, "add") == 0)
        fn = admin_user_add;
    else if (strcmp(cmd, "user") == 0 && strcmp(sub, "disable") == 0)
        fn = admin_user_disable;
    else if (strcmp(cmd, "audit") == 0 && strcmp(sub, "verify") == 0)
        fn = admin_audit_verify;
    else if (strcmp(cmd, "audit") == 0 && strcmp(sub, "rekey") == 0)
        fn = admin_audit_rekey;
    else if (strcmp(cmd, "migrate") != 0) {
        fputs(admin_usage, stderr);
        return 2;
    }
    PGconn *conn = admin_connect(&cfg);
    if (!conn)
        return 1;
    int rc;
    if (fn) {
        rc = fn(conn, argc - 3, argv + 3);
    } else {
        int n = pl_migrate_apply(conn, err, sizeof(err));
        rc = n < 0 ? admin_fail("migrate: %s", err) : 0;
        if (n >= 0)
            printf("%d migration(s) applied\n", n);
    }
    PQfinish(conn);
    return rc;
}
