/* SQL that reads control-loop actions for the API: lists, the queue, a trace. */
#include "action_store.h"

#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char action_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Raw cursor text: "<n|q>|<created_us>|<uuid>" — at most 1 + 1 + 20 + 1 + 36 bytes. */
#define ACTION_CURSOR_RAW 64

static char action_cursor_tag(enum pl_action_list_kind kind)
{
    return kind == PL_ACTION_LIST_QUEUE ? 'q' : 'n';
}

void pl_action_cursor_encode(enum pl_action_list_kind kind, const struct pl_action_cursor *c,
                             char out[PL_ACTION_CURSOR_MAX])
{
    char raw[ACTION_CURSOR_RAW];
    int n = snprintf(raw, sizeof(raw), "%c|%lld|%s", action_cursor_tag(kind), c->created_us, c->id);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < PL_ACTION_CURSOR_MAX; i += 3) {
        unsigned v = (unsigned char)raw[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)raw[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)raw[i + 2];
        out[o++] = action_b64[(v >> 18) & 63];
        out[o++] = action_b64[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = action_b64[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = action_b64[v & 63];
    }
    out[o] = '\0';
}

static int action_b64_value(char ch)
{
    const char *p = ch ? strchr(action_b64, ch) : NULL;
    return p ? (int)(p - action_b64) : -1;
}

int pl_action_cursor_decode(enum pl_action_list_kind kind, const char *text,
                            struct pl_action_cursor *out)
{
    size_t n = strlen(text);
    /* a length of 1 mod 4 is never the end of base64 text */
    if (n == 0 || n >= PL_ACTION_CURSOR_MAX || n % 4 == 1)
        return -1;
    char raw[ACTION_CURSOR_RAW + 8];
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        size_t k = n - i < 4 ? n - i : 4;
        for (size_t j = 0; j < 4; j++) {
            int d = j < k ? action_b64_value(text[i + j]) : 0;
            if (d < 0)
                return -1;
            v = v << 6 | (unsigned)d;
        }
        for (size_t j = 0; j + 1 < k && len < sizeof(raw) - 1; j++)
            raw[len++] = (char)(v >> (16 - 8 * j));
    }
    raw[len] = '\0';
    if (strlen(raw) != len || len < 4 || raw[0] != action_cursor_tag(kind) || raw[1] != '|')
        return -1;
    const char *num = raw + 2;
    char *end;
    errno = 0;
    long long us = strtoll(num, &end, 10);
    if (errno != 0 || end == num || *end != '|' || !pl_uuid_valid(end + 1))
        return -1;
    out->created_us = us;
    snprintf(out->id, sizeof(out->id), "%s", end + 1);
    return 0;
}

/* The keyset: (created_at, id) past the cursor in the list's order; the page is one row
 * longer than asked so the next cursor is only given when more rows follow. The queue's
 * literal status lets the planner use its partial index. */
#define ACTION_LIST_FROM                                                                           \
    ", (extract(epoch FROM a.created_at) * 1000000)::bigint, a.id"                                 \
    " FROM control_actions a WHERE a.tenant_id = $1 AND ($2::uuid IS NULL OR a.project_id = $2)"   \
    " AND ($3::text IS NULL OR a.status = $3) AND ($4::text IS NULL OR a.trace_id = $4)"           \
    " AND ($5::uuid IS NULL OR a.policy_id = $5)"
#define ACTION_LIST_COLUMNS "SELECT pl_action_json(a)::text" ACTION_LIST_FROM
/* A reviewer decides from the queue alone: each escalation also carries its policy's name,
 * the trace (input, output, error, model) and the steps taken on it before (their outputs). */
