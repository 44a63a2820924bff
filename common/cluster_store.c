/* SQL for failure clusters: what the detector writes and the API reads. */
#include "cluster_store.h"

#include "audit.h"

#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Streams COPY text rows into the table and columns COPY names. */
static int cluster_store_copy(PGconn *conn, const char *copy, const char *rows, size_t len,
                              struct pl_pg_error *err)
{
    err->sqlstate[0] = '\0';
    err->message[0] = '\0';
    PGresult *res = PQexec(conn, copy);
    int rc = PQresultStatus(res) == PGRES_COPY_IN ? 0 : -1;
    if (rc != 0) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
        snprintf(err->message, sizeof(err->message), "%s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    }
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
    if (rc != 0 && !err->message[0])
        snprintf(err->message, sizeof(err->message), "%s", PQerrorMessage(conn));
    return rc;
}

/*
 * COPY is several times cheaper than parsing the batch as one JSON parameter. The common case
 * (no row of the batch stored before) is one COPY straight into the table. A replayed or
 * duplicated row makes that COPY fail as a whole with a unique violation: the savepoint undoes
 * it, the rows are copied into the session's staging table pl_stage_<table> instead, and merge
 * inserts them from there with ON CONFLICT, which COPY alone cannot.
 * Returns 1 when the direct COPY took the rows, 0 after the merge, -1 on error.
 */
static int cluster_store_copy_or_merge(PGconn *conn, const char *table, const char *columns,
                                       const char *rows, size_t len, const char *merge,
                                       struct pl_pg_error *err)
{
    char sql[512];
    if (pl_pg_exec(conn, "SAVEPOINT pl_copy", 0, NULL, err) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN", table, columns);
    if (cluster_store_copy(conn, sql, rows, len, err) == 0)
        return pl_pg_exec(conn, "RELEASE SAVEPOINT pl_copy", 0, NULL, err) == 0 ? 1 : -1;
    if (strcmp(err->sqlstate, "23505") != 0)
        return -1;
    pl_debug("cluster store: the batch holds rows of %s stored before; merging", table);
    err->message[0] = '\0';
    if (pl_pg_exec(conn, "ROLLBACK TO SAVEPOINT pl_copy", 0, NULL, err) != 0)
        return -1;
    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE IF NOT EXISTS pl_stage_%s (LIKE %s INCLUDING DEFAULTS)"
             " ON COMMIT DELETE ROWS",
             table, table);
    if (pl_pg_exec(conn, sql, 0, NULL, err) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "COPY pl_stage_%s (%s) FROM STDIN", table, columns);
    if (cluster_store_copy(conn, sql, rows, len, err) != 0 ||
        pl_pg_exec(conn, merge, 0, NULL, err) != 0)
        return -1;
    return 0;
}

static int cluster_failure_cmp(const void *a, const void *b)
{
    const struct pl_cluster_failure *x = a, *y = b;
    int c = strcmp(x->project_id, y->project_id);
    if (!c)
        c = strcmp(x->signature, y->signature);
    return c ? c : strcmp(x->trace_id, y->trace_id);
}

/* Orders two of the envelopes' timestamps (YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z, checked by the
 * detector): the seconds compare as text, the fractions as numbers. */
static int cluster_seen_cmp(const char *a, const char *b)
{
    int c = strncmp(a, b, 19);
    if (c)
        return c;
    long fa = 0, fb = 0;
    int da = 0, db = 0;
    for (const char *p = a[19] == '.' ? a + 20 : a + 19; *p >= '0' && *p <= '9'; p++, da++)
        fa = fa * 10 + (*p - '0');
    for (const char *p = b[19] == '.' ? b + 20 : b + 19; *p >= '0' && *p <= '9'; p++, db++)
        fb = fb * 10 + (*p - '0');
    for (; da < 6; da++)
        fa *= 10;
    for (; db < 6; db++)
        fb *= 10;
    return (fa > fb) - (fa < fb);
}

/* The failures of one cluster: a run of the sorted array. */
struct cluster_group {
    size_t first, n; /* the run */
    size_t members;  /* distinct traces */
    const char *min_seen, *max_seen;
    char id[37]; /* failure_clusters.id */
};

/* Creates or widens the batch's clusters (ordered by key, so that concurrent detectors lock
 * them in the same order) and fills each group's cluster id. */
static int cluster_store_upsert(PGconn *conn, const struct pl_cluster_failure *f,
                                struct cluster_group *g, size_t ng, int grouping_version,
                                struct pl_pg_error *err)
{
    const char **cols[7];
    for (int c = 0; c < 7; c++)
        if (!(cols[c] = calloc(ng, sizeof(char *)))) {
            while (c-- > 0)
                free(cols[c]);
            snprintf(err->message, sizeof(err->message), "out of memory");
            return -1;
        }
    for (size_t i = 0; i < ng; i++) {
        const struct pl_cluster_failure *x = &f[g[i].first];
        cols[0][i] = x->tenant_id;
        cols[1][i] = x->project_id;
        cols[2][i] = x->signature;
        cols[3][i] = x->template;
        cols[4][i] = x->error_type;
        cols[5][i] = g[i].min_seen;
        cols[6][i] = g[i].max_seen;
    }
    char *arrays[7] = {0};
    char gv[16];
    snprintf(gv, sizeof(gv), "%d", grouping_version);
    int rc = -1;
    for (int c = 0; c < 7; c++)
        if (!(arrays[c] = pl_pg_text_array(cols[c], ng)))
            goto out;
    const char *params[8] = {arrays[0], arrays[1], arrays[2], arrays[3],
                             arrays[4], arrays[5], arrays[6], gv};
    PGresult *res = pl_pg_query(
        conn,
        "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
        "   $5::text[], $6::timestamptz[], $7::timestamptz[]) WITH ORDINALITY"
        "   AS u(tenant_id, project_id, signature, template, error_type, first_seen, last_seen, "
        "i)),"
        " c AS (INSERT INTO failure_clusters (tenant_id, project_id, signature, template,"
        "   error_type, count, first_seen, last_seen, grouping_version)"
        "   SELECT tenant_id, project_id, signature, template, error_type, 0, first_seen,"
        "   last_seen, $8::int FROM u ORDER BY project_id, signature"
        "   ON CONFLICT (project_id, signature) DO UPDATE SET"
        "   first_seen = least(failure_clusters.first_seen, EXCLUDED.first_seen),"
        "   last_seen = greatest(failure_clusters.last_seen, EXCLUDED.last_seen)"
        "   RETURNING id, project_id, signature)"
        " SELECT u.i, c.id FROM c JOIN u USING (project_id, signature)",
        8, params, err);
    if (!res)
        goto out;
    for (int r = 0; r < PQntuples(res); r++) {
        long long i = pl_pg_getll(res, r, 0);
        if (i >= 1 && (size_t)i <= ng)
            snprintf(g[i - 1].id, sizeof(g[i - 1].id), "%s", PQgetvalue(res, r, 1));
    }
    rc = PQntuples(res) == (int)ng ? 0 : -1;
    if (rc)
        snprintf(err->message, sizeof(err->message), "cluster upsert returned %d of %zu rows",
                 PQntuples(res), ng);
    PQclear(res);
out:
    for (int c = 0; c < 7; c++) {
        free(arrays[c]);
        free(cols[c]);
    }
    return rc;
}

/* Adds the members and raises each cluster's count by its new members only (replays add
 * nothing). ids is the clusters' uuid[] literal, in group order. */
static int cluster_store_members(PGconn *conn, const struct pl_cluster_failure *f,
                                 const struct cluster_group *g, size_t ng, const char *ids,
                                 struct pl_pg_error *err)
{
    char *rows = NULL, *ns = NULL;
    size_t rows_len = 0, ns_len = 0;
    FILE *copy = open_memstream(&rows, &rows_len), *fn = open_memstream(&ns, &ns_len);
    int rc = -1;
    if (!copy || !fn) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto out;
    }
    fputc('{', fn);
    for (size_t i = 0; i < ng; i++) {
        fprintf(fn, "%s%zu", i ? "," : "", g[i].members);
        for (size_t k = g[i].first; k < g[i].first + g[i].n; k++) {
            if (k > g[i].first && strcmp(f[k].trace_id, f[k - 1].trace_id) == 0)
                continue; /* one trace, two failures with one signature */
            pl_pg_copy_text(copy, g[i].id, false);
            pl_pg_copy_text(copy, f[k].trace_id, false);
            pl_pg_copy_text(copy, f[k].tenant_id, true);
        }
    }
    fputc('}', fn);
    fclose(copy);
    fclose(fn);
    copy = fn = NULL;
    /* The merge counts what it inserted; after a direct COPY every member was new. */
    int copied = cluster_store_copy_or_merge(
        conn, "cluster_members", "cluster_id, trace_id, tenant_id", rows, rows_len,
        "WITH m AS (INSERT INTO cluster_members (cluster_id, trace_id, tenant_id)"
        "   SELECT cluster_id, trace_id, tenant_id FROM pl_stage_cluster_members"
        "   ON CONFLICT DO NOTHING RETURNING cluster_id)"
        " UPDATE failure_clusters c SET count = c.count + n.n"
        " FROM (SELECT cluster_id, count(*) AS n FROM m GROUP BY cluster_id) n"
        " WHERE c.id = n.cluster_id",
        err);
    const char *p[2] = {ids, ns};
    if (copied < 0 ||
        (copied == 1 && pl_pg_exec(conn,
                                   "UPDATE failure_clusters c SET count = c.count + u.n"
                                   " FROM unnest($1::uuid[], $2::int[]) AS u(id, n)"
                                   " WHERE c.id = u.id",
                                   2, p, err) != 0))
        goto out;
    rc = 0;
out:
    if (copy)
        fclose(copy);
    if (fn)
        fclose(fn);
    free(rows);
    free(ns);
    return rc;
}

