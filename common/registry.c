#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs sql and copies the first column of the first row into out (37 bytes) when there is
 * one. @returns 1 found, 0 none, -1 with err. */
static int registry_query_id(PGconn *conn, const char *sql, int n, const char *const *params,
                             char out[37], struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(conn, sql, n, params, err);
    if (!res)
        return -1;
    int found = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
    if (found)
        snprintf(out, 37, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return found;
}

int pl_registry_production_env(PGconn *conn, const char *tenant_id, const char *project_id,
                               char env_id[37], struct pl_pg_error *err)
{
    const char *p[2] = {tenant_id, project_id};
    return registry_query_id(conn,
                             "SELECT id FROM environments WHERE tenant_id = $1 AND project_id = $2"
                             " AND name = 'production'",
                             2, p, env_id, err);
}

int pl_registry_live_version(PGconn *conn, const char *tenant_id, const char *environment_id,
                             const char *prompt_id, char version_id[37], struct pl_pg_error *err)
{
    const char *p[3] = {tenant_id, environment_id, prompt_id};
    return registry_query_id(conn,
                             "SELECT version_id FROM environment_deployments"
                             " WHERE tenant_id = $1 AND environment_id = $2 AND prompt_id = $3"
                             " ORDER BY seq DESC LIMIT 1",
                             3, p, version_id, err);
}

int pl_registry_add_version(PGconn *conn, const char *tenant_id, const char *prompt_id,
                            const char *manifest_json, const char *created_by, char version_id[37],
                            int *version, struct pl_pg_error *err)
{
    const char *p[4] = {tenant_id, prompt_id, manifest_json, created_by};
    PGresult *res = pl_pg_query(
        conn,
        "WITH p AS (SELECT id FROM prompts WHERE id = $2 AND tenant_id = $1 FOR UPDATE)"
        " INSERT INTO prompt_versions (tenant_id, prompt_id, version, manifest, created_by)"
        " SELECT $1, p.id, coalesce((SELECT max(version) FROM prompt_versions"
        "                            WHERE prompt_id = p.id), 0) + 1, $3::jsonb, $4 FROM p"
        " RETURNING id, version",
        4, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        snprintf(err->message, sizeof(err->message), "prompt %s not found", prompt_id);
        err->sqlstate[0] = '\0';
        return -1;
    }
    snprintf(version_id, 37, "%s", PQgetvalue(res, 0, 0));
    if (version)
        *version = (int)pl_pg_getll(res, 0, 1);
    PQclear(res);
    return 0;
}

int pl_registry_deploy(PGconn *conn, const char *tenant_id, const char *environment_id,
                       const char *prompt_id, const char *version_id, const char *created_by,
                       struct pl_pg_error *err)
{
    const char *p[5] = {tenant_id, environment_id, prompt_id, version_id, created_by};
    return pl_pg_exec(conn,
                      "INSERT INTO environment_deployments (tenant_id, environment_id, prompt_id,"
                      " version_id, created_by) VALUES ($1, $2, $3, $4, $5)",
                      5, p, err);
}

int pl_registry_create_prompt(PGconn *conn, const char *tenant_id, const char *project_id,
                              const char *name, const char *manifest_json, const char *created_by,
                              char prompt_id[37], char version_id[37], struct pl_pg_error *err)
{
    char env[37];
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return -1;
    const char *p[3] = {tenant_id, project_id, name};
    int r = registry_query_id(conn,
                              "INSERT INTO prompts (tenant_id, project_id, name)"
                              " SELECT $1, id, $3 FROM projects WHERE id = $2 AND tenant_id = $1"
                              " ON CONFLICT (project_id, name) DO NOTHING RETURNING id",
                              3, p, prompt_id, err);
    if (r == 1)
        r = pl_registry_production_env(conn, tenant_id, project_id, env, err);
    if (r == 1 &&
        (pl_registry_add_version(conn, tenant_id, prompt_id, manifest_json, created_by, version_id,
                                 NULL, err) != 0 ||
         pl_registry_deploy(conn, tenant_id, env, prompt_id, version_id, created_by, err) != 0 ||
         pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0))
        r = -1;
    if (r != 1) {
        struct pl_pg_error ignored;
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    }
    return r;
}

const char *pl_registry_manifest_system(json_object *manifest)
{
    json_object *msgs, *role, *content;
    if (!json_object_object_get_ex(manifest, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        if (json_object_object_get_ex(m, "role", &role) &&
            strcmp(json_object_get_string(role), "system") == 0 &&
            json_object_object_get_ex(m, "content", &content) &&
            json_object_is_type(content, json_type_string))
            return json_object_get_string(content);
    }
    return NULL;
}

char *pl_registry_manifest_with_system(json_object *manifest, const char *system)
{
    json_object *copy = NULL;
    if (json_object_deep_copy(manifest, &copy, NULL) != 0)
        return NULL;
    json_object *msgs, *role;
    if (!json_object_object_get_ex(copy, "messages", &msgs) ||
        !json_object_is_type(msgs, json_type_array)) {
        msgs = json_object_new_array();
        json_object_object_add(copy, "messages", msgs);
    }
    bool replaced = false;
    for (size_t i = 0; i < json_object_array_length(msgs) && !replaced; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        if (json_object_object_get_ex(m, "role", &role) &&
            strcmp(json_object_get_string(role), "system") == 0) {
            json_object_object_add(m, "content", json_object_new_string(system));
            replaced = true;
        }
    }
    if (!replaced) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("system"));
        json_object_object_add(m, "content", json_object_new_string(system));
        json_object *all = json_object_new_array(); /* json-c 0.16 has no insert */
        json_object_array_add(all, m);
        for (size_t i = 0; i < json_object_array_length(msgs); i++)
            json_object_array_add(all, json_object_get(json_object_array_get_idx(msgs, i)));
        json_object_object_add(copy, "messages", all);
    }
    char *text = strdup(json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN));
    json_object_put(copy);
    return text;
}