#define ACTION_QUEUE_COLUMNS                                                                       \
    "SELECT (pl_action_json(a)::jsonb || jsonb_build_object("                                      \
    "   'policy_name', (SELECT p.name FROM policies p WHERE p.id = a.policy_id),"                  \
    "   'trace', (SELECT json_build_object('input', t.input, 'output', t.output,"                  \
    "     'error', t.error, 'model', t.model) FROM traces t WHERE t.tenant_id = a.tenant_id"       \
    "     AND t.project_id = a.project_id AND t.id = a.trace_id),"                                 \
    "   'history', coalesce((SELECT json_agg(json_build_object('id', h.id, 'attempt', h.attempt,"  \
    "     'action_type', h.action_type, 'status', h.status, 'result', h.result)"                   \
    "     ORDER BY h.attempt) FROM control_actions h WHERE h.project_id = a.project_id"            \
    "     AND h.trace_id = a.trace_id AND h.attempt < a.attempt), "                                \
    "'[]'::json)))::text" ACTION_LIST_FROM
#define ACTION_AFTER(op)                                                                           \
    " AND ($6::bigint IS NULL OR (a.created_at, a.id) " op                                         \
    " (timestamptz 'epoch' + $6::bigint * interval '1 microsecond', $7::uuid))"

static const char *const action_list_sql[] = {
    [PL_ACTION_LIST_NEWEST] =
        ACTION_LIST_COLUMNS ACTION_AFTER("<") " ORDER BY a.created_at DESC, a.id DESC LIMIT $8",
    [PL_ACTION_LIST_QUEUE] = ACTION_QUEUE_COLUMNS
    " AND a.status = 'pending_approval'" ACTION_AFTER(">") " ORDER BY a.created_at, a.id LIMIT $8",
};

char *pl_action_store_list(PGconn *conn, const char *tenant_id, enum pl_action_list_kind kind,
                           const struct pl_action_filter *filter,
                           const struct pl_action_cursor *after, long long limit,
                           struct pl_pg_error *err)
{
    char us[24], lim[24];
    if (after)
        snprintf(us, sizeof(us), "%lld", after->created_us);
    snprintf(lim, sizeof(lim), "%lld", limit + 1);
    const char *p[8] = {tenant_id,
                        filter->project_id,
                        kind == PL_ACTION_LIST_QUEUE ? NULL : filter->status,
                        filter->trace_id,
                        filter->policy_id,
                        after ? us : NULL,
                        after ? after->id : NULL,
                        lim};
    static const char *const names[] = {[PL_ACTION_LIST_NEWEST] = "pl_action_list_newest",
                                        [PL_ACTION_LIST_QUEUE] = "pl_action_list_queue"};
    PGresult *res = pl_pg_query_prepared(conn, names[kind], action_list_sql[kind], 8, p, err);
    if (!res)
        return NULL;
    int rows = PQntuples(res);
    int shown = rows > limit ? (int)limit : rows;
    char cursor[PL_ACTION_CURSOR_MAX + 2] = "null";
    if (rows > shown) {
        struct pl_action_cursor next;
        char *end;
        next.created_us = strtoll(PQgetvalue(res, shown - 1, 1), &end, 10);
        snprintf(next.id, sizeof(next.id), "%s", PQgetvalue(res, shown - 1, 2));
        char enc[PL_ACTION_CURSOR_MAX];
        pl_action_cursor_encode(kind, &next, enc);
        snprintf(cursor, sizeof(cursor), "\"%s\"", enc); /* base64url needs no escaping */
    }
    size_t total = sizeof("{\"items\":[],\"next_cursor\":}") + strlen(cursor);
    for (int i = 0; i < shown; i++)
        total += (size_t)PQgetlength(res, i, 0) + 1;
    char *json = malloc(total);
    if (!json) {
        PQclear(res);
        snprintf(err->sqlstate, sizeof(err->sqlstate), "53200"); /* out_of_memory: a 500 */
        snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    size_t len = (size_t)snprintf(json, total, "{\"items\":[");
    for (int i = 0; i < shown; i++) {
        if (i)
            json[len++] = ',';
        size_t n = (size_t)PQgetlength(res, i, 0);
        memcpy(json + len, PQgetvalue(res, i, 0), n);
        len += n;
    }
    snprintf(json + len, total - len, "],\"next_cursor\":%s}", cursor);
    PQclear(res);
    return json;
}

int pl_action_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                        struct pl_pg_error *err)
{
    const char *p[2] = {id, tenant_id};
    return pl_pg_query_text(
        conn,
        "SELECT pl_action_json(a)::text FROM control_actions a WHERE id = $1 AND tenant_id = $2", 2,
        p, json, err);
}

