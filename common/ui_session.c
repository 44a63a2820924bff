/* Dashboard sessions, sign-in links and proxy users (see ui_session.h). */
#include "ui_session.h"

#include "util.h"

#include <stdio.h>
#include <string.h>

static int ui_random_hex(char out[PL_UI_TOKEN_SIZE])
{
    unsigned char raw[32];
    if (pl_random_bytes(raw, sizeof(raw)) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* The stored form of a token (its SHA-256); false for text that is no token of ours. */
static bool ui_token_hash(const char *token, char hash[65])
{
    if (!token || strlen(token) != PL_UI_TOKEN_SIZE - 1)
        return false;
    pl_sha256_hex(token, strlen(token), hash);
    return true;
}

/* who from a row of (key id, tenant id, role, plan[, user id, user name]); a NULL key id
 * (a user's session) reads as "". false when the role is unknown. */
static bool ui_principal_from_row(const PGresult *res, struct pl_principal *who)
{
    memset(who, 0, sizeof(*who));
    snprintf(who->key_id, sizeof(who->key_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(who->tenant_id, sizeof(who->tenant_id), "%s", PQgetvalue(res, 0, 1));
    snprintf(who->plan, sizeof(who->plan), "%s", PQgetvalue(res, 0, 3));
    if (PQnfields(res) >= 6) {
        snprintf(who->user_id, sizeof(who->user_id), "%s", PQgetvalue(res, 0, 4));
        snprintf(who->user_name, sizeof(who->user_name), "%s", PQgetvalue(res, 0, 5));
    }
    return pl_auth_role_parse(PQgetvalue(res, 0, 2), &who->role) == 0;
}

/* Runs sql (one parameter) and reads who from its single row: 1 found, 0 not, -1 with err. */
static int ui_principal_query(PGconn *conn, const char *sql, const char *param,
                              struct pl_principal *who, struct pl_pg_error *err)
{
    const char *p[1] = {param};
    PGresult *res = pl_pg_query(conn, sql, 1, p, err);
    if (!res)
        return -1;
    int found = PQntuples(res) == 1 && ui_principal_from_row(res, who);
    PQclear(res);
    return found;
}

int pl_ui_session_create(PGconn *conn, const struct pl_principal *who, int ttl_s,
                         char token[PL_UI_TOKEN_SIZE], char csrf[PL_UI_TOKEN_SIZE],
                         struct pl_pg_error *err)
{
    if (ui_random_hex(token) != 0 || ui_random_hex(csrf) != 0) {
        snprintf(err->message, sizeof(err->message), "no random source");
        err->sqlstate[0] = '\0';
        return -1;
    }
    char hash[65], ttl[16];
    pl_sha256_hex(token, strlen(token), hash);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    const char *p[6] = {hash, who->tenant_id, who->key_id, csrf, ttl, who->user_id};
    return pl_pg_exec(conn,
                      "INSERT INTO ui_sessions (token_hash, tenant_id, key_id, csrf_token,"
                      " expires_at, user_id) VALUES ($1, $2, nullif($3, '')::uuid, $4,"
                      " now() + $5::int * interval '1 second', nullif($6, '')::uuid)",
                      6, p, err);
}

int pl_ui_session_get(PGconn *conn, const char *token, struct pl_principal *who,
                      char csrf[PL_UI_TOKEN_SIZE], struct pl_pg_error *err)
{
    char hash[65];
    if (!ui_token_hash(token, hash))
        return 0;
    const char *p[1] = {hash};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_ui_session_get",
        "SELECT k.id, s.tenant_id, coalesce(k.role, u.role), t.plan, u.id, u.name,"
        " s.csrf_token FROM ui_sessions s JOIN tenants t ON t.id = s.tenant_id"
        " LEFT JOIN api_keys k ON k.id = s.key_id LEFT JOIN ui_users u ON u.id = s.user_id"
        " WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now()"
        " AND ((k.id IS NOT NULL AND k.revoked_at IS NULL)"
        "   OR (u.id IS NOT NULL AND u.disabled_at IS NULL))",
        1, p, err);
    if (!res)
        return -1;
    int found = PQntuples(res) == 1 && ui_principal_from_row(res, who);
    if (found)
        snprintf(csrf, PL_UI_TOKEN_SIZE, "%s", PQgetvalue(res, 0, 6));
    PQclear(res);
    return found;
}

int pl_ui_session_end(PGconn *conn, const char *token, struct pl_pg_error *err)
{
    char hash[65];
    if (!ui_token_hash(token, hash))
        return 0;
    const char *p[1] = {hash};
    PGresult *res = pl_pg_query(conn,
                                "UPDATE ui_sessions SET ended_at = now() WHERE token_hash = $1"
                                " AND ended_at IS NULL RETURNING 1",
                                1, p, err);
    if (!res)
        return -1;
    int ended = PQntuples(res) == 1;
    PQclear(res);
    return ended;
}

int pl_ui_link_create(PGconn *conn, const struct pl_principal *who, int ttl_s,
                      char token[PL_UI_TOKEN_SIZE], struct pl_pg_error *err)
{
    if (ui_random_hex(token) != 0) {
        snprintf(err->message, sizeof(err->message), "no random source");
        err->sqlstate[0] = '\0';
        return -1;
    }
    char hash[65], ttl[16];
    pl_sha256_hex(token, strlen(token), hash);
    snprintf(ttl, sizeof(ttl), "%d", ttl_s);
    const char *p[4] = {hash, who->tenant_id, who->key_id, ttl};
    return pl_pg_exec(conn,
                      "INSERT INTO ui_signin_links (token_hash, tenant_id, key_id, expires_at)"
                      " VALUES ($1, $2, $3, now() + $4::int * interval '1 second')",
                      4, p, err);
}

int pl_ui_link_redeem(PGconn *conn, const char *token, struct pl_principal *who,
                      struct pl_pg_error *err)
{
    char hash[65];
    if (!ui_token_hash(token, hash))
        return 0;
    /* the UPDATE's condition is the once: of two redeemers one marks it, the other finds
     * it used */
    return ui_principal_query(
        conn,
        "WITH used AS (UPDATE ui_signin_links SET used_at = now() WHERE token_hash = $1"
        "   AND used_at IS NULL AND expires_at > now() RETURNING key_id)"
        " SELECT k.id, k.tenant_id, k.role, t.plan FROM used JOIN api_keys k ON k.id = used.key_id"
        " JOIN tenants t ON t.id = k.tenant_id WHERE k.revoked_at IS NULL",
        hash, who, err);
}

int pl_ui_user_find(PGconn *conn, const char *name, struct pl_principal *who,
                    struct pl_pg_error *err)
{
    return ui_principal_query(conn,
                              "SELECT NULL, u.tenant_id, u.role, t.plan, u.id, u.name"
                              " FROM ui_users u JOIN tenants t ON t.id = u.tenant_id"
                              " WHERE u.name = $1 AND u.disabled_at IS NULL",
                              name, who, err);
}
