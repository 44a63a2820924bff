/* The prompt-deployment lifecycle: the table of moves and the guarded transition. */
#include "deploy.h"

#include "audit.h"
#include "deploy_store.h"
#include "outbox.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const deploy_status_names[PL_DEPLOY_NSTATUS] = {
    NULL,      "proposed",   "ab_running", "ab_passed",   "ab_failed",
    "shipped", "monitoring", "regressed",  "rolled_back", "rejected",
};

static const char *const deploy_actor_names[PL_ACTOR_NACTORS] = {
    "differ",
    "abharness",
    "system:autoship",
    "owner",
    "monitor",
    "system:auto_rollback",
    "system:canary_promote",
};

#define BIT(s) (1u << (s))

/* The lifecycle (architecture §5), row for row: the statuses a move may start from, where it goes,
 * and who may. */
static const struct deploy_move {
    unsigned from; /* bit set of statuses */
    enum pl_deploy_status to;
    enum pl_deploy_actor actor;
} deploy_moves[] = {
    {BIT(PL_DEPLOY_NEW), PL_DEPLOY_PROPOSED, PL_ACTOR_DIFFER},
    {BIT(PL_DEPLOY_PROPOSED), PL_DEPLOY_AB_RUNNING, PL_ACTOR_ABHARNESS},
    {BIT(PL_DEPLOY_AB_RUNNING), PL_DEPLOY_AB_PASSED, PL_ACTOR_ABHARNESS},
    {BIT(PL_DEPLOY_AB_RUNNING), PL_DEPLOY_AB_FAILED, PL_ACTOR_ABHARNESS},
    {BIT(PL_DEPLOY_AB_PASSED), PL_DEPLOY_SHIPPED, PL_ACTOR_AUTOSHIP},
    {BIT(PL_DEPLOY_AB_PASSED) | BIT(PL_DEPLOY_PROPOSED), PL_DEPLOY_SHIPPED, PL_ACTOR_OWNER},
    {BIT(PL_DEPLOY_SHIPPED), PL_DEPLOY_MONITORING, PL_ACTOR_MONITOR},
    {BIT(PL_DEPLOY_MONITORING), PL_DEPLOY_REGRESSED, PL_ACTOR_MONITOR},
    /* the promotion keeps the seed's status: only rollout_pct moves (architecture §7) */
    {BIT(PL_DEPLOY_MONITORING), PL_DEPLOY_MONITORING, PL_ACTOR_CANARY_PROMOTE},
    {BIT(PL_DEPLOY_SHIPPED) | BIT(PL_DEPLOY_MONITORING) | BIT(PL_DEPLOY_REGRESSED),
     PL_DEPLOY_ROLLED_BACK, PL_ACTOR_OWNER},
    {BIT(PL_DEPLOY_SHIPPED) | BIT(PL_DEPLOY_MONITORING) | BIT(PL_DEPLOY_REGRESSED),
     PL_DEPLOY_ROLLED_BACK, PL_ACTOR_AUTO_ROLLBACK},
    /* "any non-terminal deployment" (the seed): a live one is taken back as by a rollback
     * (the registry hook restores the replaced version) and ends rejected with the reason */
    {BIT(PL_DEPLOY_PROPOSED) | BIT(PL_DEPLOY_AB_RUNNING) | BIT(PL_DEPLOY_AB_PASSED) |
         BIT(PL_DEPLOY_SHIPPED) | BIT(PL_DEPLOY_MONITORING) | BIT(PL_DEPLOY_REGRESSED),
     PL_DEPLOY_REJECTED, PL_ACTOR_OWNER},
};

const char *pl_deploy_status_name(enum pl_deploy_status s)
{
    return (s > PL_DEPLOY_NEW && s < PL_DEPLOY_NSTATUS) ? deploy_status_names[s] : NULL;
}

