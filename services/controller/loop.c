/* The controller's work: the runtime control loop on failing traces (see loop.h). */
#include "loop.h"

#include "action.h"
#include "control.h"
#include "failpoint.h"
#include "killswitch.h"
#include "log.h"
#include "metrics.h"
#include "remediate.h"
#include "util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Steps on one trace within one delivery: far above what the gates allow (cascade depth 20). */
#define CTL_MAX_STEPS 64

/* A call waiting longer than this for a slot reads the kill switch again before it starts. */
#define CTL_KILLSWITCH_RECHECK_MS 20

/* Only one replica sweeps at a time: a session advisory lock on this key. */
#define CTL_SWEEP_LOCK "7305117301"

/* An active policy of the trace's project, rolled out to some traces. */
struct ctl_policy {
    char id[37], rule_id[37]; /* rule_id "" when none */
    enum pl_action_kind kind;
    json_object *params;
    int max_retry_depth, max_cascade_depth;
    bool dry_run, applies; /* applies: its trigger fires and the trace is in its rollout */
};

/* One failing trace and its loop. */
struct ctl_trace {
    char tenant_id[37], project_id[37];
    char *trace_id;
    struct pl_remediation_trace t;
    struct pl_rule_set rules;
    struct ctl_policy *pol;
    size_t npol;
    size_t *live; /* indices into pol of the policies the live loop uses, in priority order */
    struct pl_control_policy *plan;
    size_t nlive;
    bool loaded; /* trace, rules and policies read (lazily, as the batch's calls start) */
    bool active; /* the loop may take another step in this delivery */
    int steps;   /* steps taken in this delivery */
    /* the remediation in flight */
    int attempt;
    struct pl_control_next next;
    struct pl_remediation rem;
    bool calling;
    int64_t planned_at; /* when the call in flight was planned (the kill switch read) */
    /* The stored steps, read once per delivery and then kept as this process stores them; a
     * step someone else stored first (a conflict) makes the next plan read them again. */
    struct pl_control_step *hist;
    size_t nhist;
    bool hist_valid, waiting, killed;
    int64_t killed_at; /* when the kill switch was last read */
};

static struct pl_metric *m_steps, *m_calls, *m_passed;

static void ctl_metrics_init(void)
{
    if (m_steps)
        return;
    m_steps = pl_metric_counter("pl_controller_actions_total", NULL,
                                "Actions stored by the controller (every status)");
    m_calls = pl_metric_counter("pl_controller_llm_calls_total", NULL,
                                "Remediation calls made to the LLM");
    m_passed = pl_metric_counter("pl_controller_remediations_passed_total", NULL,
                                 "Remediations whose output passed every eval rule");
}

static void ctl_trace_free(struct ctl_trace *tr)
{
    free(tr->trace_id);
    pl_remediation_trace_free(&tr->t);
    pl_rule_set_free(&tr->rules);
    for (size_t i = 0; i < tr->npol; i++)
        json_object_put(tr->pol[i].params);
    free(tr->pol);
    free(tr->live);
    free(tr->plan);
    pl_remediation_clear(&tr->rem);
    free(tr->hist);
    memset(tr, 0, sizeof(*tr));
}

/* The project's active policies in priority order, with whether each applies to the trace:
 * eval_score fires when the trace failed the policy's rule (any failure when it names none);
 * failure_rate when a cluster of the trace holds more than threshold of the project's traces
 * received in the last window_s seconds, over at least min_traces of them. */
