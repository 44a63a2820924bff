/* API keys: generation (pl_<random>, only the SHA-256 stored) and lookup with a short
 * cache, giving the caller's tenant, plan and role. */
#ifndef PL_AUTH_H
#define PL_AUTH_H

#include "pg.h"

#include <stdbool.h>

enum pl_role { PL_ROLE_OWNER = 1, PL_ROLE_MEMBER = 2, PL_ROLE_VIEWER = 4 };

#define PL_ROLES_ANY   (PL_ROLE_OWNER | PL_ROLE_MEMBER | PL_ROLE_VIEWER)
#define PL_ROLES_WRITE (PL_ROLE_OWNER | PL_ROLE_MEMBER)

/** The longest dashboard user name a trusted auth proxy may send. */
#define PL_USER_NAME_MAX 64

/** Room for an actor as audit entries and events record it ("key:<uuid>", "user:<name>"). */
#define PL_ACTOR_SIZE 80

/* Who is calling: an API key, or a dashboard user a trusted auth proxy signed in (then
 * key_id is empty and user_id/user_name are set). */
struct pl_principal {
    char key_id[37];
    char tenant_id[37];
    char plan[16];
    enum pl_role role;
    char user_id[37];
    char user_name[PL_USER_NAME_MAX + 1];
};

#define PL_API_KEY_LEN 51 /* "pl_" + 48 hex characters */

/**
 * @brief Makes a new key: key (52 bytes with NUL), its hex SHA-256 (65) and display
 *        prefix (12). @returns 0, or -1 if the random source failed.
 */
int pl_auth_key_new(char key[PL_API_KEY_LEN + 1], char hash[65], char prefix[12]);

/** @brief Parses "owner|member|viewer"; -1 on anything else. */
int pl_auth_role_parse(const char *s, enum pl_role *out);
const char *pl_auth_role_name(enum pl_role r);

/** @brief True when the plan includes the control loop (team, enterprise). */
bool pl_auth_plan_has_control_loop(const char *plan);

enum pl_auth_result { PL_AUTH_OK, PL_AUTH_INVALID, PL_AUTH_ERROR };

/**
 * @brief Resolves an `Authorization` header value ("Bearer pl_...") to a principal.
 *        Answers are cached for ttl_ms (a revoked key stops working within that time).
 * @returns OK; INVALID for a missing, malformed, unknown or revoked key; ERROR when the
 *          database failed (err filled).
 */
enum pl_auth_result pl_auth_resolve(struct pl_pg_pool *pool, const char *authorization, int ttl_ms,
                                    struct pl_principal *out, struct pl_pg_error *err);

#endif
