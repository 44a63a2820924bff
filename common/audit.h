/* Audit log: append-only, hash-chained per tenant so any edit or deletion is detectable. */
#ifndef PL_AUDIT_H
#define PL_AUDIT_H

#include "config.h"
#include "pg.h"

/**
 * @brief Sets the chain's HMAC-SHA256 key (32 to 512 bytes), once, before any entry is
 *        appended or verified. It never reaches the database, so a database-only writer
 *        cannot recompute the chain. @returns 0, or -1 with err.
 */
int pl_audit_key_set(const char *key, size_t len, char *err, size_t errsz);

/** @brief pl_audit_key_set from audit.key_file (a mounted Secret) or else audit.key
 *         (PL_AUDIT_KEY). @returns 0, or -1 with err (none configured, unreadable, short). */
int pl_audit_key_load(const struct pl_config *cfg, char *err, size_t errsz);

/** @brief The key's public name (16 hex digits, stored with each entry), or NULL if unset. */
const char *pl_audit_key_id(void);

/**
 * @brief Appends an entry inside the caller's open transaction (refused outside one, and
 *        without a key). The entry's HMAC covers the previous entry's hash of the same tenant
 * (chains are serialised per tenant with a transaction-scoped advisory lock). detail_json must be a
 * JSON object.
 * @returns 0, or -1 with err filled.
 */
int pl_audit_append(PGconn *conn, const char *tenant_id, const char *actor, const char *action,
                    const char *target, const char *detail_json, struct pl_pg_error *err);

/**
 * @brief Runs sql (which must return one row: id, row JSON) and audits it as action by actor,
 *        in a transaction of its own. detail is the audit detail, or NULL to record the row.
 * @param json  on success the row JSON (caller frees); may be NULL.
 * @returns 1 written, 0 when sql returned no row, on_unique when it broke a unique
 *          constraint, -1 with err on any other failure (nothing is kept).
 */
int pl_audit_write(PGconn *conn, const char *sql, int nparams, const char *const *params,
                   const char *tenant_id, const char *actor, const char *action, const char *detail,
                   int on_unique, char **json, struct pl_pg_error *err);

/* What a page of the log is narrowed to; NULL fields do not filter. */
struct pl_audit_filter {
    const char *actor, *action, *target; /* exact values */
    const char *from, *to;               /* ISO-8601 instants, both inclusive */
    const char *cursor;                  /* an entry id: only older entries */
};

/**
 * @brief A page of the tenant's entries, newest first: {items:[{id, actor, action, target,
 *        detail, at, hash}], next_cursor} (next_cursor: pass as cursor for the older page, or
 *        null). @returns 1, or -1 with err.
 */
int pl_audit_list(PGconn *conn, const char *tenant_id, const struct pl_audit_filter *f,
                  long long limit, char **json, struct pl_pg_error *err);

/**
 * @brief Recomputes the tenant's chain in C under the key: every entry must be keyed by it
 *        and chain on from the one before.
 * @returns the number of entries checked, or -1 with the first broken entry named in err.
 */
long long pl_audit_verify(PGconn *conn, const char *tenant_id, char *err, size_t errsz);

/** The newest entry of a verified chain, and whether an expected head is still in it. */
struct pl_audit_head {
    char hash[65];          /* "" for an empty log */
    long long rows;         /* entries checked */
    long long last_id;      /* the newest entry's id (0: none) */
    long long keyed_rows;   /* entries under the key (HMAC-SHA256) */
    long long unkeyed_rows; /* entries from before the chain was keyed (pl_audit_rekey only) */
    int expected_found;     /* 1 the expected hash is an entry of the chain, 0 not, -1 none given */
};

/**
 * @brief pl_audit_verify, and where the chain ends: head is filled when it verifies. A head
 *        published earlier (expected_head, or NULL) must still be an entry of the chain: if
 *        it is not, entries up to it were removed or changed (truncation, a rewrite).
 * @returns the number of entries checked, or -1 with the first broken entry named in err.
 */
long long pl_audit_verify_head(PGconn *conn, const char *tenant_id, const char *expected_head,
                               struct pl_audit_head *head, char *err, size_t errsz);

/**
 * @brief Keys a tenant's chain written before the chain was keyed (plain SHA-256 entries,
 *        from before migration 0014), after verifying it as it stands, in one transaction.
 *        Until then pl_audit_verify refuses the unkeyed entries.
 * @returns the number of entries rewritten (0: already keyed), or -1 with err (the chain
 *          does not verify: nothing is changed).
 */
long long pl_audit_rekey(PGconn *conn, const char *tenant_id, char *err, size_t errsz);

/* The error when the entry a verification ended at is no longer there as it was. */
#define PL_AUDIT_HEAD_GONE "audit entry %lld (verified earlier as the head) is gone or changed"

/**
 * @brief Goes on verifying from head (a result of an earlier verification), so that a
 *        watcher checks each entry once: the entry head ended at must still be there,
 *        unchanged, and the entries after it must chain on from it.
 * @returns the number of entries verified in all, or -1 with err (head is then partial).
 */
long long pl_audit_verify_more(PGconn *conn, const char *tenant_id, const char *expected_head,
                               struct pl_audit_head *head, char *err, size_t errsz);

#endif