static int ctl_policies_load(PGconn *conn, struct ctl_trace *tr, struct pl_pg_error *err)
{
    const char *p[3] = {tr->tenant_id, tr->project_id, tr->trace_id};
    PGresult *res = pl_pg_query_prepared(
        conn, "ctl_policies",
        "SELECT p.id, coalesce(p.rule_id::text, ''), p.action_type, p.action_params::text,"
        " p.max_retry_depth, p.max_cascade_depth, p.dry_run, p.rollout_pct,"
        " CASE WHEN p.trigger_type = 'eval_score' THEN p.rule_id IS NULL OR EXISTS ("
        "   SELECT 1 FROM eval_rules r WHERE r.id = p.rule_id"
        "   AND t.eval -> r.metric_name ->> 'passed' = 'false')"
        " ELSE coalesce((SELECT bool_or(cm.n::float8 / tot.n"
        "     > (p.trigger_params ->> 'threshold')::float8)"
        "   FROM failure_clusters c JOIN cluster_members m ON m.cluster_id = c.id"
        "     AND m.trace_id = t.id,"
        "   LATERAL (SELECT count(*) AS n FROM traces x WHERE x.project_id = t.project_id"
        "     AND x.received_at > now() - (p.trigger_params ->> 'window_s')::int"
        "       * interval '1 second') tot,"
        "   LATERAL (SELECT count(*) AS n FROM cluster_members m2 JOIN traces x"
        "     ON x.project_id = c.project_id AND x.id = m2.trace_id WHERE m2.cluster_id = c.id"
        "     AND x.received_at > now() - (p.trigger_params ->> 'window_s')::int"
        "       * interval '1 second') cm"
        "   WHERE c.project_id = t.project_id"
        "     AND tot.n >= (p.trigger_params ->> 'min_traces')::int), false) END"
        " FROM policies p JOIN traces t ON t.project_id = p.project_id AND t.id = $3"
        " WHERE p.tenant_id = $1 AND p.project_id = $2 AND p.status = 'active'"
        "   AND p.rollout_pct > 0"
        " ORDER BY p.priority, p.id",
        3, p, err);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    tr->pol = calloc(n + 1, sizeof(*tr->pol));
    tr->live = calloc(n + 1, sizeof(*tr->live));
    tr->plan = calloc(n + 1, sizeof(*tr->plan));
    if (!tr->pol || !tr->live || !tr->plan) {
        PQclear(res);
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct ctl_policy *cp = &tr->pol[i];
        int row = (int)i;
        snprintf(cp->id, sizeof(cp->id), "%s", PQgetvalue(res, row, 0));
        snprintf(cp->rule_id, sizeof(cp->rule_id), "%s", PQgetvalue(res, row, 1));
        if (pl_action_kind_parse(PQgetvalue(res, row, 2), &cp->kind) != 0)
            continue; /* the table's CHECK makes this unreachable */
        cp->params = json_tokener_parse(PQgetvalue(res, row, 3));
        cp->max_retry_depth = (int)pl_pg_getll(res, row, 4);
        cp->max_cascade_depth = (int)pl_pg_getll(res, row, 5);
        cp->dry_run = strcmp(PQgetvalue(res, row, 6), "t") == 0;
        cp->applies = strcmp(PQgetvalue(res, row, 8), "t") == 0 &&
                      pl_control_in_rollout(tr->trace_id, (int)pl_pg_getll(res, row, 7));
        tr->npol++;
        if (cp->applies && !cp->dry_run) {
            tr->live[tr->nlive] = tr->npol - 1;
            tr->plan[tr->nlive++] =
                (struct pl_control_policy){cp->kind, cp->max_retry_depth, cp->max_cascade_depth};
        }
    }
    PQclear(res);
    return 0;
}

/* A trace of the batch, not loaded yet. */
static int ctl_trace_new(struct ctl_trace *tr, const char *tenant_id, const char *project_id,
                         const char *trace_id, struct pl_pg_error *err)
{
    memset(tr, 0, sizeof(*tr));
    snprintf(tr->tenant_id, sizeof(tr->tenant_id), "%s", tenant_id);
    snprintf(tr->project_id, sizeof(tr->project_id), "%s", project_id);
    if (!(tr->trace_id = strdup(trace_id))) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    tr->active = true; /* until loaded: then whether a live policy applies */
    return 0;
}

/* {intended_action, action_params[, dry_run]}: what the policy asked for, as the payload. */
static char *ctl_payload(const struct ctl_policy *cp, bool dry_run)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "intended_action",
                           json_object_new_string(pl_action_kind_name(cp->kind)));
    json_object_object_add(o, "action_params",
                           cp->params ? json_object_get(cp->params) : json_object_new_object());
    if (dry_run)
        json_object_object_add(o, "dry_run", json_object_new_boolean(true));
    char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

/* Stores one action of policy cp on the trace. A step someone else stored first (a
 * redelivery racing this one) is fine: the next plan reads it. */
