/* The differ's stage logic: from a cluster event to a proposed deployment. */
#include "propose.h"

#include "deploy.h"
#include "log.h"
#include "metrics.h"
#include "params.h"
#include "registry.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFFER_EXCERPT_BYTES    1200 /* of each trace input/output shown to the LLM */
#define DIFFER_PASSING_EXAMPLES 2

/* Diagnose, then edit (ProTeGi's "textual gradient", GEPA's reflective mutation): naming
 * the cause first makes the edit target it instead of piling on instructions. */
static const char differ_system_prompt[] =
    "You improve the system prompts of LLM applications. You are given the current system "
    "prompt, a cluster of production failures that share one failure signature, examples of "
    "failing traces with the reason each one failed, and examples of passing behaviour that "
    "must be kept. First diagnose the root cause: what in the prompt lets these failures "
    "happen. Then edit the prompt minimally to remove that cause without changing the passing "
    "behaviour. Reply with one JSON object and nothing else: {\"diagnosis\": \"...\", "
    "\"proposed_prompt\": \"<the complete new system prompt>\", \"rationale\": \"<why the "
    "edit fixes the failures and keeps the rest>\"}.";

struct differ_context {
    char signature[80], template_[1024], error_type[160];
    long long count;
    char prompt_id[37], prompt_name[256], version_id[37];
    char *current;  /* the live version's system prompt */
    char *examples; /* the failing traces, as shown to the LLM */
    char *passing;
    char *shown_ids; /* text[] literal of the failing traces shown */
};

static void differ_context_free(struct differ_context *c)
{
    free(c->current);
    free(c->examples);
    free(c->passing);
    free(c->shown_ids);
}

static void differ_metric(const char *result)
{
    pl_metric_add(pl_metric_result_counter("pl_differ_events_total", result,
                                           "Cluster events handled by the differ, by outcome"),
                  1);
}

/* Writes at most max bytes of s, cut at a UTF-8 character boundary, marking the cut. */
static void differ_excerpt(FILE *f, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max) {
        fputs(s, f);
        return;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    fwrite(s, 1, max, f);
    fprintf(f, " [... %zu more bytes]", len - max);
}

/* The failure reason of a stored trace: its error, else the feedback of its failing rules. */
static void differ_failure_reason(FILE *f, const char *error, const char *eval_json)
{
    if (error && *error) {
        differ_excerpt(f, error, 400);
        return;
    }
    json_object *eval = json_tokener_parse(eval_json ? eval_json : "");
    bool any = false;
    if (eval && json_object_is_type(eval, json_type_object)) {
        json_object_object_foreach(eval, metric, res)
        {
            json_object *passed, *fb;
            if (json_object_object_get_ex(res, "passed", &passed) &&
                !json_object_get_boolean(passed)) {
                json_object_object_get_ex(res, "feedback", &fb);
                fprintf(f, "%sfailed eval rule %s: %s", any ? "; " : "", metric,
                        fb ? json_object_get_string(fb) : "");
                any = true;
            }
        }
    }
    if (!any)
        fputs("(no recorded reason)", f);
    json_object_put(eval);
}

/* Cluster, prompt, live version and example traces. @returns 1 ready, 0 nothing to propose
 * (reason filled), -1 database error. */
