/* The hash-chained audit log: append, list, verify (see audit.h). */
#include "audit.h"

#include "util.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hashed text is prev_hash|tenant|actor|action|target|detail|at_us, where detail is
 * jsonb's canonical text and at_us the timestamp in microseconds since the epoch. An entry
 * with a key_id is HMAC-SHA256 under the audit key; one without (written before the chain
 * was keyed) is plain SHA-256 and may only precede the keyed ones. */
#define AUDIT_CANONICAL_FIELDS                                                                     \
    "concat_ws('|', tenant_id::text, actor, action, target, detail::text,"                         \
    " (extract(epoch FROM at) * 1000000)::bigint::text)"

#define AUDIT_KEY_MIN      32
#define AUDIT_KEY_MAX      512
#define AUDIT_VERIFY_BATCH 10000

/* Set once at start-up, before any thread appends, and only read afterwards. */
static unsigned char audit_key[AUDIT_KEY_MAX];
static size_t audit_key_len;
static char audit_key_id[17];

static void audit_fail(struct pl_pg_error *err, const char *message)
{
    err->sqlstate[0] = '\0';
    snprintf(err->message, sizeof(err->message), "%s", message);
}

static void audit_hex(const unsigned char *md, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[md[i] >> 4];
        out[2 * i + 1] = hexd[md[i] & 15];
    }
    out[2 * n] = '\0';
}

static void audit_hmac_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), audit_key, (int)audit_key_len, data, len, md, &mdlen);
    audit_hex(md, 32, out);
}

int pl_audit_key_set(const char *key, size_t len, char *err, size_t errsz)
{
    if (len < AUDIT_KEY_MIN || len > AUDIT_KEY_MAX) {
        snprintf(err, errsz, "the audit key must be %d to %d bytes long (it is %zu)", AUDIT_KEY_MIN,
                 AUDIT_KEY_MAX, len);
        return -1;
    }
    memcpy(audit_key, key, len);
    audit_key_len = len;
    /* names the key in each entry without revealing it: rows written under another key
     * are reported as such instead of as forgeries */
    static const char label[] = "promptloop audit key id";
    char full[65];
    audit_hmac_hex(label, sizeof(label) - 1, full);
    memcpy(audit_key_id, full, 16);
    audit_key_id[16] = '\0';
    return 0;
}

int pl_audit_key_load(const struct pl_config *cfg, char *err, size_t errsz)
{
    if (!cfg->audit_key_file[0]) {
        if (!cfg->audit_key[0]) {
            snprintf(err, errsz,
                     "no audit key: set PL_AUDIT_KEY (at least %d characters) or audit.key_file",
                     AUDIT_KEY_MIN);
            return -1;
        }
        return pl_audit_key_set(cfg->audit_key, strlen(cfg->audit_key), err, errsz);
    }
    FILE *f = fopen(cfg->audit_key_file, "rb");
    if (!f) {
        snprintf(err, errsz, "audit.key_file %s: %s", cfg->audit_key_file, strerror(errno));
        return -1;
    }
    char buf[AUDIT_KEY_MAX + 2];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) /* as `echo` writes it */
        n--;
    int rc = pl_audit_key_set(buf, n, err, errsz);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

const char *pl_audit_key_id(void)
{
    return audit_key_len ? audit_key_id : NULL;
}

