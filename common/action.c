/* Control-loop actions: the legal moves and the guarded transition (see action.h). */
#include "action.h"

#include "audit.h"
#include "outbox.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_status_names[PL_ACTION_NSTATUS] = {
    NULL, "pending", "pending_approval", "executed", "failed", "dry_run",
};

static const char *const action_actor_names[PL_ACTION_NACTORS] = {
    "controller",
    "owner",
    "system:hitl_timeout",
};

#define BIT(s) (1u << (s))

/* Every legal move: what an action may become, from which statuses, by whom. */
static const struct action_move {
    unsigned from;
    enum pl_action_status to;
    enum pl_action_actor actor;
} action_moves[] = {
    /* created in any outcome, or kept pending while the kill switch is on */
    {BIT(PL_ACTION_STATUS_NEW), PL_ACTION_PENDING, PL_ACTION_BY_CONTROLLER},
    {BIT(PL_ACTION_STATUS_NEW) | BIT(PL_ACTION_PENDING), PL_ACTION_PENDING_APPROVAL,
     PL_ACTION_BY_CONTROLLER},
    {BIT(PL_ACTION_STATUS_NEW) | BIT(PL_ACTION_PENDING), PL_ACTION_EXECUTED,
     PL_ACTION_BY_CONTROLLER},
    {BIT(PL_ACTION_STATUS_NEW) | BIT(PL_ACTION_PENDING), PL_ACTION_FAILED, PL_ACTION_BY_CONTROLLER},
    {BIT(PL_ACTION_STATUS_NEW) | BIT(PL_ACTION_PENDING), PL_ACTION_DRY_RUN,
     PL_ACTION_BY_CONTROLLER},
    /* the HITL queue: an owner approves (the executor runs) or rejects; or it times out */
    {BIT(PL_ACTION_PENDING_APPROVAL), PL_ACTION_EXECUTED, PL_ACTION_BY_OWNER},
    {BIT(PL_ACTION_PENDING_APPROVAL), PL_ACTION_FAILED, PL_ACTION_BY_OWNER},
    {BIT(PL_ACTION_PENDING_APPROVAL), PL_ACTION_FAILED, PL_ACTION_BY_TIMEOUT},
};

const char *pl_action_status_name(enum pl_action_status s)
{
    return s > PL_ACTION_STATUS_NEW && s < PL_ACTION_NSTATUS ? action_status_names[s] : NULL;
}

int pl_action_status_parse(const char *name, enum pl_action_status *out)
{
    for (int s = PL_ACTION_PENDING; name && s < PL_ACTION_NSTATUS; s++)
        if (strcmp(name, action_status_names[s]) == 0) {
            *out = (enum pl_action_status)s;
            return 0;
        }
    return -1;
}

const char *pl_action_actor_name(enum pl_action_actor a)
{
    return a >= 0 && a < PL_ACTION_NACTORS ? action_actor_names[a] : NULL;
}

static unsigned action_from_set(enum pl_action_status to, enum pl_action_actor actor)
{
    unsigned set = 0;
    for (size_t i = 0; i < sizeof(action_moves) / sizeof(action_moves[0]); i++)
        if (action_moves[i].to == to && action_moves[i].actor == actor)
            set |= action_moves[i].from;
    return set;
}

bool pl_action_allowed(enum pl_action_status from, enum pl_action_status to,
                       enum pl_action_actor actor)
{
    if (from < 0 || from >= PL_ACTION_NSTATUS || to < 0 || to >= PL_ACTION_NSTATUS)
        return false;
    return (action_from_set(to, actor) & BIT(from)) != 0;
}

/* "{pending,pending_approval}" of the statuses actor may move to `to` from (NEW excluded). */
static void action_allowed_from(enum pl_action_status to, enum pl_action_actor actor, char *buf,
                                size_t bufsz)
{
    unsigned set = action_from_set(to, actor);
    size_t len = (size_t)snprintf(buf, bufsz, "{");
    for (int s = PL_ACTION_PENDING; s < PL_ACTION_NSTATUS && len < bufsz; s++)
        if (set & BIT(s))
            len += (size_t)snprintf(buf + len, bufsz - len, "%s%s", len > 1 ? "," : "",
                                    action_status_names[s]);
    if (len < bufsz)
        snprintf(buf + len, bufsz - len, "}");
}

static enum pl_transition_result action_fail(PGconn *conn)
{
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return PL_TRANSITION_ERROR;
}

/* The pl.actions event and the audit entry of a change (from NULL: a creation), in the
 * caller's transaction. The event carries the action as stored. */
