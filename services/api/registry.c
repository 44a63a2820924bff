/* Registry API: prompts, immutable versions, environments and their deployment history
 * (architecture §4, §8). The writes reuse common/registry.c (numbering under the prompt's row lock,
 * append-only deployment rows) and are audited in their own transaction; every JSON shape
 * comes from one SQL function of the migrations (0004_registry.sql; the environment's live
 * list, routed by an optional routing_key, from 0008_canary_routing.sql). */
#include "api.h"

#include "params.h"
#include "registry.h"
#include "registry_json.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGISTRY_MANIFEST_MAX (256 * 1024)
#define REGISTRY_MESSAGES_MAX 200

static const struct pl_field_rule prompt_fields[] = {
    {"project_id", PL_FIELD_STRING, 1, 64},
    {"name", PL_FIELD_STRING, 1, 128},
    {"manifest", PL_FIELD_OBJECT, 0, 0},
    {"version_alias", PL_FIELD_STRING, 1, 64},
};
static const struct pl_field_rule version_fields[] = {
    {"manifest", PL_FIELD_OBJECT, 0, 0},
    {"version_alias", PL_FIELD_STRING, 1, 64},
};
static const struct pl_field_rule deploy_fields[] = {
    {"prompt_id", PL_FIELD_STRING, 1, 64},
    {"version_id", PL_FIELD_STRING, 1, 64},
};
#define NRULES(r) (sizeof(r) / sizeof((r)[0]))

/* Fills why and returns status: the one-line form of every validation failure below. */
__attribute__((format(printf, 4, 5))) static int registry_fail(char *why, size_t whysz, int status,
                                                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whysz, fmt, ap);
    va_end(ap);
    return status;
}

/* Names and aliases end up in fqns and URLs: letters, digits, '.', '_' and '-' only. */
static bool registry_name_chars(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* True when a string anywhere in v holds a NUL (jsonb cannot store "\u0000"). */
static bool registry_json_has_nul(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_string:
        return registry_has_nul(v);
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++)
            if (registry_json_has_nul(json_object_array_get_idx(v, i)))
                return true;
        return false;
    case json_type_object: {
        json_object_object_foreach(v, key, val)
        {
            (void)key;
            if (registry_json_has_nul(val))
                return true;
        }
        return false;
    }
    default:
        return false;
    }
}

static int registry_message_check(json_object *msg, size_t i, char *why, size_t whysz)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
    if (!json_object_is_type(msg, json_type_object))
        return registry_fail(why, whysz, 400, "manifest.messages[%zu] must be an object", i);
    json_object_object_foreach(msg, key, val)
    {
        if (strcmp(key, "role") != 0 && strcmp(key, "content") != 0 && strcmp(key, "name") != 0)
            return registry_fail(why, whysz, 422,
                                 "manifest.messages[%zu].%s is not a member of a message", i, key);
        if (!json_object_is_type(val, json_type_string))
            return registry_fail(why, whysz, 400, "manifest.messages[%zu].%s must be a string", i,
                                 key);
    }
    json_object *role;
    if (!json_object_object_get_ex(msg, "role", &role))
        return registry_fail(why, whysz, 400, "manifest.messages[%zu].role is required", i);
    if (!json_object_object_get_ex(msg, "content", NULL))
        return registry_fail(why, whysz, 400, "manifest.messages[%zu].content is required", i);
    for (size_t r = 0; r < NRULES(roles); r++)
        if (strcmp(json_object_get_string(role), roles[r]) == 0)
            return 0;
    return registry_fail(why, whysz, 422,
                         "manifest.messages[%zu].role must be one of system, user, assistant, "
                         "tool, developer",
                         i);
}