static int ctl_store(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                     const struct ctl_policy *cp, int attempt, enum pl_action_kind kind,
                     enum pl_action_status status, const struct pl_gate_decision *gate,
                     const char *result, bool passed, struct pl_pg_error *err)
{
    char *payload = ctl_payload(cp, status == PL_ACTION_DRY_RUN);
    struct pl_action_new a = {
        .tenant_id = tr->tenant_id,
        .project_id = tr->project_id,
        .trace_id = tr->trace_id,
        .policy_id = cp->id,
        .rule_id = cp->rule_id[0] ? cp->rule_id : NULL,
        .attempt = attempt,
        .action_type = pl_action_kind_name(kind),
        .status = status,
        .payload_json = payload,
        .result_json = result,
        .escalation_reason = gate ? gate->escalation_reason : NULL,
        .retry_count = gate ? gate->retry_count : 0,
        .require_approval = gate && gate->require_approval,
        .events_topic = c->svc->cfg.kafka_topic_actions,
    };
    char id[37];
    enum pl_transition_result r = pl_action_create(conn, &a, id, NULL, err);
    free(payload);
    if (r == PL_TRANSITION_ERROR)
        return -1;
    if (r == PL_TRANSITION_CONFLICT) /* stored by someone else: read the steps again */
        tr->hist_valid = false;
    if (r == PL_TRANSITION_OK) {
        pl_metric_add(m_steps, 1);
        pl_debug("controller: trace %s step %d: %s %s", tr->trace_id, attempt,
                 pl_action_kind_name(kind), pl_action_status_name(status));
        if (tr->hist_valid && status != PL_ACTION_DRY_RUN) {
            struct pl_control_step *h = realloc(tr->hist, (tr->nhist + 1) * sizeof(*h));
            if (!h) {
                tr->hist_valid = false;
            } else {
                tr->hist = h;
                h[tr->nhist++] = (struct pl_control_step){
                    (size_t)(cp - tr->pol) == tr->live[tr->next.policy] ? tr->next.policy
                                                                        : tr->nlive,
                    kind, status == PL_ACTION_EXECUTED && passed};
                tr->waiting = tr->waiting || status == PL_ACTION_PENDING;
                tr->attempt = attempt + 1;
            }
        }
    }
    return 0;
}

/* Records once what each dry-run policy that applies would have done (attempt 0). */
static int ctl_dry_runs(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                        struct pl_pg_error *err)
{
    for (size_t i = 0; i < tr->npol; i++)
        if (tr->pol[i].applies && tr->pol[i].dry_run &&
            ctl_store(c, conn, tr, &tr->pol[i], 0, tr->pol[i].kind, PL_ACTION_DRY_RUN, NULL, NULL,
                      false, err) != 0)
            return -1;
    return 0;
}

/* Loads the trace, its rules and policies, and records the dry runs when asked: 0 (the loop
 * is active when a live policy applies; a trace no longer stored has nothing to do), -1 with
 * err. */
static int ctl_trace_load(struct controller *c, PGconn *conn, struct ctl_trace *tr, bool dry_runs,
                          struct pl_pg_error *err)
{
    tr->loaded = true;
    tr->active = false;
    int found =
        pl_remediation_trace_load(conn, tr->tenant_id, tr->project_id, tr->trace_id, &tr->t, err);
    if (found == 0)
        pl_warn("controller: trace %s of project %s is not stored; nothing to remediate",
                tr->trace_id, tr->project_id);
    if (found <= 0)
        return found;
    if (ctl_policies_load(conn, tr, err) != 0 ||
        pl_eval_rule_store_load(conn, tr->tenant_id, tr->project_id, &tr->rules, err) != 0 ||
        (dry_runs && ctl_dry_runs(c, conn, tr, err) != 0))
        return -1;
    tr->active = tr->nlive > 0;
    return 0;
}

/* The stored steps on the trace, in order, as indices into tr->live, read with the tenant's
 * kill switch in one round trip. An action taken through the API, or one of a policy no longer
 * in the loop, maps past the end: as the last step it ends the loop (a person took over), and
 * every remediation counts for the cascade gate. *waiting: a step is kept `pending` (the sweeper
 * runs it). *attempt: the next step's number. */