int pl_cluster_store_batch(PGconn *conn, const char *traces_copy, size_t traces_len,
                           struct pl_cluster_failure *failures, size_t nfailures,
                           int grouping_version, const char *clusters_topic,
                           struct pl_pg_error *err)
{
    int64_t t0 = pl_now_ms();
    err->message[0] = '\0';
    err->sqlstate[0] = '\0';
    if (cluster_store_copy_or_merge(conn, "traces", PL_CLUSTER_STORE_TRACE_COLUMNS, traces_copy,
                                    traces_len,
                                    "INSERT INTO traces (" PL_CLUSTER_STORE_TRACE_COLUMNS ")"
                                    " SELECT " PL_CLUSTER_STORE_TRACE_COLUMNS
                                    " FROM pl_stage_traces ON CONFLICT (project_id, id) DO NOTHING",
                                    err) < 0)
        return -1;
    if (nfailures == 0)
        return 0;

    int64_t t1 = pl_now_ms();
    qsort(failures, nfailures, sizeof(*failures), cluster_failure_cmp);
    struct cluster_group *groups = calloc(nfailures, sizeof(*groups));
    if (!groups) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    size_t ng = 0;
    for (size_t i = 0; i < nfailures; i++) {
        const struct pl_cluster_failure *x = &failures[i];
        struct cluster_group *g = ng ? &groups[ng - 1] : NULL;
        if (!g || strcmp(failures[g->first].project_id, x->project_id) != 0 ||
            strcmp(failures[g->first].signature, x->signature) != 0) {
            g = &groups[ng++];
            *g = (struct cluster_group){.first = i, .min_seen = x->seen_at, .max_seen = x->seen_at};
        } else if (strcmp(failures[i - 1].trace_id, x->trace_id) == 0) {
            g->n++;
            continue;
        }
        if (g->n++ > 0) {
            if (cluster_seen_cmp(x->seen_at, g->min_seen) < 0)
                g->min_seen = x->seen_at;
            if (cluster_seen_cmp(x->seen_at, g->max_seen) > 0)
                g->max_seen = x->seen_at;
        }
        g->members++;
    }
    int events = -1;
    PGresult *res = NULL;
    char *ids = NULL;
    size_t ids_len = 0;
    if (cluster_store_upsert(conn, failures, groups, ng, grouping_version, err) != 0)
        goto out;
    int64_t t2 = pl_now_ms();
    FILE *fi = open_memstream(&ids, &ids_len);
    if (!fi)
        goto out;
    fputc('{', fi);
    for (size_t i = 0; i < ng; i++)
        fprintf(fi, "%s%s", i ? "," : "", groups[i].id);
    fputc('}', fi);
    fclose(fi);
    if (cluster_store_members(conn, failures, groups, ng, ids, err) != 0)
        goto out;