static int registry_model_check(json_object *mc, char *why, size_t whysz)
{
    json_object_object_foreach(mc, key, val)
    {
        if (strcmp(key, "provider") == 0 || strcmp(key, "model") == 0) {
            if (!json_object_is_type(val, json_type_string))
                return registry_fail(why, whysz, 400,
                                     "manifest.model_configuration.%s must be a string", key);
            if (json_object_get_string_len(val) < 1 || json_object_get_string_len(val) > 256)
                return registry_fail(why, whysz, 422,
                                     "manifest.model_configuration.%s must be 1 to 256 "
                                     "characters long",
                                     key);
        } else if (strcmp(key, "parameters") == 0 || strcmp(key, "extra_parameters") == 0) {
            if (!json_object_is_type(val, json_type_object))
                return registry_fail(why, whysz, 400,
                                     "manifest.model_configuration.%s must be an object", key);
        } else {
            return registry_fail(why, whysz, 422,
                                 "manifest.model_configuration.%s is not a member of a model "
                                 "configuration",
                                 key);
        }
    }
    if (!json_object_object_get_ex(mc, "provider", NULL))
        return registry_fail(why, whysz, 400, "manifest.model_configuration.provider is required");
    if (!json_object_object_get_ex(mc, "model", NULL))
        return registry_fail(why, whysz, 400, "manifest.model_configuration.model is required");
    return 0;
}

/*
 * Checks a manifest (TrueFoundry's chat_prompt shape) and removes the members that are derived
 * from the registry (name, type, version, ml_repo, version_alias: accepted, never stored).
 * @returns the JSON text to store (caller frees), or NULL with *status (400 for a wrong JSON
 *          type or a missing member, 422 for a bad value or an unknown member) and why.
 */
static char *registry_manifest_text(json_object *m, int *status, char *why, size_t whysz)
{
    static const char *const derived[] = {"name", "type", "version", "ml_repo", "version_alias"};
    *status = 0;
    json_object_object_foreach(m, key, val)
    {
        bool is_derived = false;
        for (size_t i = 0; i < NRULES(derived); i++)
            is_derived = is_derived || strcmp(key, derived[i]) == 0;
        if (is_derived)
            continue;
        if (strcmp(key, "messages") == 0 || strcmp(key, "tools") == 0) {
            if (!json_object_is_type(val, json_type_array)) {
                *status = registry_fail(why, whysz, 400, "manifest.%s must be an array", key);
                return NULL;
            }
        } else if (strcmp(key, "variables") == 0 || strcmp(key, "response_format") == 0 ||
                   strcmp(key, "metadata") == 0 || strcmp(key, "model_configuration") == 0) {
            if (!json_object_is_type(val, json_type_object)) {
                *status = registry_fail(why, whysz, 400, "manifest.%s must be an object", key);
                return NULL;
            }
        } else if (strcmp(key, "description") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                *status = registry_fail(why, whysz, 400, "manifest.description must be a string");
                return NULL;
            }
        } else {
            *status =
                registry_fail(why, whysz, 422, "manifest.%s is not a member of a manifest", key);
            return NULL;
        }
    }
    json_object *msgs, *tools, *mc;
    if (!json_object_object_get_ex(m, "messages", &msgs)) {
        *status = registry_fail(why, whysz, 400, "manifest.messages is required");
        return NULL;
    }
    size_t n = json_object_array_length(msgs);
    if (n < 1 || n > REGISTRY_MESSAGES_MAX) {
        *status = registry_fail(why, whysz, 422, "manifest.messages must hold 1 to %d messages",
                                REGISTRY_MESSAGES_MAX);
        return NULL;
    }
    for (size_t i = 0; i < n && !*status; i++)
        *status = registry_message_check(json_object_array_get_idx(msgs, i), i, why, whysz);
    if (!*status && json_object_object_get_ex(m, "tools", &tools))
        for (size_t i = 0; i < json_object_array_length(tools) && !*status; i++)
            if (!json_object_is_type(json_object_array_get_idx(tools, i), json_type_object))
                *status =
                    registry_fail(why, whysz, 400, "manifest.tools[%zu] must be an object", i);
    if (!*status && json_object_object_get_ex(m, "model_configuration", &mc))
        *status = registry_model_check(mc, why, whysz);
    if (!*status && registry_json_has_nul(m))
        *status = registry_fail(why, whysz, 422, "manifest holds a \\u0000 character");
    if (*status)
        return NULL;
    for (size_t i = 0; i < NRULES(derived); i++)
        json_object_object_del(m, derived[i]);
    size_t len;
    const char *text = json_object_to_json_string_length(
        m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (len > REGISTRY_MANIFEST_MAX) {
        *status = registry_fail(why, whysz, 422, "manifest must be at most %d bytes of JSON",
                                REGISTRY_MANIFEST_MAX);
        return NULL;
    }
    char *copy = strdup(text);
    if (!copy)
        *status = registry_fail(why, whysz, 500, "out of memory");
    return copy;
}