static int action_announce(PGconn *conn, const char *tenant_id, const char *action_id,
                           const char *trace_id, const char *from, const char *to,
                           const char *row_json, const char *actor, const char *reason,
                           const char *topic, struct pl_pg_error *err)
{
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "schema_version", json_object_new_int(1));
    json_object_object_add(ev, "tenant_id", json_object_new_string(tenant_id));
    json_object_object_add(ev, "action_id", json_object_new_string(action_id));
    json_object_object_add(ev, "trace_id", json_object_new_string(trace_id));
    json_object_object_add(ev, "from", from ? json_object_new_string(from) : NULL);
    json_object_object_add(ev, "to", json_object_new_string(to));
    json_object_object_add(ev, "actor", json_object_new_string(actor));
    json_object_object_add(ev, "action", json_tokener_parse(row_json));
    json_object *detail = json_object_new_object();
    json_object_object_add(detail, "from", from ? json_object_new_string(from) : NULL);
    json_object_object_add(detail, "to", json_object_new_string(to));
    if (reason)
        json_object_object_add(detail, "reason", json_object_new_string(reason));
    int failed =
        pl_outbox_write(conn, topic, action_id,
                        json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN), err) ||
        pl_audit_append(conn, tenant_id, actor, from ? "action.transition" : "action.create",
                        action_id, json_object_to_json_string_ext(detail, JSON_C_TO_STRING_PLAIN),
                        err);
    json_object_put(ev);
    json_object_put(detail);
    return failed ? -1 : 0;
}

enum pl_transition_result pl_action_create(PGconn *conn, const struct pl_action_new *a, char id[37],
                                           char **row_json, struct pl_pg_error *err)
{
    id[0] = '\0';
    if (row_json)
        *row_json = NULL;
    const char *status = pl_action_status_name(a->status);
    if (!status || !pl_action_allowed(PL_ACTION_STATUS_NEW, a->status, PL_ACTION_BY_CONTROLLER))
        return PL_TRANSITION_CONFLICT;
    char attempt[16], retry_count[16];
    snprintf(attempt, sizeof(attempt), "%d", a->attempt);
    snprintf(retry_count, sizeof(retry_count), "%d", a->retry_count);
    const char *p[13] = {a->tenant_id,
                         a->project_id,
                         a->trace_id,
                         a->policy_id,
                         a->rule_id,
                         a->attempt_next ? NULL : attempt,
                         a->action_type,
                         status,
                         a->payload_json,
                         a->result_json,
                         a->escalation_reason,
                         retry_count,
                         a->require_approval ? "t" : "f"};
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return PL_TRANSITION_ERROR;
    /* DO NOTHING on (project, trace, policy, attempt): the creation's compare-and-set */
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_action_create",
        "INSERT INTO control_actions (tenant_id, project_id, trace_id, policy_id, rule_id,"
        " attempt, action_type, status, payload, result, escalation_reason, retry_count,"
        " require_approval, executed_at)"
        " VALUES ($1, $2, $3, $4, $5, coalesce($6::int, (SELECT coalesce(max(attempt), 0) + 1"
        "   FROM control_actions WHERE project_id = $2 AND trace_id = $3)),"
        " $7, $8, coalesce($9::jsonb, '{}'), $10::jsonb,"
        " $11, $12::int, $13::boolean, CASE WHEN $8 IN ('executed', 'dry_run') THEN now() END)"
        " ON CONFLICT DO NOTHING RETURNING id, pl_action_json(control_actions)::text",
        13, p, err);
    if (!res)
        return action_fail(conn);
    if (PQntuples(res) == 0) { /* already there: answer with what is stored */
        PQclear(res);
        const char *q[4] = {a->project_id, a->trace_id, a->policy_id, attempt};
        res = pl_pg_query(conn,
                          "SELECT id, pl_action_json(a)::text FROM control_actions a"
                          " WHERE project_id = $1 AND trace_id = $2 AND policy_id = $3"
                          " AND attempt = $4::int",
                          4, q, err);
        if (!res)
            return action_fail(conn);
        if (PQntuples(res) == 1) {
            snprintf(id, 37, "%s", PQgetvalue(res, 0, 0));
            if (row_json)
                *row_json = strdup(PQgetvalue(res, 0, 1));
        }
        PQclear(res);
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, err);
        return PL_TRANSITION_CONFLICT;
    }
    snprintf(id, 37, "%s", PQgetvalue(res, 0, 0));
    const char *actor = a->actor_id ? a->actor_id : pl_action_actor_name(PL_ACTION_BY_CONTROLLER);
    if (action_announce(conn, a->tenant_id, id, a->trace_id, NULL, status, PQgetvalue(res, 0, 1),
                        actor, a->escalation_reason, a->events_topic, err) != 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0) {
        PQclear(res);
        id[0] = '\0';
        return action_fail(conn);
    }
    if (row_json)
        *row_json = strdup(PQgetvalue(res, 0, 1));
    PQclear(res);
    return PL_TRANSITION_OK;
}