static int ctl_history(PGconn *conn, struct ctl_trace *tr, struct pl_control_step **out,
                       size_t *nout, int *attempt, bool *waiting, bool *killed,
                       struct pl_pg_error *err)
{
    const char *p[3] = {tr->tenant_id, tr->project_id, tr->trace_id};
    PGresult *res = pl_pg_query_prepared(
        conn, "ctl_history",
        "SELECT k.active, a.policy_id, a.action_type, a.status, a.passed, a.attempt"
        " FROM (SELECT coalesce((SELECT active FROM control_killswitch WHERE tenant_id = $1),"
        "   false) AS active) k"
        " LEFT JOIN LATERAL (SELECT policy_id, action_type, status,"
        "   coalesce((result ->> 'passed')::boolean, false) AS passed, attempt, created_at, id"
        "   FROM control_actions WHERE tenant_id = $1 AND project_id = $2 AND trace_id = $3"
        "   AND status <> 'dry_run') a ON true"
        " ORDER BY a.attempt, a.created_at, a.id",
        3, p, err);
    if (!res)
        return -1;
    size_t rows = (size_t)PQntuples(res);
    struct pl_control_step *h = calloc(rows + 1, sizeof(*h));
    if (!h) {
        PQclear(res);
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    *killed = rows > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    *waiting = false;
    *attempt = 1;
    size_t n = 0;
    for (size_t i = 0; i < rows; i++) {
        int row = (int)i;
        if (PQgetisnull(res, row, 5)) /* the kill switch's row alone: no step yet */
            continue;
        struct pl_control_step *st = &h[n++];
        st->policy = tr->nlive; /* an action taken through the API, or of a policy gone */
        for (size_t k = 0; !PQgetisnull(res, row, 1) && k < tr->nlive; k++)
            if (strcmp(tr->pol[tr->live[k]].id, PQgetvalue(res, row, 1)) == 0)
                st->policy = k;
        if (pl_action_kind_parse(PQgetvalue(res, row, 2), &st->kind) != 0)
            st->kind = PL_ACTION_BLOCK;
        const char *status = PQgetvalue(res, row, 3);
        *waiting = *waiting || strcmp(status, "pending") == 0;
        st->passed = strcmp(status, "executed") == 0 && strcmp(PQgetvalue(res, row, 4), "t") == 0;
        *attempt = (int)pl_pg_getll(res, row, 5) + 1;
    }
    PQclear(res);
    *out = h;
    *nout = n;
    return 0;
}

/* Plans and takes the next step of one trace: stores it when it needs no LLM call (an
 * escalation, a block, a step kept pending by the kill switch, a remediation that cannot be
 * built), or prepares the call (tr->calling). Clears tr->active when the loop is over for now. */
static int ctl_step(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                    struct pl_pg_error *err)
{
    int64_t now = pl_now_ms();
    if (!tr->hist_valid) {
        free(tr->hist);
        tr->hist = NULL;
        if (ctl_history(conn, tr, &tr->hist, &tr->nhist, &tr->attempt, &tr->waiting, &tr->killed,
                        err) != 0)
            return -1;
        tr->hist_valid = true;
        tr->killed_at = now;
    } else if (now - tr->killed_at > CTL_KILLSWITCH_RECHECK_MS) {
        if (pl_killswitch_get(conn, tr->tenant_id, &tr->killed, err) != 0)
            return -1;
        tr->killed_at = now;
    }
    bool killed = tr->killed;
    bool more =
        !tr->waiting && pl_control_plan(tr->plan, tr->nlive, tr->hist, tr->nhist, &tr->next);
    if (!more) {
        tr->active = false;
        return 0;
    }
    const struct ctl_policy *cp = &tr->pol[tr->live[tr->next.policy]];
    const struct pl_gate_decision *g = &tr->next.gate;
    if (killed) { /* recorded as planned, run by the sweeper after `disable` */
        tr->active = false;
        return ctl_store(c, conn, tr, cp, tr->attempt, g->kind, PL_ACTION_PENDING, g, NULL, false,
                         err);
    }
    if (g->kind == PL_ACTION_ESCALATE || g->kind == PL_ACTION_BLOCK) {
        tr->active = false;
        return ctl_store(c, conn, tr, cp, tr->attempt, g->kind,
                         g->kind == PL_ACTION_ESCALATE ? PL_ACTION_PENDING_APPROVAL
                                                       : PL_ACTION_EXECUTED,
                         g, g->kind == PL_ACTION_BLOCK ? "{\"blocked\":true}" : NULL, false, err);
    }
    char why[256];
    int rc =
        pl_remediation_prepare(conn, &tr->t, g->kind, cp->params, &tr->rem, why, sizeof(why), err);
    if (rc < 0)
        return -1;
    if (rc > 0) { /* counted like a failed call: the next step is another policy's */
        char *result = pl_remediation_refused(why);
        rc = ctl_store(c, conn, tr, cp, tr->attempt, g->kind, PL_ACTION_FAILED, g, result, false,
                       err);
        free(result);
        return rc;
    }
    tr->calling = true;
    tr->planned_at = pl_now_ms();
    return 0;
}

/* Stores the outcome of the call in flight: executed (passed or not) when the LLM answered,
 * failed when it did not; either way the step counts. */
static int ctl_step_done(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                         struct pl_pg_error *err)
{
    if (!tr->rem.call.ok && !pl_running) { /* cut short: not a step, run it after restart */
        snprintf(err->message, sizeof(err->message), "shutting down");
        err->sqlstate[0] = '\0';
        return -1;
    }
    bool passed;
    const struct ctl_policy *cp = &tr->pol[tr->live[tr->next.policy]];
    char *result = pl_remediation_result(&tr->t, &tr->rules, &tr->rem, &passed);
    if (!result) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    pl_failpoint_crash("controller_before_store"); /* crash-safety tests */
    int rc = ctl_store(c, conn, tr, cp, tr->attempt, tr->next.gate.kind,
                       tr->rem.call.ok ? PL_ACTION_EXECUTED : PL_ACTION_FAILED, &tr->next.gate,
                       result, passed, err);
    if (!tr->rem.call.ok)
        pl_warn("controller: trace %s step %d: the LLM call failed: %s", tr->trace_id, tr->attempt,
                tr->rem.call.error);
    if (passed)
        pl_metric_add(m_passed, 1);
    free(result);
    pl_remediation_clear(&tr->rem);
    tr->calling = false;
    return rc;
}

/* Runs the prepared calls of every trace with one in flight concurrently (one batch on llm)
 * and moves each result back to its trace. */
static int ctl_call_all(struct pl_llm_client *llm, struct ctl_trace *trs, size_t n,
                        struct pl_pg_error *err)
{
    size_t ncalls = 0;
    for (size_t i = 0; i < n; i++)
        ncalls += trs[i].calling;
    if (ncalls == 0)
        return 0;
    struct pl_llm_call *calls = calloc(ncalls, sizeof(*calls));
    size_t *owner = calloc(ncalls, sizeof(*owner));
    if (!calls || !owner) {
        free(calls);
        free(owner);
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    ncalls = 0;
    for (size_t i = 0; i < n; i++)
        if (trs[i].calling) {
            calls[ncalls] = trs[i].rem.call;
            owner[ncalls++] = i;
        }
    pl_llm_run(llm, calls, ncalls);
    pl_metric_add(m_calls, (int64_t)ncalls);
    for (size_t k = 0; k < ncalls; k++)
        trs[owner[k]].rem.call = calls[k]; /* the result fields are the trace's now */
    free(calls);
    free(owner);
    return 0;
}

/* The loops of a batch as a stream of LLM calls: a trace's next step is planned (and any
 * step without a call stored) as soon as its previous call is stored, while the other calls
 * are still in flight, so database work overlaps the LLM's latency. */
struct ctl_stream {
    struct controller *c;
    PGconn *conn;
    struct ctl_trace *trs;
    size_t n;
    size_t *ready; /* ring of traces whose prepared call waits to start (each at most once) */
    size_t head, count;
    size_t started; /* traces [0, started) have been advanced once */
    int rc;
    struct pl_pg_error *err;
};

/* Takes steps on trace i until it needs a call (queued) or its loop is over for now. */
static int ctl_advance(struct ctl_stream *st, size_t i)
{
    struct ctl_trace *tr = &st->trs[i];
    if (!tr->loaded && ctl_trace_load(st->c, st->conn, tr, true, st->err) != 0)
        return -1;
    while (tr->active && !tr->calling) {
        if (tr->steps++ >= CTL_MAX_STEPS) {
            pl_warn("controller: trace %s took %d steps in one delivery; the rest waits for the"
                    " next",
                    tr->trace_id, CTL_MAX_STEPS);
            tr->active = false;
            break;
        }
        if (ctl_step(st->c, st->conn, tr, st->err) != 0)
            return -1;
    }
    if (tr->calling)
        st->ready[(st->head + st->count++) % st->n] = i;
    return 0;
}

static struct pl_llm_call *ctl_stream_next(void *arg)
{
    struct ctl_stream *st = arg;
    for (;;) {
        /* start further traces only when no call is waiting: loading overlaps calls in
         * flight; none while shutting down (the batch is delivered again) */
        while (pl_running && st->rc == 0 && st->count == 0 && st->started < st->n)
            if (ctl_advance(st, st->started++) != 0)
                st->rc = -1;
        if (!pl_running || st->rc != 0 || st->count == 0)
            return NULL;
        size_t i = st->ready[st->head];
        st->head = (st->head + 1) % st->n;
        st->count--;
        struct ctl_trace *tr = &st->trs[i];
        /* A call that waited for a slot since its step was planned reads the switch again:
         * it may have come on meanwhile (then the step is kept, nothing is called). */
        bool killed = false;
        if (pl_now_ms() - tr->planned_at > CTL_KILLSWITCH_RECHECK_MS &&
            pl_killswitch_get(st->conn, tr->tenant_id, &killed, st->err) != 0) {
            st->rc = -1;
            return NULL;
        }
        if (!killed)
            return &tr->rem.call;
        pl_remediation_clear(&tr->rem);
        tr->calling = tr->active = false;
        const struct ctl_policy *cp = &tr->pol[tr->live[tr->next.policy]];
        if (ctl_store(st->c, st->conn, tr, cp, tr->attempt, tr->next.gate.kind, PL_ACTION_PENDING,
                      &tr->next.gate, NULL, false, st->err) != 0) {
            st->rc = -1;
            return NULL;
        }
    }
}

static void ctl_stream_done(struct pl_llm_call *call, void *arg)
{
    struct ctl_stream *st = arg;
    pl_metric_add(m_calls, 1);
    if (st->rc != 0)
        return; /* the batch failed: it is delivered again */
    struct ctl_trace *tr =
        (struct ctl_trace *)(void *)((char *)call - offsetof(struct ctl_trace, rem.call));
    if (ctl_step_done(st->c, st->conn, tr, st->err) != 0 ||
        ctl_advance(st, (size_t)(tr - st->trs)) != 0)
        st->rc = -1;
}

/* Runs the loops of n traces together, their LLM calls concurrently on llm. */
static int ctl_run(struct controller *c, struct pl_llm_client *llm, PGconn *conn,
                   struct ctl_trace *trs, size_t n, struct pl_pg_error *err)
{
    if (n == 0)
        return 0;
    struct ctl_stream st = {c, conn, trs, n, calloc(n, sizeof(size_t)), 0, 0, 0, 0, err};
    if (!st.ready) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    struct pl_llm_stream src = {ctl_stream_next, ctl_stream_done, &st};
    pl_llm_run_stream(llm, &src);
    bool unfinished = st.count > 0 || st.started < n;
    for (size_t i = 0; i < n; i++)
        unfinished = unfinished || trs[i].calling;
    if (st.rc == 0 && unfinished) { /* cut short by shutdown: the batch is delivered again */
        snprintf(err->message, sizeof(err->message), "shutting down");
        err->sqlstate[0] = '\0';
        st.rc = -1;
    }
    free(st.ready);
    return st.rc;
}

enum pl_handle_result pl_controller_handle(struct pl_service *svc, struct pl_worker_item *items,
                                           size_t n, void *arg)
{
    struct controller *c = arg;
    ctl_metrics_init();
    struct ctl_trace *trs = calloc(n + 1, sizeof(*trs));
    json_object **evs = calloc(n + 1, sizeof(*evs));
    struct pl_pg_error err = {0};
    enum pl_handle_result result = PL_HANDLE_RETRY;
    PGconn *conn = NULL;
    if (!trs || !evs)
        goto out;
    static const char *const required[] = {"tenant_id", "project_id", NULL};
    for (size_t i = 0; i < n; i++) {
        items[i].result = PL_HANDLED;
        json_object *trace_id;
        evs[i] =
            pl_worker_parse_event(items[i].msg, required, items[i].reason, sizeof(items[i].reason));
        if (evs[i] && (!json_object_object_get_ex(evs[i], "trace_id", &trace_id) ||
                       !json_object_is_type(trace_id, json_type_string) ||
                       json_object_get_string_len(trace_id) == 0)) {
            snprintf(items[i].reason, sizeof(items[i].reason),
                     "trace_id must be a non-empty string");
            json_object_put(evs[i]);
            evs[i] = NULL;
        }
        if (!evs[i])
            items[i].result = PL_HANDLE_DLQ;
    }
    if (!(conn = pl_pg_acquire(svc->pg, &err)))
        goto out;
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (!evs[i])
            continue;
        json_object *tenant, *project, *trace;
        json_object_object_get_ex(evs[i], "tenant_id", &tenant);
        json_object_object_get_ex(evs[i], "project_id", &project);
        json_object_object_get_ex(evs[i], "trace_id", &trace);
        bool seen = false; /* a failure delivered twice in one batch runs once */
        for (size_t k = 0; k < nt && !seen; k++)
            seen = strcmp(trs[k].project_id, json_object_get_string(project)) == 0 &&
                   strcmp(trs[k].trace_id, json_object_get_string(trace)) == 0;
        if (!seen && ctl_trace_new(&trs[nt++], json_object_get_string(tenant),
                                   json_object_get_string(project), json_object_get_string(trace),
                                   &err) != 0)
            goto out;
    }
    if (ctl_run(c, c->llm, conn, trs, nt, &err) != 0)
        goto out;
    result = PL_HANDLED;
out:
    if (result == PL_HANDLE_RETRY)
        pl_warn("controller: a batch of %zu failed [%s]: %s; it is delivered again", n,
                err.sqlstate, err.message);
    if (conn)
        pl_pg_release(svc->pg, conn);
    for (size_t i = 0; trs && i < n; i++)
        ctl_trace_free(&trs[i]);
    for (size_t i = 0; evs && i < n; i++)
        json_object_put(evs[i]);
    free(trs);
    free(evs);
    return result;
}

/* Escalations pending longer than their project's hitl_timeout_s: rejected, reason timeout. */
static int ctl_sweep_timeouts(struct controller *c, PGconn *conn, struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(
        conn,
        "SELECT a.id, a.tenant_id FROM control_actions a JOIN projects p ON p.id = a.project_id"
        " WHERE a.status = 'pending_approval' AND p.hitl_timeout_s > 0"
        " AND a.updated_at <= now() - p.hitl_timeout_s * interval '1 second'"
        " ORDER BY a.updated_at, a.id LIMIT 100",
        0, NULL, err);
    if (!res)
        return -1;
    int rc = 0;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        struct pl_action_change ch = {
            .tenant_id = PQgetvalue(res, i, 1),
            .action_id = PQgetvalue(res, i, 0),
            .to = PL_ACTION_FAILED,
            .actor = PL_ACTION_BY_TIMEOUT,
            .result_json = "{\"rejected_by\":\"system:hitl_timeout\",\"reason\":\"timeout\"}",
            .reason = "timeout",
            .events_topic = c->svc->cfg.kafka_topic_actions,
        };
        char current[24];
        /* an approval whose executor runs holds the claim: the timeout waits for the next
         * sweep, by when the approval has decided */
        int claimed = pl_action_claim(conn, PL_CLAIM_ACTION, ch.action_id, err);
        if (claimed <= 0) {
            rc = claimed;
            continue;
        }
        enum pl_transition_result r = pl_action_transition(conn, &ch, NULL, current, err);
        pl_action_unclaim(conn, PL_CLAIM_ACTION, ch.action_id);
        if (r == PL_TRANSITION_ERROR)
            rc = -1;
        else if (r == PL_TRANSITION_OK)
            pl_info("controller: escalation %s timed out: rejected", ch.action_id);
    }
    PQclear(res);
    return rc;
}

