/* Dashboard sessions (table ui_sessions): created by signing in with an API key (or as a user
 * a trusted auth proxy names, table ui_users), held by the
 * browser as a random token in an HttpOnly cookie (only its SHA-256 is stored), ended by
 * signing out or by their expiry. A session acts with its key's tenant and role; a revoked
 * key ends its sessions' rights with it. */
#ifndef PL_UI_SESSION_H
#define PL_UI_SESSION_H

#include "auth.h"
#include "pg.h"

/** Hex of 32 random bytes, with its NUL. */
#define PL_UI_TOKEN_SIZE 65

/**
 * @brief Opens a session for the key of who, valid for ttl_s seconds: token (the cookie
 *        value) and csrf (the header value mutations must carry) are filled.
 * @returns 0, or -1 with err.
 */
int pl_ui_session_create(PGconn *conn, const struct pl_principal *who, int ttl_s,
                         char token[PL_UI_TOKEN_SIZE], char csrf[PL_UI_TOKEN_SIZE],
                         struct pl_pg_error *err);

/**
 * @brief Resolves a cookie token to its principal (the key's tenant, plan and role) and CSRF
 *        token, when the session is neither ended nor expired and its key not revoked.
 * @returns 1 found, 0 not (or no longer valid), -1 with err.
 */
int pl_ui_session_get(PGconn *conn, const char *token, struct pl_principal *who,
                      char csrf[PL_UI_TOKEN_SIZE], struct pl_pg_error *err);

/** @brief Ends the session of token (sign-out). @returns 1 ended, 0 none, -1 with err. */
int pl_ui_session_end(PGconn *conn, const char *token, struct pl_pg_error *err);

/**
 * @brief Makes a one-time sign-in link for the key of who, valid for ttl_s seconds: token is
 *        the link's secret. @returns 0, or -1 with err.
 */
int pl_ui_link_create(PGconn *conn, const struct pl_principal *who, int ttl_s,
                      char token[PL_UI_TOKEN_SIZE], struct pl_pg_error *err);

/**
 * @brief Redeems a link once: marks it used and fills who with its key's principal (the key
 *        must not be revoked). @returns 1 redeemed, 0 unknown, used or expired, -1 with err.
 */
int pl_ui_link_redeem(PGconn *conn, const char *token, struct pl_principal *who,
                      struct pl_pg_error *err);

/**
 * @brief Finds an enabled dashboard user by the name a trusted auth proxy sent, and fills who
 *        with its tenant, plan and role (key_id empty). @returns 1 found, 0 not, -1 with err.
 */
int pl_ui_user_find(PGconn *conn, const char *name, struct pl_principal *who,
                    struct pl_pg_error *err);

#endif