/* Checks an optional version_alias member: 'v' first, then name characters. */
static int registry_alias_check(json_object *body, const char **alias, char *why, size_t whysz)
{
    json_object *a;
    *alias = NULL;
    if (!json_object_object_get_ex(body, "version_alias", &a))
        return 0;
    *alias = json_object_get_string(a);
    if ((*alias)[0] != 'v' || !registry_name_chars(*alias) || registry_has_nul(a))
        return registry_fail(why, whysz, 422,
                             "version_alias must start with \"v\" and hold only letters, digits, "
                             "'.', '_' and '-'");
    return 0;
}

/* Parses a body and checks its members against rules; sets the response when it is bad. */
static json_object *registry_body(struct pl_http_request *req, struct pl_http_response *res,
                                  const struct pl_field_rule *rules, size_t n)
{
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return NULL;
    }
    enum pl_field_result fr = pl_param_check_fields(body, rules, n, why, sizeof(why));
    if (fr != PL_FIELDS_OK) {
        pl_http_error(res, fr == PL_FIELDS_BAD_REQUEST ? 400 : 422, "%s", why);
        json_object_put(body);
        return NULL;
    }
    return body;
}

/* A required uuid member (400 when missing or not a uuid). */
static const char *registry_uuid_member(json_object *body, const char *name,
                                        struct pl_http_response *res)
{
    json_object *v;
    if (!json_object_object_get_ex(body, name, &v)) {
        pl_http_error(res, 400, "%s is required", name);
        return NULL;
    }
    if (!pl_uuid_valid(json_object_get_string(v))) {
        pl_http_error(res, 400, "%s must be a uuid", name);
        return NULL;
    }
    return json_object_get_string(v);
}

/*
 * Appends manifest as the next version of the (locked) prompt, with its alias, and audits it,
 * inside the caller's transaction. @returns 0 with version_id and *version, or -1 with err.
 */
static int registry_version_add(PGconn *conn, const char *tenant_id, const char *actor,
                                const char *prompt_id, const char *manifest, const char *alias,
                                char version_id[37], int *version, struct pl_pg_error *err)
{
    if (pl_registry_add_version(conn, tenant_id, prompt_id, manifest, actor, version_id, version,
                                err) != 0)
        return -1;
    if (alias) {
        const char *p[3] = {version_id, tenant_id, alias};
        if (pl_pg_exec(conn,
                       "UPDATE prompt_versions SET version_alias = $3"
                       " WHERE id = $1 AND tenant_id = $2",
                       3, p, err) != 0)
            return -1;
    }
    char sha[65];
    pl_sha256_hex(manifest, strlen(manifest), sha);
    json_object *d = json_object_new_object();
    json_object_object_add(d, "prompt_id", json_object_new_string(prompt_id));
    json_object_object_add(d, "version", json_object_new_int(*version));
    json_object_object_add(d, "version_alias", alias ? json_object_new_string(alias) : NULL);
    json_object_object_add(d, "manifest_sha256", json_object_new_string(sha));
    return registry_audit(conn, tenant_id, actor, "prompt_version.create", version_id, d, err);
}

/*
 * Makes version_id live for prompt_id in the environment (pl_registry_deploy) and audits it
 * with the version it replaces, inside the caller's transaction, which must hold the prompt's
 * row lock (so the row read back by seq is this one). @returns 0 with *json (the row, caller
 * frees; may be NULL), or -1 with err.
 */