    int64_t t3 = pl_now_ms();
    const char *p4[2] = {ids, clusters_topic};
    res = pl_pg_query(
        conn,
        "WITH crossed AS (UPDATE failure_clusters c SET threshold_reached_at = c.last_seen"
        "   FROM projects p WHERE c.id = ANY($1::uuid[]) AND p.id = c.project_id"
        "   AND c.threshold_reached_at IS NULL AND c.count >= p.cluster_min_size"
        "   RETURNING c.id, c.tenant_id, c.project_id, c.signature, c.count)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $2, signature, jsonb_build_object('schema_version', 1, 'tenant_id', tenant_id,"
        "   'project_id', project_id, 'cluster_id', id, 'signature', signature, 'count', count)"
        " FROM crossed RETURNING id",
        2, p4, err);
    if (!res)
        goto out;
    events = PQntuples(res);
    pl_debug("cluster store: traces %lld ms, %zu clusters %lld ms, members %lld ms,"
             " threshold %lld ms",
             (long long)(t1 - t0), ng, (long long)(t2 - t1), (long long)(t3 - t2),
             (long long)(pl_now_ms() - t3));
out:
    PQclear(res);
    free(ids);
    free(groups);
    return events;
}

/* The columns of a cluster as the API shows it, for a row c of failure_clusters: trend_24h
 * counts the members that joined in each of the last 24 hours (oldest first, the current hour
 * last), and deployment_id/status name the newest proposal made for the cluster. */
