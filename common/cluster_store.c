#include "cluster_store.h"

#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* COPY is several times cheaper than parsing the batch as one JSON parameter; the staging
 * table lets ON CONFLICT keep the insert idempotent, which COPY alone cannot. */
static int cluster_store_copy_traces(PGconn *conn, const char *rows, size_t len,
                                     struct pl_pg_error *err)
{
    if (pl_pg_exec(conn,
                   "CREATE TEMP TABLE IF NOT EXISTS pl_trace_stage (LIKE traces INCLUDING DEFAULTS)"
                   " ON COMMIT DELETE ROWS",
                   0, NULL, err) != 0)
        return -1;
    PGresult *res =
        PQexec(conn, "COPY pl_trace_stage (" PL_CLUSTER_STORE_TRACE_COLUMNS ") FROM STDIN");
    int rc = PQresultStatus(res) == PGRES_COPY_IN ? 0 : -1;
    PQclear(res);
    if (rc == 0 && (PQputCopyData(conn, rows, (int)len) != 1 || PQputCopyEnd(conn, NULL) != 1))
        rc = -1;
    /* Drain every result, keeping the first failure. */
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_COPY_IN &&
            rc == 0) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
            snprintf(err->message, sizeof(err->message), "%s", PQresultErrorMessage(res));
            rc = -1;
        }
        PQclear(res);
    }
    if (rc != 0) {
        if (!err->message[0])
            snprintf(err->message, sizeof(err->message), "%s", PQerrorMessage(conn));
        return -1;
    }
    return pl_pg_exec(conn,
                      "INSERT INTO traces (" PL_CLUSTER_STORE_TRACE_COLUMNS ")"
                      " SELECT " PL_CLUSTER_STORE_TRACE_COLUMNS " FROM pl_trace_stage"
                      " ON CONFLICT (project_id, id) DO NOTHING",
                      0, NULL, err);
}

int pl_cluster_store_batch(PGconn *conn, const char *traces_copy, size_t traces_len,
                           const char *failures_json, int grouping_version,
                           const char *clusters_topic, struct pl_pg_error *err)
{
    int64_t t0 = pl_now_ms();
    err->message[0] = '\0';
    if (cluster_store_copy_traces(conn, traces_copy, traces_len, err) != 0)
        return -1;

    int64_t t1 = pl_now_ms();
    char gv[16];
    snprintf(gv, sizeof(gv), "%d", grouping_version);
    const char *p2[2] = {failures_json, gv};
    /* Sorted by key so that concurrent detectors lock clusters in the same order. */
    if (pl_pg_exec(
            conn,
            "INSERT INTO failure_clusters (tenant_id, project_id, signature, template, error_type,"
            " count, first_seen, last_seen, grouping_version)"
            " SELECT tenant_id, project_id, signature, min(template), min(error_type), 0,"
            "  min(seen_at), max(seen_at), $2::int"
            " FROM jsonb_to_recordset($1::jsonb) AS f(tenant_id uuid, project_id uuid,"
            "  signature text, template text, error_type text, seen_at timestamptz)"
            " GROUP BY tenant_id, project_id, signature ORDER BY project_id, signature"
            " ON CONFLICT (project_id, signature) DO UPDATE SET"
            "  first_seen = least(failure_clusters.first_seen, EXCLUDED.first_seen),"
            "  last_seen = greatest(failure_clusters.last_seen, EXCLUDED.last_seen)",
            2, p2, err) != 0)
        return -1;

    int64_t t2 = pl_now_ms();
    /* Members first; counts grow by the members that were new, so replays add nothing. */
    const char *p3[1] = {failures_json};
    if (pl_pg_exec(conn,
                   "WITH f AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS f(tenant_id uuid,"
                   "   project_id uuid, trace_id text, signature text)),"
                   " m AS (INSERT INTO cluster_members (cluster_id, trace_id, tenant_id)"
                   "   SELECT DISTINCT c.id, f.trace_id, f.tenant_id FROM f JOIN failure_clusters c"
                   "   ON c.project_id = f.project_id AND c.signature = f.signature"
                   "   ON CONFLICT DO NOTHING RETURNING cluster_id)"
                   " UPDATE failure_clusters c SET count = c.count + n.n"
                   " FROM (SELECT cluster_id, count(*) AS n FROM m GROUP BY cluster_id) n"
                   " WHERE c.id = n.cluster_id",
                   1, p3, err) != 0)
        return -1;

    int64_t t3 = pl_now_ms();
    const char *p4[2] = {failures_json, clusters_topic};
    PGresult *res = pl_pg_query(
        conn,
        "WITH touched AS (SELECT DISTINCT project_id, signature FROM"
        "   jsonb_to_recordset($1::jsonb) AS f(project_id uuid, signature text)),"
        " crossed AS (UPDATE failure_clusters c SET threshold_reached_at = c.last_seen"
        "   FROM touched t, projects p WHERE c.project_id = t.project_id"
        "   AND c.signature = t.signature AND p.id = c.project_id"
        "   AND c.threshold_reached_at IS NULL AND c.count >= p.cluster_min_size"
        "   RETURNING c.id, c.tenant_id, c.project_id, c.signature, c.count)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $2, signature, jsonb_build_object('schema_version', 1, 'tenant_id', tenant_id,"
        "   'project_id', project_id, 'cluster_id', id, 'signature', signature, 'count', count)"
        " FROM crossed RETURNING id",
        2, p4, err);
    if (!res)
        return -1;
    int events = PQntuples(res);
    PQclear(res);
    pl_debug("cluster store: traces %lld ms, clusters %lld ms, members %lld ms, threshold %lld ms",
             (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2),
             (long long)(pl_now_ms() - t3));
    return events;
}

char *pl_cluster_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                            const char *from, const char *to, long long limit,
                            struct pl_pg_error *err)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    const char *params[5] = {tenant_id, project_id, from, to, lim};
    PGresult *res = pl_pg_query(
        conn,
        "SELECT '{\"clusters\":[' || coalesce(string_agg(row_to_json(x)::text, ','"
        "   ORDER BY x.last_seen DESC, x.signature), '') || ']}'"
        " FROM (SELECT c.signature, c.template AS error_message, c.error_type, c.count,"
        "   pl_ts(c.first_seen) AS first_seen, pl_ts(c.last_seen) AS last_seen,"
        "   c.project_id, coalesce((SELECT json_agg(m.trace_id ORDER BY m.trace_id) FROM"
        "     (SELECT trace_id FROM cluster_members WHERE cluster_id = c.id"
        "      ORDER BY trace_id LIMIT 5) m), '[]'::json) AS sample_ids"
        "   FROM failure_clusters c WHERE c.tenant_id = $1"
        "   AND ($2::uuid IS NULL OR c.project_id = $2)"
        "   AND ($3::timestamptz IS NULL OR c.last_seen >= $3)"
        "   AND ($4::timestamptz IS NULL OR c.last_seen <= $4)"
        "   ORDER BY c.last_seen DESC, c.signature LIMIT $5) x",
        5, params, err);
    if (!res)
        return NULL;
    char *json = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return json;
}