int pl_deploy_status_parse(const char *name, enum pl_deploy_status *out)
{
    for (int s = PL_DEPLOY_PROPOSED; s < PL_DEPLOY_NSTATUS; s++)
        if (strcmp(name, deploy_status_names[s]) == 0) {
            *out = (enum pl_deploy_status)s;
            return 0;
        }
    return -1;
}

const char *pl_deploy_actor_name(enum pl_deploy_actor a)
{
    return (a >= 0 && a < PL_ACTOR_NACTORS) ? deploy_actor_names[a] : NULL;
}

bool pl_deploy_terminal(enum pl_deploy_status s)
{
    return s == PL_DEPLOY_AB_FAILED || s == PL_DEPLOY_REJECTED || s == PL_DEPLOY_ROLLED_BACK;
}

static unsigned deploy_from_set(enum pl_deploy_status to, enum pl_deploy_actor actor)
{
    unsigned set = 0;
    for (size_t i = 0; i < sizeof(deploy_moves) / sizeof(deploy_moves[0]); i++)
        if (deploy_moves[i].to == to && deploy_moves[i].actor == actor)
            set |= deploy_moves[i].from;
    return set;
}

bool pl_deploy_allowed(enum pl_deploy_status from, enum pl_deploy_status to,
                       enum pl_deploy_actor actor)
{
    if (from < 0 || from >= PL_DEPLOY_NSTATUS || to < 0 || to >= PL_DEPLOY_NSTATUS)
        return false;
    return (deploy_from_set(to, actor) & BIT(from)) != 0;
}

int pl_deploy_allowed_from(enum pl_deploy_status to, enum pl_deploy_actor actor, char *buf,
                           size_t bufsz)
{
    unsigned set = deploy_from_set(to, actor);
    size_t len = 0;
    int n = 0;
    /* Counts every status even when buf is too small; snprintf keeps buf terminated. */
    len += (size_t)snprintf(buf, bufsz, "{");
    for (int s = PL_DEPLOY_PROPOSED; s < PL_DEPLOY_NSTATUS; s++) {
        if (!(set & BIT(s)))
            continue;
        len += (size_t)snprintf(len < bufsz ? buf + len : NULL, len < bufsz ? bufsz - len : 0,
                                "%s%s", n++ ? "," : "", deploy_status_names[s]);
    }
    snprintf(len < bufsz ? buf + len : NULL, len < bufsz ? bufsz - len : 0, "}");
    return n;
}

static enum pl_transition_result deploy_fail(PGconn *conn, struct pl_pg_error *err)
{
    struct pl_pg_error ignored;
    (void)err;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return PL_TRANSITION_ERROR;
}

/* The outbox event and the audit entry of a move (from_name NULL: a creation), written in
 * the caller's transaction. */
static int deploy_announce(PGconn *conn, const char *tenant_id, const char *project_id,
                           const char *deployment_id, const char *from_name, const char *to_name,
                           const char *at, const char *rollout_pct, enum pl_deploy_actor actor,
                           const char *actor_id, const char *reason, const char *topic,
                           struct pl_pg_error *err)
{
    const char *actor_name = pl_deploy_actor_name(actor);
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "schema_version", json_object_new_int(1));
    json_object_object_add(ev, "tenant_id", json_object_new_string(tenant_id));
    json_object_object_add(ev, "project_id", json_object_new_string(project_id));
    json_object_object_add(ev, "deployment_id", json_object_new_string(deployment_id));
    json_object_object_add(ev, "from", from_name ? json_object_new_string(from_name) : NULL);
    json_object_object_add(ev, "to", json_object_new_string(to_name));
    json_object_object_add(ev, "at", json_object_new_string(at));
    json_object_object_add(ev, "actor", json_object_new_string(actor_id ? actor_id : actor_name));
    long long rollout = 0; /* from the row's integer column: always a number */
    pl_parse_ll(rollout_pct, &rollout);
    json_object_object_add(ev, "rollout_pct", json_object_new_int64(rollout));
    const char *ev_text =
        json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    json_object *detail = json_object_new_object();
    json_object_object_add(detail, "from", from_name ? json_object_new_string(from_name) : NULL);
    json_object_object_add(detail, "to", json_object_new_string(to_name));
    json_object_object_add(detail, "role", json_object_new_string(actor_name));
    /* the share of users served the deployment's version after the move (the chart's canary) */
    json_object_object_add(detail, "rollout_pct", json_object_new_int64(rollout));
    if (reason)
        json_object_object_add(detail, "reason", json_object_new_string(reason));
    const char *detail_text = json_object_to_json_string_ext(
        detail, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

    int failed = pl_outbox_write(conn, topic, deployment_id, ev_text, err) ||
                 pl_audit_append(conn, tenant_id, actor_id ? actor_id : actor_name,
                                 from_name ? "deployment.transition" : "deployment.create",
                                 deployment_id, detail_text, err);
    json_object_put(ev);
    json_object_put(detail);
    return failed ? -1 : 0;
}

