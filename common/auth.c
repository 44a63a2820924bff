/* API keys: making them, and resolving a Bearer key to its tenant and role (cached). */
#include "auth.h"

#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define AUTH_CACHE_SLOTS 256

struct auth_cache_entry {
    char hash[65];
    struct pl_principal principal;
    int64_t expires_ms;
};

static pthread_mutex_t auth_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct auth_cache_entry auth_cache[AUTH_CACHE_SLOTS];

int pl_auth_key_new(char key[PL_API_KEY_LEN + 1], char hash[65], char prefix[12])
{
    unsigned char raw[24];
    if (pl_random_bytes(raw, sizeof(raw)) != 0)
        return -1;
    static const char hexd[] = "0123456789abcdef";
    memcpy(key, "pl_", 3);
    for (size_t i = 0; i < sizeof(raw); i++) {
        key[3 + 2 * i] = hexd[raw[i] >> 4];
        key[4 + 2 * i] = hexd[raw[i] & 15];
    }
    key[PL_API_KEY_LEN] = '\0';
    pl_sha256_hex(key, PL_API_KEY_LEN, hash);
    memcpy(prefix, key, 11);
    prefix[11] = '\0';
    return 0;
}

int pl_auth_role_parse(const char *s, enum pl_role *out)
{
    if (strcmp(s, "owner") == 0)
        *out = PL_ROLE_OWNER;
    else if (strcmp(s, "member") == 0)
        *out = PL_ROLE_MEMBER;
    else if (strcmp(s, "viewer") == 0)
        *out = PL_ROLE_VIEWER;
    else
        return -1;
    return 0;
}

const char *pl_auth_role_name(enum pl_role r)
{
    return r == PL_ROLE_OWNER ? "owner" : r == PL_ROLE_MEMBER ? "member" : "viewer";
}

bool pl_auth_plan_has_control_loop(const char *plan)
{
    return strcmp(plan, "team") == 0 || strcmp(plan, "enterprise") == 0;
}

static bool auth_key_wellformed(const char *key)
{
    if (strlen(key) != PL_API_KEY_LEN || strncmp(key, "pl_", 3) != 0)
        return false;
    for (int i = 3; i < PL_API_KEY_LEN; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
            return false;
    return true;
}

enum pl_auth_result pl_auth_resolve(struct pl_pg_pool *pool, const char *authorization, int ttl_ms,
                                    struct pl_principal *out, struct pl_pg_error *err)
{
    memset(out, 0, sizeof(*out)); /* a key has no user: those fields stay empty */
    /* RFC 9110 section 11.1: the scheme is case-insensitive, then one or more spaces. */
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return PL_AUTH_INVALID;
    const char *key = authorization + 7;
    while (*key == ' ')
        key++;
    if (!auth_key_wellformed(key))
        return PL_AUTH_INVALID;
    char hash[65];
    pl_sha256_hex(key, strlen(key), hash);

    /* The hash is uniformly random, so its first byte is a fine slot index. */
    unsigned slot = (unsigned)((hash[0] >= 'a' ? hash[0] - 'a' + 10 : hash[0] - '0') * 16 +
                               (hash[1] >= 'a' ? hash[1] - 'a' + 10 : hash[1] - '0'));
    int64_t now = pl_now_ms();
    pthread_mutex_lock(&auth_cache_lock);
    struct auth_cache_entry *e = &auth_cache[slot % AUTH_CACHE_SLOTS];
    bool hit = e->expires_ms > now && strcmp(e->hash, hash) == 0;
    if (hit)
        *out = e->principal;
    pthread_mutex_unlock(&auth_cache_lock);
    if (hit)
        return PL_AUTH_OK;

    PGconn *conn = pl_pg_acquire(pool, err);
    if (!conn)
        return PL_AUTH_ERROR;
    const char *params[1] = {hash};
    PGresult *res = pl_pg_query(conn,
                                "SELECT k.id, k.tenant_id, k.role, t.plan FROM api_keys k"
                                " JOIN tenants t ON t.id = k.tenant_id"
                                " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                                1, params, err);
    pl_pg_release(pool, conn);
    if (!res)
        return PL_AUTH_ERROR;
    enum pl_auth_result r = PL_AUTH_INVALID;
    if (PQntuples(res) == 1 && pl_auth_role_parse(PQgetvalue(res, 0, 2), &out->role) == 0) {
        snprintf(out->key_id, sizeof(out->key_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(out->tenant_id, sizeof(out->tenant_id), "%s", PQgetvalue(res, 0, 1));
        snprintf(out->plan, sizeof(out->plan), "%s", PQgetvalue(res, 0, 3));
        r = PL_AUTH_OK;
        pthread_mutex_lock(&auth_cache_lock);
        memcpy(e->hash, hash, sizeof(hash));
        e->principal = *out;
        e->expires_ms = now + ttl_ms;
        pthread_mutex_unlock(&auth_cache_lock);
    }
    PQclear(res);
    return r;
}
