/* The prompt registry's writes and the live-prompt lookup (see registry.h). */
#include "registry.h"

#include "util.h"

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

int pl_registry_live_row(PGconn *conn, const char *tenant_id, const char *environment_id,
                         const char *prompt_id, struct pl_registry_live *live,
                         struct pl_pg_error *err)
{
    const char *p[3] = {tenant_id, environment_id, prompt_id};
    PGresult *res = pl_pg_query(conn,
                                "SELECT version_id, coalesce(stable_version_id::text, ''),"
                                " rollout_pct FROM environment_deployments"
                                " WHERE tenant_id = $1 AND environment_id = $2 AND prompt_id = $3"
                                " ORDER BY seq DESC LIMIT 1",
                                3, p, err);
    if (!res)
        return -1;
    int found = PQntuples(res) > 0;
    if (found) {
        snprintf(live->version_id, sizeof(live->version_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(live->stable_version_id, sizeof(live->stable_version_id), "%s",
                 PQgetvalue(res, 0, 1));
        live->rollout_pct = (int)pl_pg_getll(res, 0, 2);
    }
    PQclear(res);
    return found;
}

int pl_registry_routing_key_check(const char *key, char *why, size_t whysz)
{
    size_t n = key ? strlen(key) : 0;
    bool printable = n >= 1 && n <= PL_REGISTRY_ROUTING_KEY_MAX;
    for (size_t i = 0; printable && i < n; i++)
        printable = (unsigned char)key[i] >= 0x20 && (unsigned char)key[i] <= 0x7e;
    if (printable)
        return 0;
    snprintf(why, whysz, "routing_key must be 1 to %d bytes of printable ASCII",
             PL_REGISTRY_ROUTING_KEY_MAX);
    return -1;
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

/* Appends a deployment row serving version_id to rollout_pct % of the routing keys (a
 * decimal, 1..100) and stable_version_id (NULL iff rollout_pct is 100) to the others. */
static int registry_deploy_row(PGconn *conn, const char *tenant_id, const char *environment_id,
                               const char *prompt_id, const char *version_id,
                               const char *rollout_pct, const char *stable_version_id,
                               const char *created_by, struct pl_pg_error *err)
{
    const char *p[7] = {tenant_id,  environment_id, prompt_id,        version_id,
                        created_by, rollout_pct,    stable_version_id};
    return pl_pg_exec(conn,
                      "INSERT INTO environment_deployments (tenant_id, environment_id, prompt_id,"
                      " version_id, created_by, rollout_pct, stable_version_id)"
                      " VALUES ($1, $2, $3, $4, $5, $6::int, $7::uuid)",
                      7, p, err);
}

int pl_registry_deploy(PGconn *conn, const char *tenant_id, const char *environment_id,
                       const char *prompt_id, const char *version_id, const char *created_by,
                       struct pl_pg_error *err)
{
    return registry_deploy_row(conn, tenant_id, environment_id, prompt_id, version_id, "100", NULL,
                               created_by, err);
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

/* The share of routing keys the shipped version gets: the deployment's rollout_pct, which the
 * transition has just set (the project's ship_canary_pct, or 100). Anything outside 1..99
 * ships to everyone. */
static int registry_ship_share(const char *rollout_pct)
{
    long long pct = 100;
    if (pl_parse_ll(rollout_pct, &pct) != 0 || pct < 1 || pct > 99)
        pct = 100;
    return (int)pct;
}

/* Makes version_id live in env for the ship: at 100 %, or as a canary at pct % whose other
 * keys keep what every key got before (the live row's stable version while another canary
 * runs, else its version; base when the prompt was never live there). The prompt row is
 * locked (pl_registry_add_version), so the live row read here stays the newest. */
static int registry_ship_deploy(PGconn *conn, const char *tenant_id, const char *env,
                                const char *prompt_id, const char *version_id, const char *base,
                                int pct, const char *actor, struct pl_pg_error *err)
{
    if (pct == 100)
        return pl_registry_deploy(conn, tenant_id, env, prompt_id, version_id, actor, err);
    struct pl_registry_live live;
    int found = pl_registry_live_row(conn, tenant_id, env, prompt_id, &live, err);
    if (found < 0)
        return -1;
    const char *stable = found == 0               ? base
                         : live.rollout_pct < 100 ? live.stable_version_id
                                                  : live.version_id;
    char share[16];
    snprintf(share, sizeof(share), "%d", pct);
    return registry_deploy_row(conn, tenant_id, env, prompt_id, version_id, share, stable, actor,
                               err);
}

int pl_registry_ship_hook(PGconn *conn, const char *tenant_id, const char *deployment_id, void *arg,
                          struct pl_pg_error *err)
{
    const char *actor = arg ? arg : "system";
    const char *p[2] = {deployment_id, tenant_id};
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.prompt_id, d.project_id, d.proposed_prompt, v.manifest,"
                                " d.base_version_id, d.rollout_pct"
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
    char prompt_id[37], project_id[37], base[37], env[37], version_id[37];
    snprintf(prompt_id, sizeof(prompt_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(project_id, sizeof(project_id), "%s", PQgetvalue(res, 0, 1));
    snprintf(base, sizeof(base), "%s", PQgetvalue(res, 0, 4));
    int pct = registry_ship_share(PQgetvalue(res, 0, 5));
    json_object *manifest_base = json_tokener_parse(PQgetvalue(res, 0, 3));
    char *manifest = manifest_base
                         ? pl_registry_manifest_with_system(manifest_base, PQgetvalue(res, 0, 2))
                         : NULL;
    json_object_put(manifest_base);
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
        registry_ship_deploy(conn, tenant_id, env, prompt_id, version_id, base, pct, actor, err) ==
            0) {
        const char *u[3] = {deployment_id, tenant_id, version_id};
        rc = pl_pg_exec(conn,
                        "UPDATE prompt_deployments SET shipped_version_id = $3"
                        " WHERE id = $1 AND tenant_id = $2",
                        3, u, err);
    }
    free(manifest);
    return rc;
}

/* A shipped deployment of a registry prompt and what is live for its prompt in production. */
struct registry_shipped {
    char prompt_id[37], base[37], shipped[37], env[37];
    int rollout_pct; /* the deployment's, as its transition has just set it */
    int live_found;  /* 1 when the prompt has a live row in production */
    struct pl_registry_live live;
};

/*
 * Reads the deployment and its prompt's production live row. Locks the prompt row first, so
 * a concurrent ship, promotion or rollback of the same prompt waits and then sees this one.
 * @returns 1 filled, 0 when the deployment has no registry prompt or shipped no version
 *          (nothing to change), -1 with err.
 */
static int registry_shipped_read(PGconn *conn, const char *tenant_id, const char *deployment_id,
                                 struct registry_shipped *s, struct pl_pg_error *err)
{
    const char *p[2] = {deployment_id, tenant_id};
    PGresult *res = pl_pg_query(conn,
                                "SELECT d.prompt_id, d.project_id, d.base_version_id,"
                                " d.shipped_version_id, d.rollout_pct FROM prompt_deployments d"
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
    char project_id[37];
    snprintf(s->prompt_id, sizeof(s->prompt_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(project_id, sizeof(project_id), "%s", PQgetvalue(res, 0, 1));
    snprintf(s->base, sizeof(s->base), "%s", PQgetvalue(res, 0, 2));
    snprintf(s->shipped, sizeof(s->shipped), "%s", PQgetvalue(res, 0, 3));
    s->rollout_pct = (int)pl_pg_getll(res, 0, 4);
    PQclear(res);
    int found = pl_registry_production_env(conn, tenant_id, project_id, s->env, err);
    if (found == 1)
        found = pl_registry_live_row(conn, tenant_id, s->env, s->prompt_id, &s->live, err);
    if (found < 0)
        return -1;
    s->live_found = found;
    return 1;
}

/* Fills err with why a move is refused because another version is live, naming its number.
 * @returns 1 (the hook's "refused"). */
static int registry_refuse_other_live(PGconn *conn, const struct registry_shipped *s,
                                      const char *what, struct pl_pg_error *err)
{
    const char *pv[1] = {s->live.version_id};
    PGresult *v =
        s->live_found
            ? pl_pg_query(conn, "SELECT version FROM prompt_versions WHERE id = $1", 1, pv, err)
            : NULL;
    snprintf(err->message, sizeof(err->message),
             "cannot %s: version %s of the prompt is live now, not the one this deployment "
             "shipped",
             what, v && PQntuples(v) ? PQgetvalue(v, 0, 0) : "(none)");
    err->sqlstate[0] = '\0';
    if (v)
        PQclear(v);
    return 1;
}

int pl_registry_rollback_hook(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              void *arg, struct pl_pg_error *err)
{
    const char *actor = arg ? arg : "system";
    struct registry_shipped s;
    int found = registry_shipped_read(conn, tenant_id, deployment_id, &s, err);
    if (found <= 0)
        return found;
    /* The live row serves the shipped version, to every key or (a canary) to some: either
     * way base goes back to everyone. Anything else means something newer is live. */
    if (!s.live_found || strcmp(s.live.version_id, s.shipped) != 0)
        return registry_refuse_other_live(conn, &s, "roll back", err);
    return pl_registry_deploy(conn, tenant_id, s.env, s.prompt_id, s.base, actor, err);
}

int pl_registry_promote_hook(PGconn *conn, const char *tenant_id, const char *deployment_id,
                             void *arg, struct pl_pg_error *err)
{
    const char *actor = arg ? arg : "system";
    struct registry_shipped s;
    int found = registry_shipped_read(conn, tenant_id, deployment_id, &s, err);
    if (found <= 0)
        return found;
    if (!s.live_found || strcmp(s.live.version_id, s.shipped) != 0)
        return registry_refuse_other_live(conn, &s, "promote", err);
    if (s.live.rollout_pct >= 100 || s.live.rollout_pct >= s.rollout_pct) {
        snprintf(err->message, sizeof(err->message),
                 "cannot promote: the shipped version already serves %d %% of the routing keys",
                 s.live.rollout_pct);
        err->sqlstate[0] = '\0';
        return 1;
    }
    if (s.rollout_pct >= 100)
        return pl_registry_deploy(conn, tenant_id, s.env, s.prompt_id, s.shipped, actor, err);
    char share[16];
    snprintf(share, sizeof(share), "%d", s.rollout_pct);
    return registry_deploy_row(conn, tenant_id, s.env, s.prompt_id, s.shipped, share,
                               s.live.stable_version_id, actor, err);
}