enum pl_transition_result pl_deploy_transition(PGconn *conn, const struct pl_deploy_change *ch,
                                               char **row_json, char *current,
                                               struct pl_pg_error *err)
{
    if (row_json)
        *row_json = NULL;
    err->message[0] = '\0';
    char allowed[160];
    pl_deploy_allowed_from(ch->to, ch->actor, allowed, sizeof(allowed));
    const char *to_name = pl_deploy_status_name(ch->to);

    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return PL_TRANSITION_ERROR;
    /* The CTE locks the row and remembers its old status; the UPDATE's status test is the
     * compare-and-set. Under READ COMMITTED a concurrent winner is re-read after its commit,
     * so exactly one of two racing moves matches. */
    const char *params[8] = {
        ch->deployment_id,    ch->tenant_id,      to_name,        allowed, ch->approved_by,
        ch->rejection_reason, ch->ab_report_json, ch->rollout_pct};
    PGresult *res = pl_pg_query(
        conn,
        "WITH old AS (SELECT id, status FROM prompt_deployments"
        "             WHERE id = $1 AND tenant_id = $2 FOR UPDATE)"
        " UPDATE prompt_deployments d SET status = $3, updated_at = now(),"
        "   approved_by = coalesce($5, d.approved_by),"
        "   rejection_reason = coalesce($6, d.rejection_reason),"
        "   ab_report = coalesce($7::jsonb, d.ab_report),"
        "   shipped_at = CASE WHEN $3 = 'shipped' THEN now() ELSE d.shipped_at END,"
        "   rolled_back_at = CASE WHEN $3 = 'rolled_back' OR ($3 = 'rejected'"
        "     AND old.status IN ('shipped', 'monitoring', 'regressed')) THEN now()"
        "     ELSE d.rolled_back_at END,"
        "   rollout_pct = CASE WHEN $3 IN ('rolled_back', 'rejected') THEN 0"
        "     WHEN $3 = 'shipped' THEN (SELECT CASE WHEN p.ship_canary_pct > 0"
        "       AND d.prompt_id IS NOT NULL THEN p.ship_canary_pct ELSE 100 END"
        "       FROM projects p WHERE p.id = d.project_id)"
        "     ELSE coalesce($8::int, d.rollout_pct) END"
        " FROM old WHERE d.id = old.id AND d.status = ANY($4::text[])"
        "   AND (old.status <> $3 OR d.rollout_pct < $8::int)"
        " RETURNING old.status, d.project_id, pl_deployment_json(d)::text, pl_ts(d.updated_at),"
        "   d.rollout_pct",
        8, params, err);
    if (!res)
        return deploy_fail(conn, err);
    if (PQntuples(res) == 0) {
        PQclear(res);
        const char *p2[2] = {ch->deployment_id, ch->tenant_id};
        res = pl_pg_query(conn,
                          "SELECT status FROM prompt_deployments WHERE id = $1 AND tenant_id = $2",
                          2, p2, err);
        if (!res)
            return deploy_fail(conn, err);
        enum pl_transition_result r = PL_TRANSITION_NOT_FOUND;
        if (PQntuples(res) == 1) {
            r = PL_TRANSITION_CONFLICT;
            if (current)
                snprintf(current, 16, "%s", PQgetvalue(res, 0, 0));
        }
        PQclear(res);
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, err);
        return r;
    }
    const char *from_name = PQgetvalue(res, 0, 0);
    int hooked = 0;
    int failed =
        deploy_announce(conn, ch->tenant_id, PQgetvalue(res, 0, 1), ch->deployment_id, from_name,
                        to_name, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4), ch->actor,
                        ch->actor_id, ch->rejection_reason, ch->events_topic, err) ||
        (ch->hook &&
         (hooked = ch->hook(conn, ch->tenant_id, ch->deployment_id, ch->hook_arg, err)) != 0) ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0;
    if (failed && hooked == 1) { /* the hook refused: nothing of the move stays */
        if (current)
            snprintf(current, 16, "%s", from_name);
        PQclear(res);
        struct pl_pg_error ignored;
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
        return PL_TRANSITION_CONFLICT;
    }
    if (failed) {
        PQclear(res);
        return deploy_fail(conn, err);
    }
    if (row_json)
        *row_json = strdup(PQgetvalue(res, 0, 2));
    PQclear(res);
    /* A hook may have changed the row (e.g. shipped_version_id): answer with what is stored. */
    if (row_json && ch->hook) {
        char *stored = NULL;
        struct pl_pg_error ignored;
        if (pl_deploy_store_get(conn, ch->tenant_id, ch->deployment_id, &stored, &ignored) == 1) {
            free(*row_json);
            *row_json = stored;
        }
    }
    return PL_TRANSITION_OK;
}