int pl_registry_ship_hook(PGconn *conn, const char *tenant_id, const char *deployment_id, void *arg,
                          struct pl_pg_error *err)
{
    const char *actor = arg ? arg : "system";
    const char *p[2] = {deployment_id, tenant_id};
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.prompt_id, d.project_id, d.proposed_prompt, v.manifest"
                                " FROM prompt_deployments d"
                                " JOIN prompt_versions v ON v.id = d.base_version_id"
                                " WHERE d.id = $1 AND d.tenant_id = $2 AND d.prompt_id IS NOT NULL",
                                2, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) { /* not tied to a registry prompt: nothing to make live */
        PQclear(res);
        return 0;
    }
    char prompt_id[37], project_id[37], env[37], version_id[37];
    snprintf(prompt_id, sizeof(prompt_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(project_id, sizeof(project_id), "%s", PQgetvalue(res, 0, 1));
    json_object *base = json_tokener_parse(PQgetvalue(res, 0, 3));
    char *manifest = base ? pl_registry_manifest_with_system(base, PQgetvalue(res, 0, 2)) : NULL;
    json_object_put(base);
    PQclear(res);
    int rc = -1;
    if (!manifest) {
        snprintf(err->message, sizeof(err->message), "base version manifest is unreadable");
        err->sqlstate[0] = '\0';
        return -1;
    }
    int found = pl_registry_production_env(conn, tenant_id, project_id, env, err);
    if (found == 0) {
        snprintf(err->message, sizeof(err->message), "project has no production environment");
        err->sqlstate[0] = '\0';
    }
    if (found == 1 &&
        pl_registry_add_version(conn, tenant_id, prompt_id, manifest, actor, version_id, NULL,
                                err) == 0 &&
        pl_registry_deploy(conn, tenant_id, env, prompt_id, version_id, actor, err) == 0) {
        const char *u[3] = {deployment_id, tenant_id, version_id};
        rc = pl_pg_exec(conn,
                        "UPDATE prompt_deployments SET shipped_version_id = $3"
                        " WHERE id = $1 AND tenant_id = $2",
                        3, u, err);
    }
    free(manifest);
    return rc;
}

int pl_registry_rollback_hook(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              void *arg, struct pl_pg_error *err)
{
    const char *actor = arg ? arg : "system";
    const char *p[2] = {deployment_id, tenant_id};
    /* Locks the production history of this prompt's environment through the prompt row, so
     * a concurrent ship or rollback of the same prompt waits and then sees this one. */
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.prompt_id, d.project_id, d.base_version_id,"
                                " d.shipped_version_id FROM prompt_deployments d"
                                " JOIN prompts pr ON pr.id = d.prompt_id"
                                " WHERE d.id = $1 AND d.tenant_id = $2 AND d.prompt_id IS NOT NULL"
                                "   AND d.shipped_version_id IS NOT NULL AND d.base_version_id IS"
                                "   NOT NULL FOR UPDATE OF pr",
                                2, p, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    char prompt_id[37], project_id[37], base[37], shipped[37], env[37], live[37] = "";
    snprintf(prompt_id, sizeof(prompt_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(project_id, sizeof(project_id), "%s", PQgetvalue(res, 0, 1));
    snprintf(base, sizeof(base), "%s", PQgetvalue(res, 0, 2));
    snprintf(shipped, sizeof(shipped), "%s", PQgetvalue(res, 0, 3));
    PQclear(res);
    int found = pl_registry_production_env(conn, tenant_id, project_id, env, err);
    if (found == 1)
        found = pl_registry_live_version(conn, tenant_id, env, prompt_id, live, err);
    if (found < 0)
        return -1;
    if (found == 0 || strcmp(live, shipped) != 0) {
        const char *pv[1] = {live};
        PGresult *v = found ? pl_pg_query(conn, "SELECT version FROM prompt_versions WHERE id = $1",
                                          1, pv, err)
                            : NULL;
        snprintf(err->message, sizeof(err->message),
                 "cannot roll back: version %s of the prompt is live now, not the one this "
                 "deployment shipped",
                 v && PQntuples(v) ? PQgetvalue(v, 0, 0) : "(none)");
        err->sqlstate[0] = '\0';
        if (v)
            PQclear(v);
        return 1;
    }
    return pl_registry_deploy(conn, tenant_id, env, prompt_id, base, actor, err);
}
