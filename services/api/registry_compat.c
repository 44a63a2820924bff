/* The Adaline (GET /v2/deployments) and TrueFoundry (/api/ml/v1/prompt-versions) surfaces over the
 * registry. The Adaline read is what applications poll for their live prompt: one indexed query
 * whose single row is the finished JSON, copied once into the response. */
#include "api.h"

#include "params.h"
#include "registry.h"
#include "registry_json.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TF_FQN_MAX   1024
#define TF_TAGS_MAX  20
#define TF_TAG_MAX   64
#define TF_FQN_KIND  "chat_prompt:"
#define TF_FQN_USAGE "fqn must be chat_prompt:{tenant}/{ml_repo}/{prompt} or ...:{version}"

/* Adaline's deployment object from one deployment row d (the subquery between
 * ADALINE_HEAD and ADALINE_TAIL, which adds routed_version_id: the version the row serves to
 * the request's routing key, pl_routed_version of 0007), its environment and that version,
 * whose snapshot was computed when the version was written (0004_registry.sql). A canary row
 * serves two versions under one id: per routing key the answer is stable, and without a key
 * it is the stable version. Rows are append-only: updatedAt is createdAt and the updater is
 * the creator. The statement is prepared once per connection, so its plan is a generic one:
 * environment and version are reached by primary key behind an OFFSET 0 fence, so that the
 * tenant checks on them can never turn into a scan of the tenant's versions whatever the
 * statistics say. */
#define ADALINE_MS "floor(extract(epoch FROM d.created_at) * 1000)::bigint"
#define ADALINE_HEAD                                                                               \
    "SELECT row_to_json(x)::text FROM (SELECT d.id, " ADALINE_MS " AS \"createdAt\", " ADALINE_MS  \
    " AS \"updatedAt\", d.created_by AS \"createdByUserId\","                                      \
    " d.created_by AS \"updatedByUserId\", e.project_id AS \"projectId\","                         \
    " d.prompt_id AS \"promptId\", d.environment_id AS \"deploymentEnvironmentId\","               \
    " v.adaline_prompt AS prompt FROM ("
/* the row's columns and the version it serves to $4 (the routing key, NULL when none) */
#define ADALINE_ROW                                                                                \
    "SELECT *, pl_routed_version(environment_deployments, $4::text) AS routed_version_id"          \
    " FROM environment_deployments"
#define ADALINE_TAIL                                                                               \
    ") d CROSS JOIN LATERAL (SELECT project_id, tenant_id FROM environments"                       \
    "   WHERE id = d.environment_id OFFSET 0) e"                                                   \
    " CROSS JOIN LATERAL (SELECT adaline_prompt, tenant_id FROM prompt_versions"                   \
    "   WHERE id = d.routed_version_id OFFSET 0) v"                                                \
    " WHERE e.tenant_id = d.tenant_id AND v.tenant_id = d.tenant_id) x"

/* The newest row of (environment, prompt), read from the environment_deployments_live index. */
static const char adaline_current_sql[] =
    ADALINE_HEAD ADALINE_ROW " WHERE environment_id = $1 AND prompt_id = $2 AND tenant_id = $3"
                             " ORDER BY seq DESC LIMIT 1" ADALINE_TAIL;

static const char adaline_one_sql[] =
    ADALINE_HEAD ADALINE_ROW " WHERE id = $1 AND prompt_id = $2 AND tenant_id = $3"
                             " AND ($5::uuid IS NULL OR environment_id = $5)" ADALINE_TAIL;