static int differ_load(PGconn *conn, const struct pl_config *cfg, const char *tenant,
                       const char *project, const char *cluster_id, struct differ_context *c,
                       char *reason, size_t reasonsz, struct pl_pg_error *err)
{
    const char *p3[3] = {tenant, project, cluster_id};
    PGresult *res =
        pl_pg_query(conn,
                    "SELECT signature, template, error_type, count FROM failure_clusters"
                    " WHERE tenant_id = $1 AND project_id = $2 AND id = $3",
                    3, p3, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        snprintf(reason, reasonsz, "cluster %s not found in project %s", cluster_id, project);
        return 0;
    }
    snprintf(c->signature, sizeof(c->signature), "%s", PQgetvalue(res, 0, 0));
    snprintf(c->template_, sizeof(c->template_), "%s", PQgetvalue(res, 0, 1));
    snprintf(c->error_type, sizeof(c->error_type), "%s", PQgetvalue(res, 0, 2));
    c->count = pl_pg_getll(res, 0, 3);
    PQclear(res);

    /* The prompt most of the cluster's traces name, if the registry knows it. */
    res = pl_pg_query(conn,
                      "SELECT p.id, p.name FROM cluster_members m"
                      " JOIN traces t ON t.project_id = $2 AND t.id = m.trace_id"
                      " JOIN prompts p ON p.project_id = $2 AND p.tenant_id = $1"
                      "   AND p.name = t.prompt_name"
                      " WHERE m.cluster_id = $3 GROUP BY p.id, p.name"
                      " ORDER BY count(*) DESC, p.name LIMIT 1",
                      3, p3, err);
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        snprintf(reason, reasonsz, "the traces of cluster %s name no prompt of the registry",
                 cluster_id);
        return 0;
    }
    snprintf(c->prompt_id, sizeof(c->prompt_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(c->prompt_name, sizeof(c->prompt_name), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);

    char env[37];
    int found = pl_registry_production_env(conn, tenant, project, env, err);
    if (found == 1)
        found = pl_registry_live_version(conn, tenant, env, c->prompt_id, c->version_id, err);
    if (found < 0)
        return -1;
    if (found == 0) {
        snprintf(reason, reasonsz, "prompt %s has no live version in production", c->prompt_name);
        return 0;
    }
    const char *pv[2] = {tenant, c->version_id};
    res = pl_pg_query(conn,
                      "SELECT manifest::text FROM prompt_versions WHERE tenant_id = $1 AND id = $2",
                      2, pv, err);
    if (!res)
        return -1;
    json_object *manifest = PQntuples(res) ? json_tokener_parse(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    const char *system = manifest ? pl_registry_manifest_system(manifest) : NULL;
    c->current = strdup(system ? system : "");
    json_object_put(manifest);

    /* Representative failures, chosen by a hash of their id: the same on every replica. */
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", cfg->differ_max_examples);
    const char *p4[4] = {tenant, project, cluster_id, limit};
    res = pl_pg_query(conn,
                      "SELECT t.id, t.input::text, coalesce(t.output, ''), t.error, t.eval::text"
                      " FROM cluster_members m JOIN traces t ON t.project_id = $2"
                      "   AND t.id = m.trace_id"
                      " WHERE m.cluster_id = $3 AND m.tenant_id = $1"
                      " ORDER BY md5(t.id), t.id LIMIT $4::int",
                      4, p4, err);
    if (!res)
        return -1;
    size_t len = 0, idlen = 0;
    FILE *f = open_memstream(&c->examples, &len);
    FILE *ids = open_memstream(&c->shown_ids, &idlen);
    fputc('{', ids);
    for (int i = 0; i < PQntuples(res); i++) {
        fprintf(f, "### Failing trace %d\nInput: ", i + 1);
        differ_excerpt(f, PQgetvalue(res, i, 1), DIFFER_EXCERPT_BYTES);
        fputs("\nOutput: ", f);
        differ_excerpt(f, PQgetvalue(res, i, 2), DIFFER_EXCERPT_BYTES);
        fputs("\nWhy it failed: ", f);
        differ_failure_reason(f, PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3),
                              PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4));
        fputs("\n\n", f);
        pl_pg_array_item(ids, PQgetvalue(res, i, 0), i == 0);
    }
    fputc('}', ids);
    fclose(ids);
    fclose(f);
    PQclear(res);

    /* Passing behaviour of the same prompt: no error, in no failure cluster. */
    const char *pp[3] = {tenant, project, c->prompt_name};
    res = pl_pg_query(conn,
                      "SELECT t.input::text, coalesce(t.output, '') FROM traces t"
                      " WHERE t.tenant_id = $1 AND t.project_id = $2 AND t.prompt_name = $3"
                      "   AND t.error IS NULL AND NOT EXISTS (SELECT 1 FROM cluster_members m"
                      "     WHERE m.trace_id = t.id AND m.tenant_id = $1)"
                      " ORDER BY t.created_at DESC, t.id LIMIT 2",
                      3, pp, err);
    if (!res)
        return -1;
    len = 0;
    f = open_memstream(&c->passing, &len);
    for (int i = 0; i < PQntuples(res); i++) {
        fprintf(f, "### Passing trace %d\nInput: ", i + 1);
        differ_excerpt(f, PQgetvalue(res, i, 0), DIFFER_EXCERPT_BYTES);
        fputs("\nOutput: ", f);
        differ_excerpt(f, PQgetvalue(res, i, 1), DIFFER_EXCERPT_BYTES);
        fputs("\n\n", f);
    }
    if (PQntuples(res) == 0)
        fputs("(none recorded)\n", f);
    fclose(f);
    PQclear(res);
    return 1;
}