int pl_audit_append(PGconn *conn, const char *tenant_id, const char *actor, const char *action,
                    const char *target, const char *detail_json, struct pl_pg_error *err)
{
    if (!audit_key_len || PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        audit_fail(err, audit_key_len ? "audit entries are appended inside a transaction"
                                      : "no audit key is configured (PL_AUDIT_KEY)");
        return -1;
    }
    const char *lock_params[1] = {tenant_id};
    PGresult *locked = pl_pg_query_prepared(
        conn, "pl_audit_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", 1,
        lock_params, err);
    if (!locked)
        return -1;
    PQclear(locked);
    /* The values as they will be stored (jsonb's canonical text, the exact microsecond),
     * hashed here so that the key never reaches the database. */
    const char *params[5] = {tenant_id, actor, action, target, detail_json};
    PGresult *pre = pl_pg_query_prepared(
        conn, "pl_audit_prepare",
        "SELECT coalesce((SELECT hash FROM audit_log WHERE tenant_id = $1::uuid"
        "   ORDER BY id DESC LIMIT 1), ''),"
        " concat_ws('|', $1::uuid::text, $2::text, $3::text, $4::text, $5::jsonb::text,"
        "   (extract(epoch FROM now()) * 1000000)::bigint::text),"
        " (extract(epoch FROM now()) * 1000000)::bigint::text",
        5, params, err);
    if (!pre)
        return -1;
    const char *prev = PQgetvalue(pre, 0, 0), *body = PQgetvalue(pre, 0, 1);
    size_t len = strlen(prev) + 1 + strlen(body) + 1;
    char *text = malloc(len);
    if (!text) {
        PQclear(pre);
        audit_fail(err, "out of memory");
        return -1;
    }
    snprintf(text, len, "%s|%s", prev, body);
    char hash[65];
    audit_hmac_hex(text, strlen(text), hash);
    free(text);
    const char *ins[9] = {tenant_id, actor, action,      target, detail_json, PQgetvalue(pre, 0, 2),
                          prev,      hash,  audit_key_id};
    PGresult *res = pl_pg_query_prepared(
        conn, "pl_audit_append",
        "INSERT INTO audit_log (tenant_id, actor, action, target, detail, at, prev_hash, hash,"
        " key_id) VALUES ($1::uuid, $2, $3, $4, $5::jsonb,"
        " 'epoch'::timestamptz + $6::bigint * interval '1 microsecond', $7, $8, $9)",
        9, ins, err);
    PQclear(pre);
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

static int audit_rollback(PGconn *conn, int rc)
{
    struct pl_pg_error ignored;
    pl_pg_exec(conn, "ROLLBACK", 0, NULL, &ignored);
    return rc;
}

/* The text an entry's hash covers: prev|body (malloc'd; NULL when out of memory). */
static char *audit_hashed_text(const char *prev, const char *body)
{
    size_t len = strlen(prev) + 1 + strlen(body) + 1;
    char *text = malloc(len);
    if (text)
        snprintf(text, len, "%s|%s", prev, body);
    return text;
}

/* Checks one stored entry (id, prev_hash, hash, body, key_id) against the chain so far (h:
 * where it ends). An unkeyed entry passes only when unkeyed_ok (pl_audit_rekey), and only
 * before any keyed one. @returns 0, or -1 with err. */
static int audit_check_entry(PGresult *res, int i, struct pl_audit_head *h, bool unkeyed_ok,
                             char *err, size_t errsz)
{
    const char *id = PQgetvalue(res, i, 0), *prev = PQgetvalue(res, i, 1);
    const char *hash = PQgetvalue(res, i, 2), *body = PQgetvalue(res, i, 3);
    bool keyed = !PQgetisnull(res, i, 4);
    if (strcmp(prev, h->hash) != 0) {
        snprintf(err, errsz, "audit entry %s: prev_hash does not match entry before it", id);
        return -1;
    }
    if (!keyed && (!unkeyed_ok || h->keyed_rows > 0)) {
        snprintf(err, errsz,
                 "audit entry %s is not keyed (written before the chain was; pl-admin audit "
                 "rekey converts a chain that verifies)",
                 id);
        return -1;
    }
    if (keyed && strcmp(PQgetvalue(res, i, 4), audit_key_id) != 0) {
        snprintf(err, errsz, "audit entry %s was written under key %s, not the configured key %s",
                 id, PQgetvalue(res, i, 4), audit_key_id);
        return -1;
    }
    char *text = audit_hashed_text(prev, body);
    if (!text) {
        snprintf(err, errsz, "out of memory");
        return -1;
    }
    char hex[65];
    if (keyed)
        audit_hmac_hex(text, strlen(text), hex);
    else
        pl_sha256_hex(text, strlen(text), hex);
    free(text);
    if (strcmp(hex, hash) != 0) {
        snprintf(err, errsz, "audit entry %s: hash does not match its contents", id);
        return -1;
    }
    snprintf(h->hash, sizeof(h->hash), "%s", hash);
    h->last_id = pl_pg_getll(res, i, 0);
    h->rows++;
    if (keyed)
        h->keyed_rows++;
    else
        h->unkeyed_rows++;
    return 0;
}

/* The tenant's entries after id `after`, in id order, a batch at a time: a long chain is never
 * held in memory at once. NULL with err on failure. */
static PGresult *audit_batch(PGconn *conn, const char *tenant_id, long long after, char *err,
                             size_t errsz)
{
    char from[24], batch[16];
    snprintf(from, sizeof(from), "%lld", after);
    snprintf(batch, sizeof(batch), "%d", AUDIT_VERIFY_BATCH);
    const char *params[3] = {tenant_id, from, batch};
    struct pl_pg_error perr;
    PGresult *res = pl_pg_query(conn,
                                "SELECT id, prev_hash, hash, " AUDIT_CANONICAL_FIELDS
                                ", key_id FROM audit_log WHERE tenant_id = $1 AND id > $2"
                                " ORDER BY id LIMIT $3",
                                3, params, &perr);
    if (!res)
        snprintf(err, errsz, "%s", perr.message);
    return res;
}

long long pl_audit_rekey(PGconn *conn, const char *tenant_id, char *err, size_t errsz)
{
    if (!audit_key_len) {
        snprintf(err, errsz, "no audit key is configured (PL_AUDIT_KEY)");
        return -1;
    }
    struct pl_pg_error perr;
    const char *p[1] = {tenant_id};
    if (pl_pg_exec(conn, "BEGIN", 0, NULL, &perr) != 0 ||
        pl_pg_exec(conn, "SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", 1, p, &perr) !=
            0) {
        snprintf(err, errsz, "%s", perr.message);
        return audit_rollback(conn, -1);
    }
    struct pl_audit_head old = {.expected_found = -1};
    char prev[65] = ""; /* the new chain's head */
    long long rekeyed = 0;
    for (;;) {
        PGresult *res = audit_batch(conn, tenant_id, old.last_id, err, errsz);
        if (!res)
            return audit_rollback(conn, -1);
        int n = PQntuples(res);
        for (int i = 0; i < n; i++) {
            /* the old chain must verify as it stands: a rekey never launders a tampered one */
            bool was_keyed = !PQgetisnull(res, i, 4);
            if (audit_check_entry(res, i, &old, true, err, errsz) != 0) {
                PQclear(res);
                return audit_rollback(conn, -1);
            }
            char *text = audit_hashed_text(prev, PQgetvalue(res, i, 3));
            if (!text) {
                PQclear(res);
                snprintf(err, errsz, "out of memory");
                return audit_rollback(conn, -1);
            }
            char hash[65];
            audit_hmac_hex(text, strlen(text), hash);
            free(text);
            if (!was_keyed || strcmp(hash, PQgetvalue(res, i, 2)) != 0) {
                const char *up[4] = {PQgetvalue(res, i, 0), prev, hash, audit_key_id};
                if (pl_pg_exec(conn,
                               "UPDATE audit_log SET prev_hash = $2, hash = $3, key_id = $4"
                               " WHERE id = $1",
                               4, up, &perr) != 0) {
                    PQclear(res);
                    snprintf(err, errsz, "%s", perr.message);
                    return audit_rollback(conn, -1);
                }
                rekeyed++;
            }
            snprintf(prev, sizeof(prev), "%s", hash);
        }
        PQclear(res);
        if (n < AUDIT_VERIFY_BATCH)
            break;
    }
    if (pl_pg_exec(conn, "COMMIT", 0, NULL, &perr) != 0) {
        snprintf(err, errsz, "%s", perr.message);
        return audit_rollback(conn, -1);
    }
    return rekeyed;
}

long long pl_audit_verify_more(PGconn *conn, const char *tenant_id, const char *expected_head,
                               struct pl_audit_head *head, char *err, size_t errsz)
{
    /* the entry the chain was verified up to must still be there, unchanged */
    if (head->last_id > 0) {
        char last[24];
        snprintf(last, sizeof(last), "%lld", head->last_id);
        const char *p[2] = {tenant_id, last};
        struct pl_pg_error perr;
        PGresult *res = pl_pg_query(
            conn, "SELECT hash FROM audit_log WHERE tenant_id = $1 AND id = $2", 2, p, &perr);
        if (!res) {
            snprintf(err, errsz, "%s", perr.message);
            return -1;
        }
        bool same = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), head->hash) == 0;
        PQclear(res);
        if (!same) {
            snprintf(err, errsz, PL_AUDIT_HEAD_GONE, head->last_id);
            return -1;
        }
    }
    if (expected_head && head->expected_found != 1)
        head->expected_found = strcmp(head->hash, expected_head) == 0 && head->rows > 0;
    if (!audit_key_len) {
        snprintf(err, errsz, "no audit key is configured (PL_AUDIT_KEY)");
        return -1;
    }
    for (;;) {
        PGresult *res = audit_batch(conn, tenant_id, head->last_id, err, errsz);
        if (!res)
            return -1;
        int n = PQntuples(res);
        for (int i = 0; i < n; i++) {
            if (audit_check_entry(res, i, head, false, err, errsz) != 0) {
                PQclear(res);
                return -1;
            }
            if (expected_head && strcmp(head->hash, expected_head) == 0)
                head->expected_found = 1;
        }
        PQclear(res);
        if (n < AUDIT_VERIFY_BATCH)
            return head->rows;
    }
}

long long pl_audit_verify_head(PGconn *conn, const char *tenant_id, const char *expected_head,
                               struct pl_audit_head *head, char *err, size_t errsz)
{
    memset(head, 0, sizeof(*head));
    head->expected_found = expected_head ? 0 : -1;
    return pl_audit_verify_more(conn, tenant_id, expected_head, head, err, errsz);
}

long long pl_audit_verify(PGconn *conn, const char *tenant_id, char *err, size_t errsz)
{
    struct pl_audit_head head;
    return pl_audit_verify_head(conn, tenant_id, NULL, &head, err, errsz);
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