#define CLUSTER_COLUMNS                                                                            \
    "c.id, c.signature, c.template AS error_message, c.error_type, c.count,"                       \
    " pl_ts(c.first_seen) AS first_seen, pl_ts(c.last_seen) AS last_seen, c.project_id,"           \
    " c.status, (SELECT json_agg(coalesce(h.n, 0) ORDER BY g.i) FROM generate_series(0, 23) g(i)"  \
    "   LEFT JOIN (SELECT 23 - (extract(epoch FROM date_trunc('hour', now())"                      \
    "       - date_trunc('hour', m.added_at)) / 3600)::int AS i, count(*) AS n"                    \
    "     FROM cluster_members m WHERE m.cluster_id = c.id"                                        \
    "     AND m.added_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1) h"         \
    "   ON h.i = g.i) AS trend_24h,"                                                               \
    " d.id AS deployment_id, d.status AS deployment_status,"                                       \
    " coalesce((SELECT json_agg(m.trace_id ORDER BY m.trace_id) FROM"                              \
    "   (SELECT trace_id FROM cluster_members WHERE cluster_id = c.id"                             \
    "    ORDER BY trace_id LIMIT 5) m), '[]'::json) AS sample_ids"
#define CLUSTER_DEPLOYMENT                                                                         \
    " LEFT JOIN LATERAL (SELECT id, status FROM prompt_deployments WHERE cluster_id = c.id"        \
    "   ORDER BY created_at DESC LIMIT 1) d ON true"

char *pl_cluster_store_list(PGconn *conn, const char *tenant_id, const char *project_id,
                            const char *status, const char *from, const char *to, long long limit,
                            long long offset, struct pl_pg_error *err)
{
    char lim[24], more[24], off[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(more, sizeof(more), "%lld", limit + 1); /* one more: is there a next page? */
    snprintf(off, sizeof(off), "%lld", offset);
    const char *params[8] = {tenant_id, project_id, from, to, more, status, off, lim};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_cluster_list",
        "SELECT '{\"clusters\":[' || coalesce(string_agg(x.j, ',' ORDER BY x.n)"
        "   FILTER (WHERE x.n <= $8), '') || '],\"next_offset\":'"
        " || CASE WHEN count(*) > $8 THEN ($7 + $8)::text ELSE 'null' END || '}'"
        " FROM (SELECT row_number() OVER (ORDER BY y.last_seen DESC, y.signature) AS n,"
        "   row_to_json(y)::text AS j FROM (SELECT " CLUSTER_COLUMNS
        "   FROM (SELECT * FROM failure_clusters c WHERE c.tenant_id = $1"
        "     AND ($2::uuid IS NULL OR c.project_id = $2)"
        "     AND ($3::timestamptz IS NULL OR c.last_seen >= $3)"
        "     AND ($4::timestamptz IS NULL OR c.last_seen <= $4)"
        "     AND ($6::text IS NULL OR c.status = $6)"
        "     ORDER BY c.last_seen DESC, c.signature LIMIT $5 OFFSET $7) c" CLUSTER_DEPLOYMENT
        "   ) y) x",
        8, params, err);
    if (!res)
        return NULL;
    char *json = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!json)
        snprintf(err->message, sizeof(err->message), "out of memory");
    return json;
}

