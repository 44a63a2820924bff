/* The pre-ship baseline of a shipped deployment (see baseline.h). */
#include "baseline.h"

#include "trace.h"

#include <stdio.h>
#include <stdlib.h>

bool pl_monitor_trace_passes(const struct pl_rule_set *rules, json_object *trace)
{
    int span_errors = 0;
    const char *error = pl_trace_error(trace, &span_errors);
    json_object *scores = NULL;
    json_object_object_get_ex(trace, "eval_scores", &scores);
    struct pl_eval_input in = {.output = pl_trace_output(trace),
                               .error = error,
                               .n_span_errors = (size_t)span_errors,
                               .eval_scores = scores};
    return !error && pl_rule_set_run(rules, &in, NULL, NULL, 0);
}

/* The stored columns hold what the detector took from the trace: error and span errors
 * count as in pl_trace_error (non-empty strings), eval_scores is the client's object. A
 * trace names its version by number or by alias. */
static const char baseline_sql[] =
    "SELECT t.output, nullif(t.error, ''), t.eval_scores::text,"
    " (SELECT count(*) FROM jsonb_array_elements(CASE jsonb_typeof(t.spans) WHEN 'array'"
    "   THEN t.spans ELSE '[]'::jsonb END) s"
    "  WHERE jsonb_typeof(s->'error') = 'string' AND s->>'error' <> '')"
    " FROM prompt_deployments d"
    " JOIN prompts pr ON pr.id = d.prompt_id"
    " JOIN prompt_versions v ON v.id = d.base_version_id"
    " JOIN traces t ON t.project_id = d.project_id AND t.prompt_name = pr.name"
    "   AND (t.prompt_version = v.version::text OR t.prompt_version = v.version_alias)"
    "   AND t.received_at < d.shipped_at"
    " WHERE d.id = $1 AND d.tenant_id = $2 AND t.tenant_id = $2"
    " ORDER BY t.received_at DESC, t.id LIMIT $3";

int pl_monitor_baseline_count(PGconn *conn, const char *tenant_id, const char *deployment_id,
                              const struct pl_rule_set *rules, long limit, long *n, long *k,
                              struct pl_pg_error *err)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    const char *p[3] = {deployment_id, tenant_id, lim};
    PGresult *res = pl_pg_query(conn, baseline_sql, 3, p, err);
    if (!res)
        return -1;
    *n = PQntuples(res);
    *k = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        json_object *scores =
            PQgetisnull(res, i, 2) ? NULL : json_tokener_parse(PQgetvalue(res, i, 2));
        struct pl_eval_input in = {
            .output = PQgetisnull(res, i, 0) ? NULL : PQgetvalue(res, i, 0),
            .error = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
            .n_span_errors = (size_t)strtol(PQgetvalue(res, i, 3), NULL, 10),
            .eval_scores = scores,
        };
        *k += !in.error && in.n_span_errors == 0 && pl_rule_set_run(rules, &in, NULL, NULL, 0);
        json_object_put(scores);
    }
    PQclear(res);
    return 0;
}