/* A kept action's change to its outcome, guarded (pending → ...): run by the sweeper. */
static int ctl_pending_done(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                            const char *action_id, enum pl_action_status to, const char *result,
                            struct pl_pg_error *err)
{
    /* a remediation's outcome puts the trace back on pl.failures in the same transaction:
     * the consumer goes on with its loop, durably */
    struct pl_action_change ch = {
        .tenant_id = tr->tenant_id,
        .action_id = action_id,
        .to = to,
        .actor = PL_ACTION_BY_CONTROLLER,
        .result_json = result,
        .events_topic = c->svc->cfg.kafka_topic_actions,
        .requeue_topic = to == PL_ACTION_EXECUTED || to == PL_ACTION_FAILED
                             ? c->svc->cfg.kafka_topic_failures
                             : NULL,
    };
    char current[24];
    enum pl_transition_result r = pl_action_transition(conn, &ch, NULL, current, err);
    if (r == PL_TRANSITION_OK)
        pl_info("controller: kept action %s of trace %s ran: %s", action_id, tr->trace_id,
                pl_action_status_name(to));
    return r == PL_TRANSITION_ERROR ? -1 : 0;
}

/* Starts one kept action: an escalation or a block is done at once; a remediation is
 * prepared (tr->calling) to run with the others. */