int pl_cluster_store_get(PGconn *conn, const char *tenant_id, const char *id, char **json,
                         struct pl_pg_error *err)
{
    const char *params[2] = {tenant_id, id};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_cluster_get",
        "SELECT row_to_json(x) FROM (SELECT " CLUSTER_COLUMNS ","
        " coalesce((SELECT json_agg(t ORDER BY t.created_at DESC, t.id) FROM (SELECT tr.id,"
        "   tr.model, tr.input, tr.output, tr.error, pl_ts(tr.created_at) AS created_at"
        "   FROM (SELECT trace_id FROM cluster_members WHERE cluster_id = c.id"
        "     ORDER BY added_at DESC, trace_id LIMIT 20) m"
        "   JOIN traces tr ON tr.tenant_id = c.tenant_id AND tr.project_id = c.project_id"
        "     AND tr.id = m.trace_id) t), '[]'::json) AS samples,"
        " coalesce((SELECT json_agg(json_build_object('id', p.id, 'status', p.status,"
        "   'created_at', pl_ts(p.created_at)) ORDER BY p.created_at DESC)"
        "   FROM prompt_deployments p WHERE p.cluster_id = c.id), '[]'::json) AS deployments"
        " FROM failure_clusters c" CLUSTER_DEPLOYMENT " WHERE c.tenant_id = $1 AND c.id = $2) x",
        2, params, err);
    if (!res)
        return -1;
    int found = PQntuples(res) == 1;
    *json = found ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    if (found && !*json) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return -1;
    }
    return found;
}

int pl_cluster_store_set_status(PGconn *conn, const char *tenant_id, const char *id,
                                const char *status, const char *actor, char **json,
                                struct pl_pg_error *err)
{
    const char *params[3] = {tenant_id, id, status};
    /* the audit entry records the change; setting the status it already has changes nothing
     * and writes no entry */
    int r = pl_audit_write(conn,
                           "WITH old AS (SELECT status FROM failure_clusters"
                           "   WHERE tenant_id = $1 AND id = $2 FOR UPDATE)"
                           " UPDATE failure_clusters c SET status = $3 FROM old"
                           " WHERE c.tenant_id = $1 AND c.id = $2 AND old.status <> $3"
                           " RETURNING c.id, json_build_object('from', old.status, 'to', $3)",
                           3, params, tenant_id, actor, "cluster.status", NULL, 0, NULL, err);
    if (r < 0)
        return -1;
    return pl_cluster_store_get(conn, tenant_id, id, json, err);
}

int pl_cluster_store_publish_failures(PGconn *conn, const struct pl_cluster_failure *failures,
                                      size_t nfailures, const char *failures_topic,
                                      struct pl_pg_error *err)
{
    if (nfailures == 0)
        return 0;
    char *arrays[3] = {NULL, NULL, NULL};
    size_t lens[3];
    FILE *f[3];
    int events = -1;
    for (int c = 0; c < 3; c++)
        f[c] = open_memstream(&arrays[c], &lens[c]);
    if (f[0] && f[1] && f[2]) {
        for (int c = 0; c < 3; c++)
            fputc('{', f[c]);
        for (size_t i = 0; i < nfailures; i++) {
            pl_pg_array_item(f[0], failures[i].project_id, i == 0);
            pl_pg_array_item(f[1], failures[i].trace_id, i == 0);
            pl_pg_array_item(f[2], failures[i].tenant_id, i == 0);
        }
        for (int c = 0; c < 3; c++)
            fputc('}', f[c]);
    }
    for (int c = 0; c < 3; c++)
        if (f[c])
            fclose(f[c]);
    if (!arrays[0] || !arrays[1] || !arrays[2]) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        goto out;
    }
    /* One trace with several failures (signatures) is one event: DISTINCT, then the
     * primary key of control_failures keeps it to one for good. */
    const char *p[4] = {arrays[0], arrays[1], arrays[2], failures_topic};
    PGresult *res = pl_pg_query(
        conn,
        "WITH f AS (SELECT DISTINCT u.project_id, u.trace_id, u.tenant_id"
        "   FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS u(project_id, trace_id, tenant_id)"
        "   WHERE EXISTS (SELECT 1 FROM policies p WHERE p.project_id = u.project_id"
        "     AND p.status = 'active' AND p.rollout_pct > 0)),"
        " kept AS (INSERT INTO control_failures (project_id, trace_id, tenant_id)"
        "   SELECT project_id, trace_id, tenant_id FROM f ON CONFLICT DO NOTHING"
        "   RETURNING project_id, trace_id, tenant_id)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $4, trace_id, jsonb_build_object('schema_version', 1, 'tenant_id', tenant_id,"
        "   'project_id', project_id, 'trace_id', trace_id)"
        " FROM kept RETURNING id",
        4, p, err);
    if (res) {
        events = PQntuples(res);
        PQclear(res);
    }
out:
    for (int c = 0; c < 3; c++)
        free(arrays[c]);
    return events;
}