static char *differ_user_message(const struct differ_context *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fprintf(f,
            "## Current system prompt\n<<<\n%s\n>>>\n\n## Failure cluster\nprompt: %s\n"
            "error type: %s\nsignature: %s\ntraces in the cluster: %lld\ntemplate: %s\n\n"
            "## Failing traces\n%s## Passing behaviour to keep\n%s",
            c->current, c->prompt_name, c->error_type, c->signature, c->count, c->template_,
            c->examples, c->passing);
    fclose(f);
    return text;
}

static char *differ_trim_dup(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

int pl_differ_check_reply(const char *reply, const char *current, size_t max_bytes, char **prompt,
                          char **rationale, char *why, size_t whysz)
{
    *prompt = *rationale = NULL;
    char perr[160];
    json_object *o = pl_json_object_parse(reply, strlen(reply), false, "it", perr, sizeof(perr));
    if (!o) {
        snprintf(why, whysz, "reply is not a JSON object: %s", perr);
        return -1;
    }
    int rc = -1;
    json_object *pp, *ra = NULL, *dg = NULL;
    if (!json_object_object_get_ex(o, "proposed_prompt", &pp) ||
        !json_object_is_type(pp, json_type_string)) {
        snprintf(why, whysz, "reply has no string proposed_prompt");
        goto out;
    }
    if ((json_object_object_get_ex(o, "rationale", &ra) && ra &&
         !json_object_is_type(ra, json_type_string)) ||
        (json_object_object_get_ex(o, "diagnosis", &dg) && dg &&
         !json_object_is_type(dg, json_type_string))) {
        snprintf(why, whysz, "reply's rationale and diagnosis must be strings");
        goto out;
    }
    char *p = differ_trim_dup(json_object_get_string(pp));
    char *cur = differ_trim_dup(current);
    if (!p || !cur) {
        snprintf(why, whysz, "out of memory");
    } else if (!*p) {
        snprintf(why, whysz, "proposed_prompt is empty");
    } else if (strlen(p) > max_bytes) {
        snprintf(why, whysz, "proposed_prompt has %zu bytes, over the limit of %zu", strlen(p),
                 max_bytes);
    } else if (strcmp(p, cur) == 0) {
        snprintf(why, whysz, "proposed_prompt is identical to the current prompt");
    } else {
        size_t len = 0;
        FILE *f = open_memstream(rationale, &len);
        bool diagnosed = dg && *json_object_get_string(dg);
        if (diagnosed)
            fprintf(f, "Diagnosis: %s", json_object_get_string(dg));
        if (ra && *json_object_get_string(ra))
            fprintf(f, "%s%s", diagnosed ? " Edit: " : "", json_object_get_string(ra));
        fclose(f);
        *prompt = p;
        p = NULL;
        rc = 0;
    }
    free(p);
    free(cur);
out:
    json_object_put(o);
    return rc;
}

/* True when the project already has an answer to this event or an open deployment for
 * the signature: replays and duplicates stop here, before any LLM call. */
static int differ_already_proposed(PGconn *conn, const char *tenant, const char *project,
                                   const char *signature, const char *event_id,
                                   struct pl_pg_error *err)
{
    const char *p[4] = {tenant, project, signature, event_id};
    PGresult *res = pl_pg_query(
        conn,
        "SELECT 1 FROM prompt_deployments WHERE tenant_id = $1 AND project_id = $2"
        " AND ((cluster_signature = $3 AND status NOT IN ('ab_failed', 'rejected', 'rolled_back'))"
        "      OR source_event_id = $4::bigint) LIMIT 1",
        4, p, err);
    if (!res)
        return -1;
    int found = PQntuples(res) > 0;
    PQclear(res);
    return found;
}

enum pl_handle_result pl_differ_handle_event(struct pl_service *svc, struct pl_llm_client *llm,
                                             json_object *ev, char *reason, size_t reasonsz)
{
    json_object *v;
    const char *tenant = json_object_get_string(json_object_object_get(ev, "tenant_id"));
    const char *project = json_object_get_string(json_object_object_get(ev, "project_id"));
    const char *cluster = json_object_get_string(json_object_object_get(ev, "cluster_id"));
    const char *signature = NULL;
    if (json_object_object_get_ex(ev, "signature", &v) && json_object_is_type(v, json_type_string))
        signature = json_object_get_string(v);
    /* event_id: the outbox row id as a decimal string (schemas/topics/clusters.schema.json) */
    char event_id[24];
    long long eid = 0;
    if (!json_object_object_get_ex(ev, "event_id", &v) ||
        !json_object_is_type(v, json_type_string) ||
        pl_parse_ll(json_object_get_string(v), &eid) != 0 || eid < 1 || !signature ||
        strncmp(signature, "sha256:", 7) != 0) {
        snprintf(reason, reasonsz, "cluster event needs a decimal event_id and a signature");
        return PL_HANDLE_DLQ;
    }
    snprintf(event_id, sizeof(event_id), "%lld", eid);

    struct pl_pg_error err;
    struct differ_context c = {0};
    enum pl_handle_result result = PL_HANDLE_RETRY;
    char why[512] = "";
    PGconn *conn = pl_pg_acquire(svc->pg, &err);
    if (!conn)
        goto db_error;
    int r = differ_already_proposed(conn, tenant, project, signature, event_id, &err);
    if (r == 0)
        r = differ_load(conn, &svc->cfg, tenant, project, cluster, &c, why, sizeof(why), &err) == 1
                ? 0
                : (why[0] ? 2 : -1);
    pl_pg_release(svc->pg, conn); /* not held across the LLM call */
    conn = NULL;
    if (r < 0)
        goto db_error;
    if (r == 1) {
        pl_info("cluster %s: a deployment for it exists already (event %s)", signature, event_id);
        differ_metric("already_proposed");
        result = PL_HANDLED;
        goto out;
    }
    if (r == 2) {
        pl_warn("cluster %s: nothing to propose: %s", signature, why);
        differ_metric("no_prompt");
        result = PL_HANDLED;
        goto out;
    }

    char *user = differ_user_message(&c);
    struct pl_llm_message msgs[2] = {{"system", differ_system_prompt}, {"user", user}};
    char *proposed = NULL, *rationale = NULL;
    bool transport_failed = false;
    for (int attempt = 1; attempt <= svc->cfg.differ_proposal_attempts && !proposed; attempt++) {
        if (attempt > 1)
            pl_sleep_ms(svc->cfg.llm_backoff_ms << (attempt - 2));
        struct pl_llm_call call = {
            .messages = msgs, .nmessages = 2, .temperature = 0.2, .json_object = true};
        if (pl_llm_run(llm, &call, 1) != 0) {
            snprintf(why, sizeof(why), "LLM call failed: %s", call.error);
            transport_failed = true;
            break;
        }
        if (pl_differ_check_reply(call.content, c.current, (size_t)svc->cfg.differ_max_prompt_bytes,
                                  &proposed, &rationale, why, sizeof(why)) != 0)
            pl_warn("cluster %s: proposal %d of %d refused: %s", signature, attempt,
                    svc->cfg.differ_proposal_attempts, why);
        pl_llm_call_clear(&call);
    }
    free(user);
    if (transport_failed) {
        snprintf(reason, reasonsz, "%s", why);
        differ_metric("llm_unavailable");
        goto out; /* transient: redelivered after a backoff */
    }
    if (!proposed) {
        pl_warn("cluster %s: no usable proposal after %d attempts, giving up: %s", signature,
                svc->cfg.differ_proposal_attempts, why);
        differ_metric("invalid_reply");
        result = PL_HANDLED;
        goto out;
    }

    struct pl_deploy_proposal prop = {
        .tenant_id = tenant,
        .project_id = project,
        .cluster_signature = signature,
        .cluster_id = cluster,
        .prompt_id = c.prompt_id,
        .base_version_id = c.version_id,
        .current_prompt = c.current,
        .proposed_prompt = proposed,
        .rationale = rationale ? rationale : "",
        .source_event_id = event_id,
        .shown_trace_ids = c.shown_ids,
        .events_topic = svc->cfg.kafka_topic_deployments,
    };
    char id[37];
    conn = pl_pg_acquire(svc->pg, &err);
    enum pl_transition_result tr =
        conn ? pl_deploy_create(conn, &prop, id, &err) : PL_TRANSITION_ERROR;
    free(proposed);
    free(rationale);
    if (tr == PL_TRANSITION_ERROR)
        goto db_error;
    if (tr == PL_TRANSITION_CONFLICT) {
        pl_info("cluster %s: another differ proposed first", signature);
        differ_metric("lost_race");
    } else {
        pl_info("cluster %s: deployment %s proposed for prompt %s", signature, id, c.prompt_name);
        differ_metric("proposed");
    }
    result = PL_HANDLED;
    goto out;
db_error:
    snprintf(reason, reasonsz, "database: %s", err.message);
out:
    if (conn)
        pl_pg_release(svc->pg, conn);
    differ_context_free(&c);
    return result;
}