static int ctl_pending_start(struct controller *c, PGconn *conn, struct ctl_trace *tr,
                             const char *action_id, const char *kind_name, const char *params_json,
                             struct pl_pg_error *err)
{
    enum pl_action_kind kind = PL_ACTION_BLOCK;
    pl_action_kind_parse(kind_name, &kind);
    if (kind == PL_ACTION_ESCALATE)
        return ctl_pending_done(c, conn, tr, action_id, PL_ACTION_PENDING_APPROVAL, NULL, err);
    if (kind == PL_ACTION_BLOCK)
        return ctl_pending_done(c, conn, tr, action_id, PL_ACTION_EXECUTED, "{\"blocked\":true}",
                                err);
    json_object *params = json_tokener_parse(params_json);
    char why[256];
    int rc = pl_remediation_prepare(conn, &tr->t, kind, params, &tr->rem, why, sizeof(why), err);
    json_object_put(params);
    if (rc == 0)
        tr->calling = true;
    if (rc <= 0)
        return rc;
    char *result = pl_remediation_refused(why);
    rc = ctl_pending_done(c, conn, tr, action_id, PL_ACTION_FAILED, result, err);
    free(result);
    return rc;
}

/* Actions kept pending, of tenants whose switch is off now: runs them (their LLM calls
 * together); each outcome puts its trace back on pl.failures, where the consumer goes on with
 * the loop. Every call made is stored, even after another one's store failed. */