enum pl_transition_result pl_action_transition(PGconn *conn, const struct pl_action_change *ch,
                                               char **row_json, char *current,
                                               struct pl_pg_error *err)
{
    if (row_json)
        *row_json = NULL;
    err->message[0] = '\0';
    const char *to = pl_action_status_name(ch->to);
    if (!to)
        return PL_TRANSITION_CONFLICT;
    char allowed[96];
    action_allowed_from(ch->to, ch->actor, allowed, sizeof(allowed));
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return PL_TRANSITION_ERROR;
    /* The CTE locks the row and keeps its old status; the UPDATE's status test is the
     * compare-and-set, so of two racing moves exactly one matches. */
    const char *p[5] = {ch->action_id, ch->tenant_id, to, allowed, ch->result_json};
    PGresult *res = pl_pg_query(
        conn,
        "WITH old AS (SELECT id, status FROM control_actions"
        "             WHERE id = $1 AND tenant_id = $2 FOR UPDATE)"
        " UPDATE control_actions a SET status = $3, updated_at = now(),"
        "   result = coalesce($5::jsonb, a.result),"
        "   executed_at = CASE WHEN $3 IN ('executed', 'dry_run') THEN now() ELSE a.executed_at"
        "   END"
        " FROM old WHERE a.id = old.id AND a.status = ANY($4::text[])"
        " RETURNING old.status, a.trace_id, pl_action_json(a)::text",
        5, p, err);
    if (!res)
        return action_fail(conn);
    if (PQntuples(res) == 0) {
        PQclear(res);
        res = pl_pg_query(
            conn, "SELECT status FROM control_actions WHERE id = $1 AND tenant_id = $2", 2, p, err);
        if (!res)
            return action_fail(conn);
        enum pl_transition_result r = PL_TRANSITION_NOT_FOUND;
        if (PQntuples(res) == 1) {
            r = PL_TRANSITION_CONFLICT;
            if (current)
                snprintf(current, 24, "%s", PQgetvalue(res, 0, 0));
        }
        PQclear(res);
        pl_pg_exec(conn, "ROLLBACK", 0, NULL, err);
        return r;
    }
    const char *actor = ch->actor_id ? ch->actor_id : pl_action_actor_name(ch->actor);
    const char *q[3] = {ch->requeue_topic, ch->action_id, ch->tenant_id};
    if (action_announce(conn, ch->tenant_id, ch->action_id, PQgetvalue(res, 0, 1),
                        PQgetvalue(res, 0, 0), to, PQgetvalue(res, 0, 2), actor, ch->reason,
                        ch->events_topic, err) != 0 ||
        (ch->requeue_topic &&
         pl_pg_exec(conn,
                    "INSERT INTO outbox (topic, key, payload) SELECT $1, trace_id,"
                    " jsonb_build_object('schema_version', 1, 'tenant_id', tenant_id,"
                    "   'project_id', project_id, 'trace_id', trace_id)"
                    " FROM control_actions WHERE id = $2 AND tenant_id = $3",
                    3, q, err) != 0) ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0) {
        PQclear(res);
        return action_fail(conn);
    }
    if (row_json)
        *row_json = strdup(PQgetvalue(res, 0, 2));
    PQclear(res);
    return PL_TRANSITION_OK;
}

/* The advisory-lock key of a claim: its own namespace per kind, so an action id and a trace
 * never share a lock. */
static const char *const action_claim_sql[2][2] = {
    {"SELECT pg_try_advisory_lock(hashtextextended('action:' || $1, 11))",
     "SELECT pg_advisory_unlock(hashtextextended('action:' || $1, 11))"},
    {"SELECT pg_try_advisory_lock(hashtextextended('trace:' || $1, 11))",
     "SELECT pg_advisory_unlock(hashtextextended('trace:' || $1, 11))"},
};

int pl_action_claim(PGconn *conn, enum pl_action_claim_kind kind, const char *key,
                    struct pl_pg_error *err)
{
    const char *p[1] = {key};
    PGresult *res = pl_pg_query(conn, action_claim_sql[kind][0], 1, p, err);
    if (!res)
        return -1;
    int claimed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return claimed;
}

void pl_action_unclaim(PGconn *conn, enum pl_action_claim_kind kind, const char *key)
{
    const char *p[1] = {key};
    struct pl_pg_error ignored;
    pl_pg_exec(conn, action_claim_sql[kind][1], 1, p, &ignored);
}