int pl_action_store_trace(PGconn *conn, const char *tenant_id, const char *project_id,
                          const char *trace_id, char **json, struct pl_pg_error *err)
{
    const char *p[3] = {project_id, trace_id, tenant_id};
    /* control_actions.trace_id is COLLATE "C": the comparisons say so, or the two column
     * collations would conflict. traces.eval is {metric: {passed, feedback}} as the detector
     * writes it; anything else gives no evaluations rather than an error. */
    return pl_pg_query_text(
        conn,
        "SELECT row_to_json(x)::text FROM (SELECT t.id, t.project_id, t.name, t.model, t.input,"
        " t.output, t.error, t.spans, t.tags, t.metadata, t.latency_ms, t.cost,"
        " CASE WHEN t.prompt_name IS NOT NULL THEN (SELECT row_to_json(pr) FROM"
        "   (SELECT t.prompt_name AS name, t.prompt_version AS version) pr) END AS prompt,"
        " pl_ts(t.received_at) AS received_at,"
        " coalesce((SELECT json_agg(json_build_object('metric_name', e.metric_name,"
        "   'eval_rule_id', e.eval_rule_id, 'passed', e.passed, 'score', e.score,"
        "   'feedback', e.feedback, 'context', e.context, 'source_action_id', e.source_action_id,"
        "   'original', e.original) ORDER BY e.step, e.metric_name) FROM"
        "   (SELECT k.key AS metric_name, NULL::text AS eval_rule_id, k.value -> 'passed' AS "
        "passed,"
        "    CASE WHEN k.value ->> 'passed' = 'true' THEN 1.0 ELSE 0.0 END AS score,"
        "    k.value -> 'feedback' AS feedback, text 'fresh' AS context,"
        "    NULL::uuid AS source_action_id, NULL::jsonb AS original, -1 AS step"
        "    FROM jsonb_each(CASE WHEN jsonb_typeof(t.eval) = 'object' THEN t.eval END) k"
        "    UNION ALL"
        "    SELECT v ->> 'rule_name', v ->> 'eval_rule_id', v -> 'passed',"
        "    (v ->> 'score')::numeric, v -> 'feedback', text 'remediation', c.id, v -> 'original',"
        "    c.attempt FROM control_actions c, jsonb_array_elements(CASE WHEN"
        "    jsonb_typeof(c.result -> 'evaluations') = 'array' THEN c.result -> 'evaluations'"
        "    ELSE '[]' END) v WHERE c.tenant_id = t.tenant_id AND c.project_id = t.project_id"
        "    AND c.trace_id = t.id COLLATE \"C\") e),"
        "   '[]') AS evaluations,"
        " (SELECT count(*) FROM control_actions c WHERE c.tenant_id = t.tenant_id"
        "   AND c.project_id = t.project_id AND c.trace_id = t.id COLLATE \"C\""
        "   AND c.action_type = 'retry' AND c.status = 'executed') AS control_loop_depth,"
        " coalesce((SELECT json_agg(pl_action_json(c) ORDER BY c.attempt, c.created_at, c.id)"
        "   FROM control_actions c WHERE c.tenant_id = t.tenant_id"
        "   AND c.project_id = t.project_id AND c.trace_id = t.id COLLATE \"C\"), '[]')"
        "   AS remediation_history"
        " FROM traces t WHERE t.project_id = $1 AND t.id = $2 AND t.tenant_id = $3) x",
        3, p, json, err);
}