static int registry_deploy(PGconn *conn, const char *tenant_id, const char *actor,
                           const char *env_id, const char *prompt_id, const char *version_id,
                           int version, char **json, struct pl_pg_error *err)
{
    char previous[37];
    int live = pl_registry_live_version(conn, tenant_id, env_id, prompt_id, previous, err);
    if (live < 0 ||
        pl_registry_deploy(conn, tenant_id, env_id, prompt_id, version_id, actor, err) != 0)
        return -1;
    const char *p[3] = {env_id, prompt_id, tenant_id};
    PGresult *r = pl_pg_query(conn,
                              "SELECT d.id, pl_env_deployment_json(d)::text"
                              " FROM environment_deployments d"
                              " WHERE d.environment_id = $1 AND d.prompt_id = $2"
                              " AND d.tenant_id = $3 AND d.xmin = pg_current_xact_id()::xid"
                              " ORDER BY d.seq DESC LIMIT 1",
                              3, p, err);
    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        snprintf(err->message, sizeof(err->message), "deployment row not found after insert");
        snprintf(err->sqlstate, sizeof(err->sqlstate), "XX000");
        return -1;
    }
    json_object *d = json_object_new_object();
    json_object_object_add(d, "environment_id", json_object_new_string(env_id));
    json_object_object_add(d, "prompt_id", json_object_new_string(prompt_id));
    json_object_object_add(d, "version_id", json_object_new_string(version_id));
    json_object_object_add(d, "version", json_object_new_int(version));
    json_object_object_add(d, "previous_version_id",
                           live == 1 ? json_object_new_string(previous) : NULL);
    int rc =
        registry_audit(conn, tenant_id, actor, "environment.deploy", PQgetvalue(r, 0, 0), d, err);
    if (rc == 0 && json) {
        *json = strdup(PQgetvalue(r, 0, 1));
        if (!*json) {
            snprintf(err->message, sizeof(err->message), "out of memory");
            snprintf(err->sqlstate, sizeof(err->sqlstate), "53200");
            rc = -1;
        }
    }
    PQclear(r);
    return rc;
}

/* The prompt insert and, with a manifest, version 1 live in production: one transaction. */
static void prompts_create_tx(PGconn *conn, struct pl_http_response *res, const char *tenant_id,
                              const char *actor, const char *project_id, const char *name,
                              const char *manifest, const char *alias)
{
    struct pl_pg_error err = REGISTRY_NO_ROW;
    char *id = NULL, *json = NULL;
    if (registry_begin(conn, tenant_id, &err) != 0)
        goto out_db;
    const char *p[3] = {tenant_id, project_id, name};
    int r = registry_one(conn,
                         "INSERT INTO prompts (tenant_id, project_id, name)"
                         " SELECT $1, id, $3 FROM projects"
                         " WHERE id = $2 AND tenant_id = $1 AND archived_at IS NULL"
                         " ON CONFLICT (project_id, name) DO NOTHING RETURNING id",
                         3, p, &id, &err);
    if (r < 0)
        goto out_db;
    if (r == 0) {
        r = registry_one(conn,
                         "SELECT id FROM projects"
                         " WHERE id = $2 AND tenant_id = $1 AND archived_at IS NULL",
                         2, p, &id, &err);
        if (r < 0)
            goto out_db;
        if (r == 0)
            pl_http_error(res, 404, "project not found");
        else
            pl_http_error(res, 409, "a prompt named \"%s\" already exists in the project", name);
        goto out;
    }
    json_object *d = json_object_new_object();
    json_object_object_add(d, "project_id", json_object_new_string(project_id));
    json_object_object_add(d, "name", json_object_new_string(name));
    if (registry_audit(conn, tenant_id, actor, "prompt.create", id, d, &err) != 0)
        goto out_db;
    if (manifest) {
        char env[37], version_id[37];
        int version = 0;
        r = pl_registry_production_env(conn, tenant_id, project_id, env, &err);
        if (r < 0)
            goto out_db;
        if (r == 0) {
            pl_http_error(res, 409, "the project has no production environment");
            goto out;
        }
        if (registry_version_add(conn, tenant_id, actor, id, manifest, alias, version_id, &version,
                                 &err) != 0 ||
            registry_deploy(conn, tenant_id, actor, env, id, version_id, version, NULL, &err) != 0)
            goto out_db;
    }
    if (registry_commit_answer(conn, res, 201,
                               "SELECT pl_prompt_json(p)::text FROM prompts p"
                               " WHERE p.id = $1 AND p.tenant_id = $2",
                               id, tenant_id, &err) != 0)
        goto out_db;
    goto out;
out_db:
    api_db_error(res, &err);
out:
    registry_rollback(conn);
    free(id);
    free(json);
}

