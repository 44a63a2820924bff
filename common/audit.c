/* The hash-chained audit log: append, list, verify (see audit.h). */
#include "audit.h"

#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hashed text is prev_hash|tenant|actor|action|target|detail|at_us, where detail is
 * jsonb's canonical text and at_us the timestamp in microseconds since the epoch. */
#define AUDIT_CANONICAL_FIELDS                                                                     \
    "concat_ws('|', tenant_id::text, actor, action, target, detail::text,"                         \
    " (extract(epoch FROM at) * 1000000)::bigint::text)"

int pl_audit_append(PGconn *conn, const char *tenant_id, const char *actor, const char *action,
                    const char *target, const char *detail_json, struct pl_pg_error *err)
{
    const char *lock_params[1] = {tenant_id};
    PGresult *locked = pl_pg_query_prepared(
        conn, "pl_audit_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", 1,
        lock_params, err);
    if (!locked)
        return -1;
    PQclear(locked);
    /* Hashed in SQL from the values as stored (jsonb's canonical text, now()'s exact
     * microseconds); pl_audit_verify recomputes it independently in C. */
    const char *params[5] = {tenant_id, actor, action, target, detail_json};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_audit_append",
        "WITH prev AS (SELECT coalesce((SELECT hash FROM audit_log WHERE tenant_id = $1::uuid"
        "                 ORDER BY id DESC LIMIT 1), '') AS h)"
        " INSERT INTO audit_log (tenant_id, actor, action, target, detail, at, prev_hash, hash)"
        " SELECT $1::uuid, $2, $3, $4, $5::jsonb, now(), prev.h,"
        "   encode(sha256(convert_to(prev.h || '|' || concat_ws('|', $1::uuid::text, $2::text,"
        "   $3::text, $4::text, $5::jsonb::text,"
        "   (extract(epoch FROM now()) * 1000000)::bigint::text), 'UTF8')), 'hex')"
        " FROM prev",
        5, params, err);
    int rc = res ? 0 : -1;
    PQclear(res);
    return rc;
}

int pl_audit_list(PGconn *conn, const char *tenant_id, const struct pl_audit_filter *f,
                  long long limit, char **json, struct pl_pg_error *err)
{
    char lim[24], more[24];
    snprintf(lim, sizeof(lim), "%lld", limit);
    snprintf(more, sizeof(more), "%lld", limit + 1); /* one more: is there an older page? */
    const char *params[9] = {tenant_id, f->actor, f->action, f->target, f->cursor,
                             more,      lim,      f->from,   f->to};
    /* next_cursor is the id of the page's oldest entry, as text */
    return pl_pg_query_text_prepared(
        conn, "pl_audit_list",
        "SELECT '{\"items\":[' || coalesce(string_agg(row_to_json(x)::text, ','"
        "   ORDER BY x.id DESC) FILTER (WHERE p.n <= $7), '') || '],\"next_cursor\":'"
        " || CASE WHEN count(*) > $7 THEN '\"' || (min(x.id) FILTER (WHERE p.n <= $7))::text"
        "   || '\"' ELSE 'null' END || '}'"
        " FROM (SELECT a.*, row_number() OVER (ORDER BY a.id DESC) AS n FROM (SELECT a.id,"
        "   a.actor, a.action, a.target, a.detail, pl_ts(a.at) AS at, a.hash FROM audit_log a"
        "   WHERE a.tenant_id = $1 AND ($2::text IS NULL OR a.actor = $2)"
        "   AND ($3::text IS NULL OR a.action = $3) AND ($4::text IS NULL OR a.target = $4)"
        "   AND ($5::bigint IS NULL OR a.id < $5)"
        "   AND ($8::timestamptz IS NULL OR a.at >= $8) AND ($9::timestamptz IS NULL OR a.at <= $9)"
        "   ORDER BY a.id DESC LIMIT $6) a) p,"
        " LATERAL (SELECT p.id, p.actor, p.action, p.target, p.detail, p.at, p.hash) x",
        9, params, json, err);
}

long long pl_audit_verify_head(PGconn *conn, const char *tenant_id, const char *expected_head,
                               struct pl_audit_head *head, char *err, size_t errsz)
{
    memset(head, 0, sizeof(*head));
    head->expected_found = expected_head ? 0 : -1;
    const char *params[1] = {tenant_id};
    struct pl_pg_error perr;
    PGresult *res = pl_pg_query(conn,
                                "SELECT id, prev_hash, hash, " AUDIT_CANONICAL_FIELDS
                                " FROM audit_log WHERE tenant_id = $1 ORDER BY id",
                                1, params, &perr);
    if (!res) {
        snprintf(err, errsz, "%s", perr.message);
        return -1;
    }
    long long n = PQntuples(res);
    const char *expected_prev = "";
    long long rc = n;
    for (long long i = 0; i < n; i++) {
        const char *id = PQgetvalue(res, (int)i, 0);
        const char *prev = PQgetvalue(res, (int)i, 1);
        const char *hash = PQgetvalue(res, (int)i, 2);
        const char *body = PQgetvalue(res, (int)i, 3);
        if (strcmp(prev, expected_prev) != 0) {
            snprintf(err, errsz, "audit entry %s: prev_hash does not match entry before it", id);
            rc = -1;
            break;
        }
        size_t len = strlen(prev) + 1 + strlen(body) + 1;
        char *text = malloc(len);
        if (!text) {
            snprintf(err, errsz, "out of memory");
            rc = -1;
            break;
        }
        snprintf(text, len, "%s|%s", prev, body);
        char hex[65];
        pl_sha256_hex(text, strlen(text), hex);
        free(text);
        if (strcmp(hex, hash) != 0) {
            snprintf(err, errsz, "audit entry %s: hash does not match its contents", id);
            rc = -1;
            break;
        }
        expected_prev = hash;
        if (expected_head && strcmp(hash, expected_head) == 0)
            head->expected_found = 1;
    }
    if (rc >= 0) {
        snprintf(head->hash, sizeof(head->hash), "%s", expected_prev);
        head->rows = rc;
    }
    PQclear(res);
    return rc;
}

long long pl_audit_verify(PGconn *conn, const char *tenant_id, char *err, size_t errsz)
{
    struct pl_audit_head head;
    return pl_audit_verify_head(conn, tenant_id, NULL, &head, err, errsz);
}

static int audit_rollback(PGconn *conn, int rc)
{
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return rc;
}

int pl_audit_write(PGconn *conn, const char *sql, int nparams, const char *const *params,
                   const char *tenant_id, const char *actor, const char *action, const char *detail,
                   int on_unique, char **json, struct pl_pg_error *err)
{
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, err) != 0)
        return -1;
    PGresult *res = pl_pg_query(conn, sql, nparams, params, err);
    if (!res)
        return audit_rollback(
            conn, strcmp(err->sqlstate, PL_SQLSTATE_UNIQUE_VIOLATION) == 0 ? on_unique : -1);
    if (PQntuples(res) == 0) {
        PQclear(res);
        return audit_rollback(conn, 0);
    }
    if (pl_audit_append(conn, tenant_id, actor, action, PQgetvalue(res, 0, 0),
                        detail ? detail : PQgetvalue(res, 0, 1), err) != 0 ||
        pl_pg_exec(conn, "COMMIT", 0, NULL, err) != 0) {
        PQclear(res);
        return audit_rollback(conn, -1);
    }
    if (json)
        *json = strdup(PQgetvalue(res, 0, 1));
    PQclear(res);
    return 1;
}