enum pl_transition_result pl_deploy_create(PGconn *conn, const struct pl_deploy_proposal *p,
                                           char id[37], struct pl_pg_error *err)
{
    id[0] = '\0';
    if (!pl_deploy_allowed(PL_DEPLOY_NEW, PL_DEPLOY_PROPOSED, PL_ACTOR_DIFFER))
        return PL_TRANSITION_CONFLICT;
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return PL_TRANSITION_ERROR;
    /* DO NOTHING on either unique index: an open deployment for this (project, signature),
     * or one created from the same cluster event — the creation's compare-and-set. */
    const char *params[11] = {p->tenant_id,       p->project_id,      p->cluster_signature,
                              p->current_prompt,  p->proposed_prompt, p->rationale,
                              p->prompt_id,       p->base_version_id, p->cluster_id,
                              p->source_event_id, p->shown_trace_ids};
    PGresult *res = pl_pg_query(
        conn,
        "INSERT INTO prompt_deployments (tenant_id, project_id, cluster_signature, status,"
        " current_prompt, proposed_prompt, rationale, prompt_id, base_version_id, cluster_id,"
        " source_event_id, shown_trace_ids)"
        " VALUES ($1, $2, $3, 'proposed', $4, $5, $6, $7, $8, $9, $10, coalesce($11::text[], '{}'))"
        " ON CONFLICT DO NOTHING RETURNING id, pl_ts(created_at)",
        11, params, err);
    if (!res)
        return deploy_fail(conn, err);
    if (PQntuples(res) == 0) {
        PQclear(res);
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, err);
        return PL_TRANSITION_CONFLICT;
    }
    snprintf(id, 37, "%s", PQgetvalue(res, 0, 0));
    int failed = deploy_announce(conn, p->tenant_id, p->project_id, id, NULL,
                                 pl_deploy_status_name(PL_DEPLOY_PROPOSED), PQgetvalue(res, 0, 1),
                                 "0", PL_ACTOR_DIFFER, NULL, NULL, p->events_topic, err) ||
                 pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0;
    PQclear(res);
    if (failed) {
        id[0] = '\0';
        return deploy_fail(conn, err);
    }
    return PL_TRANSITION_OK;
}