void api_prompts_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who))
        return;
    json_object *body = registry_body(req, res, prompt_fields, NRULES(prompt_fields));
    if (!body)
        return;
    char why[256];
    int status = 0;
    char *manifest = NULL;
    const char *alias = NULL, *project_id = NULL;
    json_object *name, *m;
    if (!(project_id = registry_uuid_member(body, "project_id", res)))
        goto out;
    if (!json_object_object_get_ex(body, "name", &name)) {
        pl_http_error(res, 400, "name is required");
        goto out;
    }
    if (!registry_name_chars(json_object_get_string(name)) || registry_has_nul(name)) {
        pl_http_error(res, 422, "name may hold only letters, digits, '.', '_' and '-'");
        goto out;
    }
    if ((status = registry_alias_check(body, &alias, why, sizeof(why))) != 0) {
        pl_http_error(res, status, "%s", why);
        goto out;
    }
    if (json_object_object_get_ex(body, "manifest", &m)) {
        if (!(manifest = registry_manifest_text(m, &status, why, sizeof(why)))) {
            pl_http_error(res, status, "%s", why);
            goto out;
        }
    } else if (alias) {
        pl_http_error(res, 422, "version_alias needs a manifest (it names the first version)");
        goto out;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        goto out;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    prompts_create_tx(conn, res, who.tenant_id, actor, project_id, json_object_get_string(name),
                      manifest, alias);
    api_db_release(req, conn);
out:
    free(manifest);
    json_object_put(body);
}

void api_prompts_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", "limit", "offset", NULL};
    const char *project = NULL;
    long long limit, offset;
    if (!api_query_params(req, res, allowed, &project) ||
        !api_page_params(req, res, &limit, &offset))
        return;
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *p[4] = {who.tenant_id, project, lim, off};
    struct pl_pg_error err;
    PGresult *r = pl_pg_query(
        conn,
        "SELECT coalesce(string_agg(pl_prompt_json(p)::text, ',' ORDER BY p.created_at DESC,"
        " p.id DESC), ''), (SELECT count(*) FROM prompts WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2))"
        " FROM (SELECT * FROM prompts WHERE tenant_id = $1"
        "   AND ($2::uuid IS NULL OR project_id = $2)"
        "   ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4) p",
        4, p, &err);
    api_db_release(req, conn);
    if (!r) {
        api_db_error(res, &err);
        return;
    }
    api_json_owned(res, 200,
                   pl_list_envelope(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), limit, offset));
    PQclear(r);
}

static int registry_prompt_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                               struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant_id};
    return registry_one(conn,
                        "SELECT pl_prompt_json(p)::text FROM prompts p"
                        " WHERE p.id = $1 AND p.tenant_id = $2",
                        2, p, json, err);
}

void api_prompts_get(struct pl_http_request *req, struct pl_http_response *res)
{
    api_get_one(req, res, PL_ROLES_ANY, false, registry_prompt_get, "prompt");
}

/* The next version of a prompt: numbered under the prompt's row lock, alias unique. */
static void versions_create_tx(PGconn *conn, struct pl_http_response *res, const char *tenant_id,
                               const char *actor, const char *prompt_id, const char *manifest,
                               const char *alias)
{
    struct pl_pg_error err = REGISTRY_NO_ROW;
    char *found = NULL, *json = NULL;
    if (registry_begin(conn, tenant_id, &err) != 0)
        goto out_db;
    const char *p[3] = {prompt_id, tenant_id, alias};
    int r = registry_one(conn, "SELECT id FROM prompts WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
                         2, p, &found, &err);
    if (r < 0)
        goto out_db;
    if (r == 0) {
        pl_http_error(res, 404, "prompt not found");
        goto out;
    }
    free(found);
    found = NULL;
    if (alias) {
        r = registry_one(conn,
                         "SELECT version FROM prompt_versions"
                         " WHERE prompt_id = $1 AND tenant_id = $2 AND version_alias = $3",
                         3, p, &found, &err);
        if (r < 0)
            goto out_db;
        if (r == 1) {
            pl_http_error(res, 409, "version_alias %s is taken by version %s of this prompt", alias,
                          found);
            goto out;
        }
    }
    char version_id[37];
    int version = 0;
    if (registry_version_add(conn, tenant_id, actor, prompt_id, manifest, alias, version_id,
                             &version, &err) != 0)
        goto out_db;
    if (registry_commit_answer(conn, res, 201,
                               "SELECT pl_prompt_version_json(v)::text FROM prompt_versions v"
                               " WHERE v.id = $1 AND v.tenant_id = $2",
                               version_id, tenant_id, &err) != 0)
        goto out_db;
    goto out;
out_db:
    api_db_error(res, &err);
out:
    registry_rollback(conn);
    free(found);
    free(json);
}