static int ctl_sweep_pending(struct controller *c, PGconn *conn, struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(
        conn,
        "SELECT a.id, a.tenant_id, a.project_id, a.trace_id, a.action_type,"
        " coalesce(a.payload -> 'action_params', '{}')::text"
        " FROM control_actions a WHERE a.status = 'pending'"
        " AND NOT EXISTS (SELECT 1 FROM control_killswitch k WHERE k.tenant_id = a.tenant_id"
        "   AND k.active)"
        " ORDER BY a.created_at, a.id LIMIT $1::int",
        1, (const char *const[]){"64"}, err);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res), nt = 0;
    struct ctl_trace *trs = calloc(n + 1, sizeof(*trs));
    int rc = trs ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i++, nt++) {
        int row = (int)i;
        if (ctl_trace_new(&trs[i], PQgetvalue(res, row, 1), PQgetvalue(res, row, 2),
                          PQgetvalue(res, row, 3), err) != 0 ||
            ctl_trace_load(c, conn, &trs[i], false, err) != 0 ||
            (trs[i].t.trace_id &&
             ctl_pending_start(c, conn, &trs[i], PQgetvalue(res, row, 0), PQgetvalue(res, row, 4),
                               PQgetvalue(res, row, 5), err) != 0))
            rc = -1;
    }
    if (rc == 0)
        rc = ctl_call_all(c->sweep_llm, trs, nt, err);
    for (size_t i = 0; i < nt; i++) {
        if (!trs[i].calling || (!trs[i].rem.call.ok && !pl_running))
            continue; /* cut short by shutdown: it stays pending */
        bool passed;
        char *result = pl_remediation_result(&trs[i].t, &trs[i].rules, &trs[i].rem, &passed);
        if (!result || ctl_pending_done(c, conn, &trs[i], PQgetvalue(res, (int)i, 0),
                                        trs[i].rem.call.ok ? PL_ACTION_EXECUTED : PL_ACTION_FAILED,
                                        result, err) != 0)
            rc = -1;
        free(result);
    }
    PQclear(res);
    for (size_t i = 0; i < nt; i++)
        ctl_trace_free(&trs[i]);
    free(trs);
    return rc;
}

void pl_controller_sweep(struct controller *c)
{
    ctl_metrics_init();
    struct pl_pg_error err = {0};
    PGconn *conn = pl_pg_acquire(c->svc->pg, &err);
    if (!conn)
        return;
    const char *key[1] = {CTL_SWEEP_LOCK};
    PGresult *res = pl_pg_query(conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, key, &err);
    bool locked = res && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (locked) {
        if (ctl_sweep_timeouts(c, conn, &err) != 0 || ctl_sweep_pending(c, conn, &err) != 0)
            pl_warn("controller: sweep failed [%s]: %s", err.sqlstate, err.message);
        pl_pg_exec(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, key, &err);
    }
    pl_pg_release(c->svc->pg, conn);
}