static void compat_error(PGconn *conn, const PGresult *res, struct pl_pg_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
    snprintf(err->message, sizeof(err->message), "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : PQerrorMessage(conn));
}

/*
 * Runs the named prepared statement, preparing it first on a connection that does not know it
 * (new, or reset by the pool: the server answers 26000): the hot read is parsed and planned
 * once per pooled connection instead of once per request. Outside a transaction only.
 * @returns the result (caller PQclear()s it), or NULL with err.
 */
static PGresult *compat_exec_prepared(PGconn *conn, const char *name, const char *sql, int n,
                                      const char *const *params, struct pl_pg_error *err)
{
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecPrepared(conn, name, n, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            return res;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (attempt > 0 || !state || strcmp(state, "26000") != 0) {
            compat_error(conn, res, err);
            PQclear(res);
            return NULL;
        }
        PQclear(res);
        PGresult *prep = PQprepare(conn, name, sql, n, NULL);
        if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
            compat_error(conn, prep, err);
            PQclear(prep);
            return NULL;
        }
        PQclear(prep);
    }
}

void api_adaline_deployment(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"promptId", "deploymentId", "deploymentEnvironmentId",
                                          "routing_key", NULL};
    if (!api_query_params(req, res, allowed, NULL))
        return;
    const char *prompt = pl_http_query(req, "promptId");
    const char *deployment = pl_http_query(req, "deploymentId");
    const char *env = pl_http_query(req, "deploymentEnvironmentId");
    const char *routing_key = pl_http_query(req, "routing_key");
    if (!prompt || !*prompt) {
        pl_http_error(res, 400, "promptId is required");
        return;
    }
    if (!pl_uuid_valid(prompt)) {
        pl_http_error(res, 400, "promptId must be a uuid");
        return;
    }
    if (!deployment || !*deployment) {
        pl_http_error(res, 400, "deploymentId is required");
        return;
    }
    bool current = strcmp(deployment, "latest") == 0 || strcmp(deployment, "current") == 0;
    if (!current && !pl_uuid_valid(deployment)) {
        pl_http_error(res, 400, "deploymentId must be a deployment id, latest or current");
        return;
    }
    if (current && (!env || !*env)) {
        pl_http_error(res, 400, "deploymentEnvironmentId is required when deploymentId is %s",
                      deployment);
        return;
    }
    if (env && !pl_uuid_valid(env)) {
        pl_http_error(res, 400, "deploymentEnvironmentId must be a uuid");
        return;
    }
    char why[128];
    if (routing_key && pl_registry_routing_key_check(routing_key, why, sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    PGresult *r;
    if (current) {
        const char *p[4] = {env, prompt, who.tenant_id, routing_key};
        r = compat_exec_prepared(conn, "pl_adaline_current", adaline_current_sql, 4, p, &err);
    } else {
        const char *p[5] = {deployment, prompt, who.tenant_id, routing_key, env};
        r = compat_exec_prepared(conn, "pl_adaline_one", adaline_one_sql, 5, p, &err);
    }
    api_db_release(req, conn);
    if (!r)
        api_db_error(res, &err);
    else if (PQntuples(r) == 0)
        pl_http_error(res, 404, "deployment not found");
    else
        pl_http_json_text(res, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    PQclear(r);
}

/* A parsed fqn: pointers into buf; version 0 when the fqn names no version. */
struct tf_fqn {
    char buf[TF_FQN_MAX + 1];
    const char *tenant, *project, *prompt;
    long long version;
};

/*
 * chat_prompt:{tenant}/{ml_repo}/{prompt}[:{version}]. The tenant ends at the first '/', the
 * prompt starts after the last (prompt names hold no '/' or ':'), and the project is what lies
 * between — project names are free text. @returns 0, or -1 when malformed.
 */
static int tf_fqn_parse(const char *s, struct tf_fqn *f)
{
    size_t kind = strlen(TF_FQN_KIND);
    if (strncmp(s, TF_FQN_KIND, kind) != 0 || strlen(s) > TF_FQN_MAX)
        return -1;
    snprintf(f->buf, sizeof(f->buf), "%s", s + kind);
    char *first = strchr(f->buf, '/'), *last = strrchr(f->buf, '/');
    if (!first || first == last)
        return -1;
    *first = '\0';
    *last = '\0';
    f->tenant = f->buf;
    f->project = first + 1;
    f->prompt = last + 1;
    f->version = 0;
    char *colon = strrchr(last + 1, ':');
    if (colon) {
        *colon = '\0';
        if (pl_parse_ll(colon + 1, &f->version) != 0 || f->version < 1 || f->version > INT_MAX)
            return -1;
    }
    return *f->tenant && *f->project && *f->prompt ? 0 : -1;
}

/* A version in TrueFoundry's shape, with the names its fqn and manifest are made of. */
#define TF_VERSION_JSON "pl_tf_version_json(v, tn.name, pr.name, p.name, p.project_id)::text"
#define TF_VERSION_JOINS                                                                           \
    " JOIN prompts p ON p.id = v.prompt_id AND p.tenant_id = v.tenant_id"                          \
    " JOIN projects pr ON pr.id = p.project_id AND pr.tenant_id = v.tenant_id"                     \
    " JOIN tenants tn ON tn.id = v.tenant_id"

/*
 * Filters first, then the JSON of the requested page only.
 *
 * TrueFoundry has no environments, so nothing in its filters means "the live
 * version": `version=latest` is the newest number and a tag is a movable name, both unrelated
 * to what production serves. routing_key ($14) is therefore its own version selector: per
 * prompt, the version the project's production environment serves to that key (the newest
 * production row through pl_routed_version, as GET /v2/deployments?deploymentId=current
 * answers it). The other filters choose the prompts; the api refuses routing_key together with
 * another version selector (version, a versioned fqn, tag), which would ask two questions.
 */
static const char tf_list_sql[] =
    "WITH f AS (SELECT v, tn.name AS tenant_name, pr.name AS project_name, p.name AS prompt_name,"
    "   p.project_id FROM prompt_versions v" TF_VERSION_JOINS " WHERE v.tenant_id = $1"
    "   AND ($2::text IS NULL OR tn.name = $2) AND ($3::text IS NULL OR pr.name = $3)"
    "   AND ($4::text IS NULL OR p.name = $4) AND ($5::int IS NULL OR v.version = $5)"
    "   AND ($6::text IS NULL OR p.name = $6) AND ($7::int IS NULL OR v.version = $7)"
    "   AND (NOT $8::boolean OR v.version = (SELECT max(l.version) FROM prompt_versions l"
    "        WHERE l.prompt_id = v.prompt_id AND l.tenant_id = $1))"
    "   AND ($9::uuid IS NULL OR v.prompt_id = $9)"
    "   AND ($10::uuid IS NULL OR p.project_id = $10)"
    "   AND ($11::text IS NULL OR EXISTS (SELECT 1 FROM prompt_tags t WHERE t.tenant_id = $1"
    "        AND t.prompt_id = v.prompt_id AND t.tag = $11 AND t.version_id = v.id))"
    "   AND ($14::text IS NULL OR v.id = (SELECT pl_routed_version(d, $14::text)"
    "        FROM environments en JOIN environment_deployments d ON d.environment_id = en.id"
    "          AND d.prompt_id = v.prompt_id AND d.tenant_id = $1"
    "        WHERE en.tenant_id = $1 AND en.project_id = p.project_id"
    "          AND en.name = 'production' ORDER BY d.seq DESC LIMIT 1)))"
    " SELECT (SELECT count(*) FROM f),"
    " coalesce((SELECT string_agg(pl_tf_version_json(v, tenant_name, project_name, prompt_name,"
    "   project_id)::text, ',' ORDER BY (v).created_at DESC, (v).version DESC, (v).id DESC)"
    "   FROM (SELECT * FROM f ORDER BY (v).created_at DESC, (v).version DESC, (v).id DESC"
    "   LIMIT $12 OFFSET $13) page), '')";

void api_truefoundry_versions(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who))
        return;
    static const char *const allowed[] = {"fqn",         "tag",        "name",   "version",
                                          "prompt_id",   "ml_repo_id", "offset", "limit",
                                          "routing_key", NULL};
    if (!api_query_params(req, res, allowed, NULL))
        return;
    char why[128];
    long long limit, offset;
    if (pl_param_int("limit", pl_http_query(req, "limit"), 10, 1, 100, &limit, why, sizeof(why)) !=
            0 ||
        pl_param_int("offset", pl_http_query(req, "offset"), 0, 0, 1000000000LL, &offset, why,
                     sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    const char *fqn = pl_http_query(req, "fqn"), *version = pl_http_query(req, "version");
    const char *prompt_id = pl_http_query(req, "prompt_id");
    const char *repo_id = pl_http_query(req, "ml_repo_id");
    struct tf_fqn f = {.tenant = NULL, .project = NULL, .prompt = NULL, .version = 0};
    if (fqn && tf_fqn_parse(fqn, &f) != 0) {
        pl_http_error(res, 400, TF_FQN_USAGE);
        return;
    }
    long long v = 0;
    bool latest = version && strcmp(version, "latest") == 0;
    if (version && !latest && (pl_parse_ll(version, &v) != 0 || v < 1 || v > INT_MAX)) {
        pl_http_error(res, 400, "version must be an integer >= 1 or latest");
        return;
    }
    if ((prompt_id && !pl_uuid_valid(prompt_id)) || (repo_id && !pl_uuid_valid(repo_id))) {
        pl_http_error(res, 400, "%s must be a uuid",
                      prompt_id && !pl_uuid_valid(prompt_id) ? "prompt_id" : "ml_repo_id");
        return;
    }
    const char *routing_key = pl_http_query(req, "routing_key"), *tag = pl_http_query(req, "tag");
    if (routing_key && pl_registry_routing_key_check(routing_key, why, sizeof(why)) != 0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    if (routing_key && (version || f.version || tag)) {
        pl_http_error(res, 400,
                      "routing_key selects the version production serves to the key: it cannot "
                      "be combined with %s",
                      version     ? "version"
                      : f.version ? "a versioned fqn"
                                  : "tag");
        return;
    }
    char fver[24], pver[24], lim[24], off[24];
    snprintf(fver, sizeof(fver), "%lld", f.version);
    snprintf(pver, sizeof(pver), "%lld", v);
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(off, sizeof(off), "%lld", offset);
    const char *p[14] = {who.tenant_id,
                         f.tenant,
                         f.project,
                         f.prompt,
                         f.version ? fver : NULL,
                         pl_http_query(req, "name"),
                         v ? pver : NULL,
                         latest ? "true" : "false",
                         prompt_id,
                         repo_id,
                         tag,
                         lim,
                         off,
                         routing_key};
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    PGresult *r = pl_pg_query(conn, tf_list_sql, 14, p, &err);
    api_db_release(req, conn);
    if (!r) {
        api_db_error(res, &err);
        return;
    }
    const char *items = PQgetvalue(r, 0, 1), *total = PQgetvalue(r, 0, 0);
    size_t cap = strlen(items) + strlen(total) + 96;
    char *json = malloc(cap);
    if (json) {
        snprintf(json, cap,
                 "{\"data\":[%s],\"pagination\":{\"total\":%s,\"offset\":%lld,"
                 "\"limit\":%lld}}",
                 items, total, offset, limit);
        api_json_owned(res, 200, json);
    } else {
        pl_http_error(res, 500, "out of memory");
    }
    PQclear(r);
}

/* The body of a tag update; sets the response and returns false when it is bad. */
static bool tf_tags_body(json_object *body, struct pl_http_response *res, const char **version_id,
                         json_object **tags, bool *force)
{
    *version_id = NULL;
    *tags = NULL;
    *force = false;
    json_object_object_foreach(body, key, val)
    {
        if (strcmp(key, "prompt_version_id") == 0) {
            if (!json_object_is_type(val, json_type_string)) {
                pl_http_error(res, 400, "prompt_version_id must be a string");
                return false;
            }
            *version_id = json_object_get_string(val);
        } else if (strcmp(key, "tags") == 0) {
            if (!json_object_is_type(val, json_type_array)) {
                pl_http_error(res, 400, "tags must be an array");
                return false;
            }
            *tags = val;
        } else if (strcmp(key, "force") == 0) {
            if (!json_object_is_type(val, json_type_boolean)) {
                pl_http_error(res, 400, "force must be a boolean");
                return false;
            }
            *force = json_object_get_boolean(val);
        } else {
            pl_http_error(res, 400, "unknown field \"%s\"", key);
            return false;
        }
    }
    if (!*version_id || !*tags) {
        pl_http_error(res, 400, "%s is required", *version_id ? "tags" : "prompt_version_id");
        return false;
    }
    if (!pl_uuid_valid(*version_id)) {
        pl_http_error(res, 400, "prompt_version_id must be a uuid");
        return false;
    }
    size_t n = json_object_array_length(*tags);
    if (n > TF_TAGS_MAX) {
        pl_http_error(res, 422, "tags must hold at most %d tags", TF_TAGS_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(*tags, i);
        if (!json_object_is_type(t, json_type_string)) {
            pl_http_error(res, 400, "tags[%zu] must be a string", i);
            return false;
        }
        int len = json_object_get_string_len(t);
        if (len < 1 || len > TF_TAG_MAX || registry_has_nul(t)) {
            pl_http_error(res, 422, "tags[%zu] must be 1 to %d characters long (no \\u0000)", i,
                          TF_TAG_MAX);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(json_object_get_string(json_object_array_get_idx(*tags, j)),
                       json_object_get_string(t)) == 0) {
                pl_http_error(res, 422, "tags[%zu] repeats tag %s", i, json_object_get_string(t));
                return false;
            }
    }
    return true;
}

/* Answers 409 naming the first listed tag that another version of the prompt holds. */
static void tf_tags_conflict(struct pl_http_response *res, const char *tag, const char *version)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "tag %s is held by version %s", tag, version);
    long long n = 0;
    pl_parse_ll(version, &n);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", json_object_new_string(msg));
    json_object_object_add(o, "tag", json_object_new_string(tag));
    json_object_object_add(o, "version", json_object_new_int64(n));
    pl_http_json(res, 409, o);
}

/*
 * Afterwards exactly the listed tags point at the version: its other tags are removed, and a
 * listed tag held by another version of the prompt is a conflict unless force moves it. The
 * prompt's row lock serialises tag updates of one prompt. One transaction with its audit.
 */
static void tf_tags_tx(PGconn *conn, struct pl_http_response *res, const char *tenant_id,
                       const char *actor, const char *version_id, const char *tags_json, bool force)
{
    struct pl_pg_error err = REGISTRY_NO_ROW;
    PGresult *r = NULL;
    char *json = NULL, prompt_id[37];
    json_object *moved = json_object_new_array(), *removed = json_object_new_array();
    if (registry_begin(conn, tenant_id, &err) != 0)
        goto out_db;
    const char *lp[2] = {version_id, tenant_id};
    r = pl_pg_query(conn,
                    "SELECT v.prompt_id, v.version FROM prompt_versions v"
                    " JOIN prompts p ON p.id = v.prompt_id AND p.tenant_id = v.tenant_id"
                    " WHERE v.id = $1 AND v.tenant_id = $2 FOR UPDATE OF p",
                    2, lp, &err);
    if (!r)
        goto out_db;
    if (PQntuples(r) == 0) {
        pl_http_error(res, 404, "prompt version not found");
        goto out;
    }
    snprintf(prompt_id, sizeof(prompt_id), "%s", PQgetvalue(r, 0, 0));
    int version = (int)pl_pg_getll(r, 0, 1);
    PQclear(r);
    const char *p[4] = {prompt_id, tenant_id, version_id, tags_json};
    r = pl_pg_query(conn,
                    "SELECT t.tag, ov.version FROM prompt_tags t"
                    " JOIN prompt_versions ov ON ov.id = t.version_id AND ov.tenant_id = $2"
                    " WHERE t.prompt_id = $1 AND t.tenant_id = $2 AND t.version_id <> $3"
                    " AND t.tag IN (SELECT jsonb_array_elements_text($4::jsonb)) ORDER BY t.tag",
                    4, p, &err);
    if (!r)
        goto out_db;
    if (PQntuples(r) > 0 && !force) {
        tf_tags_conflict(res, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        goto out;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "tag", json_object_new_string(PQgetvalue(r, i, 0)));
        json_object_object_add(m, "from_version", json_object_new_int64(pl_pg_getll(r, i, 1)));
        json_object_array_add(moved, m);
    }
    PQclear(r);
    r = pl_pg_query(conn,
                    "WITH d AS (DELETE FROM prompt_tags WHERE prompt_id = $1 AND tenant_id = $2"
                    "   AND version_id = $3"
                    "   AND tag NOT IN (SELECT jsonb_array_elements_text($4::jsonb))"
                    "   RETURNING tag)"
                    " SELECT tag FROM d ORDER BY tag",
                    4, p, &err);
    if (!r)
        goto out_db;
    for (int i = 0; i < PQntuples(r); i++)
        json_object_array_add(removed, json_object_new_string(PQgetvalue(r, i, 0)));
    PQclear(r);
    r = NULL;
    if (pl_pg_exec(conn,
                   "INSERT INTO prompt_tags (prompt_id, tag, version_id, tenant_id)"
                   " SELECT $1, x, $3, $2 FROM jsonb_array_elements_text($4::jsonb) x"
                   " ON CONFLICT (prompt_id, tag) DO UPDATE SET version_id = EXCLUDED.version_id,"
                   "   updated_at = now() WHERE prompt_tags.version_id <> EXCLUDED.version_id",
                   4, p, &err) != 0)
        goto out_db;
    json_object *d = json_object_new_object();
    json_object_object_add(d, "prompt_id", json_object_new_string(prompt_id));
    json_object_object_add(d, "version", json_object_new_int(version));
    json_object_object_add(d, "tags", json_tokener_parse(tags_json));
    json_object_object_add(d, "removed", json_object_get(removed));
    json_object_object_add(d, "moved", json_object_get(moved));
    json_object_object_add(d, "force", json_object_new_boolean(force));
    if (registry_audit(conn, tenant_id, actor, "prompt_version.tags", version_id, d, &err) != 0)
        goto out_db;
    if (registry_commit_answer(conn, res, 200,
                               "SELECT " TF_VERSION_JSON " FROM prompt_versions v" TF_VERSION_JOINS
                               " WHERE v.id = $1 AND v.tenant_id = $2",
                               version_id, tenant_id, &err) != 0)
        goto out_db;
    goto out;
out_db:
    api_db_error(res, &err);
out:
    registry_rollback(conn);
    PQclear(r);
    free(json);
    json_object_put(moved);
    json_object_put(removed);
}

void api_truefoundry_tags(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    if (!api_authorize(req, res, PL_ROLES_WRITE, false, &who))
        return;
    char why[256];
    json_object *body = pl_param_json_object(req->body, req->body_len, false, why, sizeof(why));
    if (!body) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    const char *version_id;
    json_object *tags;
    bool force;
    PGconn *conn;
    if (tf_tags_body(body, res, &version_id, &tags, &force) && (conn = api_db(req, res))) {
        char actor[PL_ACTOR_SIZE];
        api_actor(&who, actor, sizeof(actor));
        tf_tags_tx(conn, res, who.tenant_id, actor, version_id,
                   json_object_to_json_string_ext(tags, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE),
                   force);
        api_db_release(req, conn);
    }
    json_object_put(body);
}