void api_prompt_versions_create(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize_id(req, res, PL_ROLES_WRITE, false, "prompt", &who))
        return;
    json_object *body = registry_body(req, res, version_fields, NRULES(version_fields));
    if (!body)
        return;
    char why[256];
    int status = 0;
    char *manifest = NULL;
    const char *alias = NULL;
    json_object *m;
    if (!json_object_object_get_ex(body, "manifest", &m)) {
        pl_http_error(res, 400, "manifest is required");
        goto out;
    }
    if ((status = registry_alias_check(body, &alias, why, sizeof(why))) != 0 ||
        !(manifest = registry_manifest_text(m, &status, why, sizeof(why)))) {
        pl_http_error(res, status, "%s", why);
        goto out;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        goto out;
    char actor[PL_ACTOR_SIZE];
    api_actor(&who, actor, sizeof(actor));
    versions_create_tx(conn, res, who.tenant_id, actor, req->params[0], manifest, alias);
    api_db_release(req, conn);
out:
    free(manifest);
    json_object_put(body);
}

void api_environments_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"project_id", "routing_key", NULL};
    const char *project = NULL;
    if (!api_query_params(req, res, allowed, &project))
        return;
    if (!project) {
        pl_http_error(res, 400, "project_id is required");
        return;
    }
    /* each live entry answers the version served to this key (stable per key) */
    const char *routing_key = pl_http_query(req, "routing_key");
    char why[128];
    if (routing_key && pl_registry_routing_key_check(routing_key, why, sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    const char *p[3] = {who.tenant_id, project, routing_key};
    struct pl_pg_error err;
    PGresult *r = pl_pg_query(conn,
                              "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $2"
                              "   AND tenant_id = $1),"
                              " coalesce(string_agg(pl_environment_json(e, $3::text)::text, ','"
                              "   ORDER BY e.created_at, e.name), '')"
                              " FROM environments e WHERE e.tenant_id = $1 AND e.project_id = $2",
                              3, p, &err);
    api_db_release(req, conn);
    if (!r) {
        api_db_error(res, &err);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        pl_http_error(res, 404, "project not found");
    } else {
        const char *items = PQgetvalue(r, 0, 1);
        size_t cap = strlen(items) + 16;
        char *json = malloc(cap);
        if (json)
            snprintf(json, cap, "{\"items\":[%s]}", items);
        if (json)
            api_json_owned(res, 200, json);
        else
            pl_http_error(res, 500, "out of memory");
    }
    PQclear(r);
}

/* Appends a deployment row after checking that version, prompt and environment belong
 * together (all the caller's tenant's: anything else is a 404, never a hint). */
static void deploy_tx(PGconn *conn, struct pl_http_response *res, const char *tenant_id,
                      const char *actor, const char *env_id, const char *prompt_id,
                      const char *version_id)
{
    struct pl_pg_error err = REGISTRY_NO_ROW;
    char *json = NULL;
    PGresult *r = NULL;
    if (registry_begin(conn, tenant_id, &err) != 0)
        goto out_db;
    /* The prompt's row lock serialises its deployments (and version numbering), so the
     * newest row by seq is also the last one committed. */
    const char *p[4] = {env_id, prompt_id, version_id, tenant_id};
    r = pl_pg_query(conn,
                    "SELECT e.project_id, p.project_id, v.prompt_id, v.version"
                    " FROM (SELECT 1) one"
                    " LEFT JOIN environments e ON e.id = $1 AND e.tenant_id = $4"
                    " LEFT JOIN (SELECT id, project_id FROM prompts WHERE id = $2"
                    "   AND tenant_id = $4 FOR UPDATE) p ON true"
                    " LEFT JOIN prompt_versions v ON v.id = $3 AND v.tenant_id = $4",
                    4, p, &err);
    if (!r)
        goto out_db;
    if (PQgetisnull(r, 0, 0)) {
        pl_http_error(res, 404, "environment not found");
        goto out;
    }
    if (PQgetisnull(r, 0, 1)) {
        pl_http_error(res, 404, "prompt not found");
        goto out;
    }
    if (PQgetisnull(r, 0, 2)) {
        pl_http_error(res, 404, "version not found");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)) != 0) {
        pl_http_error(res, 422, "prompt_id is not a prompt of the environment's project");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 2), prompt_id) != 0) {
        pl_http_error(res, 422, "version_id is not a version of prompt_id");
        goto out;
    }
    if (registry_deploy(conn, tenant_id, actor, env_id, prompt_id, version_id,
                        (int)pl_pg_getll(r, 0, 3), &json, &err) != 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, &err) != 0)
        goto out_db;
    api_json_owned(res, 201, json);
    json = NULL;
    goto out;
