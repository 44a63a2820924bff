/* The audit log for owners and reviewers: a filtered page of entries, newest first, and the
 * chain's verification (recomputed in C from the stored rows). */
#include "api.h"

#include "audit.h"
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_audit_list(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    static const char *const allowed[] = {"actor", "action", "target", "from",
                                          "to",    "cursor", "limit",  NULL};
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, allowed, NULL))
        return;
    struct pl_audit_filter f = {
        .actor = pl_http_query(req, "actor"),
        .action = pl_http_query(req, "action"),
        .target = pl_http_query(req, "target"),
        .from = pl_http_query(req, "from"),
        .to = pl_http_query(req, "to"),
        .cursor = pl_http_query(req, "cursor"),
    };
    long long limit, cursor;
    char why[128];
    if (pl_param_int("limit", pl_http_query(req, "limit"), 50, 1, 200, &limit, why, sizeof(why)) !=
        0) {
        pl_http_error(res, 400, "%s", why);
        return;
    }
    if (f.cursor && pl_param_int("cursor", f.cursor, 0, 1, 9223372036854775807LL, &cursor, why,
                                 sizeof(why)) != 0) {
        pl_http_error(res, 400, "cursor is not a cursor of this list (use next_cursor as given)");
        return;
    }
    const char *const texts[3][2] = {
        {"actor", f.actor}, {"action", f.action}, {"target", f.target}};
    for (size_t i = 0; i < 3; i++)
        if (texts[i][1] && (texts[i][1][0] == '\0' || strlen(texts[i][1]) > 256)) {
            pl_http_error(res, 400, "%s must be 1 to 256 characters", texts[i][0]);
            return;
        }
    if ((f.from && !pl_param_timestamp_ok(f.from)) || (f.to && !pl_param_timestamp_ok(f.to))) {
        pl_http_error(res, 400, "%s must be an ISO-8601 timestamp (2026-01-31T12:00:00Z)",
                      f.from && !pl_param_timestamp_ok(f.from) ? "from" : "to");
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    struct pl_pg_error err;
    char *json = NULL;
    int r = pl_audit_list(conn, who.tenant_id, &f, limit, &json, &err);
    api_db_release(req, conn);
    api_answer(res, r, json, &err, "audit page");
}

/* The chain recomputed, where it ends, and whether a head published earlier is still in it
 * (a deletion up to it, or a rewrite, makes it vanish). */
void api_audit_verify(struct pl_http_request *req, struct pl_http_response *res)
{
    struct pl_principal who;
    static const char *const allowed[] = {"expected_head_hash", NULL};
    if (!api_authorize(req, res, PL_ROLES_ANY, false, &who) ||
        !api_query_params(req, res, allowed, NULL))
        return;
    const char *expected = pl_http_query(req, "expected_head_hash");
    if (expected && (strlen(expected) != 64 || strspn(expected, "0123456789abcdef") != 64)) {
        pl_http_error(res, 400, "expected_head_hash must be 64 lower-case hex digits");
        return;
    }
    PGconn *conn = api_db(req, res);
    if (!conn)
        return;
    char why[512] = "";
    struct pl_audit_head head;
    long long n = pl_audit_verify_head(conn, who.tenant_id, expected, &head, why, sizeof(why));
    api_db_release(req, conn);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "verified", json_object_new_boolean(n >= 0));
    json_object_object_add(o, "head_hash",
                           n >= 0 && head.hash[0] ? json_object_new_string(head.hash) : NULL);
    json_object_object_add(o, "row_count", n >= 0 ? json_object_new_int64(head.rows) : NULL);
    json_object_object_add(
        o, "hash_matches",
        n < 0 || head.expected_found < 0 ? NULL : json_object_new_boolean(head.expected_found));
    json_object_object_add(o, "error", n >= 0 ? NULL : json_object_new_string(why));
    pl_http_json(res, 200, o);
}