out_db:
    api_db_error(res, &err);
out:
    registry_rollback(conn);
    PQclear(r);
    free(json);
}

void api_environment_deploy(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    /* Making a version live is shipping it: owner only (architecture §8 role allowlists). */
    if (!api_authorize_id(req, res, PL_ROLE_OWNER, false, "environment", &who))
        return;
    json_object *body = registry_body(req, res, deploy_fields, NRULES(deploy_fields));
    if (!body)
        return;
    const char *prompt_id, *version_id;
    PGconn *conn;
    if ((prompt_id = registry_uuid_member(body, "prompt_id", res)) &&
        (version_id = registry_uuid_member(body, "version_id", res)) && (conn = api_db(req, res))) {
        char actor[PL_ACTOR_SIZE];
        api_actor(&who, actor, sizeof(actor));
        deploy_tx(conn, res, who.tenant_id, actor, req->params[0], prompt_id, version_id);
        api_db_release(req, conn);
    }
    json_object_put(body);
}

void api_environment_history(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"prompt_id", "limit", "offset", NULL};
    long long limit, offset;
    if (!api_query_params(req, res, allowed, NULL) || !api_page_params(req, res, &limit, &offset))
        return;
    const char *prompt = pl_http_query(req, "prompt_id");
    if (prompt && !pl_uuid_valid(prompt)) {
        pl_http_error(res, 400, "prompt_id must be a uuid");
        return;
    }
    if (!pl_uuid_valid(req->params[0])) {
        pl_http_error(res, 404, "environment not found");
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char lim[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *p[5] = {req->params[0], who.tenant_id, prompt, lim, off};
    struct pl_pg_error err;
    PGresult *r = pl_pg_query(
        conn,
        "SELECT EXISTS (SELECT 1 FROM environments WHERE id = $1 AND tenant_id = $2),"
        " (SELECT count(*) FROM environment_deployments WHERE environment_id = $1"
        "   AND tenant_id = $2 AND ($3::uuid IS NULL OR prompt_id = $3)),"
        " coalesce((SELECT string_agg(pl_env_deployment_json(d)::text, ',' ORDER BY d.seq DESC)"
        "   FROM (SELECT * FROM environment_deployments WHERE environment_id = $1"
        "     AND tenant_id = $2 AND ($3::uuid IS NULL OR prompt_id = $3)"
        "     ORDER BY seq DESC LIMIT $4 OFFSET $5) d), '')",
        5, p, &err);
    api_db_release(req, conn);
    if (!r) {
        api_db_error(res, &err);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        pl_http_error(res, 404, "environment not found");
    else
        api_json_owned(res, 200,
                       pl_list_envelope(PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1), limit, offset));
    PQclear(r);
}
