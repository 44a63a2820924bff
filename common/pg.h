/* PostgreSQL access: a small blocking connection pool and parameterised query helpers. */
#ifndef PL_PG_H
#define PL_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>

struct pl_pg_pool;

/** @brief What went wrong with a query: SQLSTATE ("" when the connection failed) and text. */
struct pl_pg_error {
    char sqlstate[6];
    char message[512];
};

#define PL_SQLSTATE_UNIQUE_VIOLATION "23505"
#define PL_SQLSTATE_SERIALIZATION    "40001"
#define PL_SQLSTATE_DEADLOCK         "40P01"

/**
 * @brief Creates a pool of up to size connections to dsn. Connections open lazily, so a
 *        service starts (and stays live) while the database is down.
 * @returns the pool (free with pl_pg_pool_destroy), or NULL on out-of-memory.
 */
struct pl_pg_pool *pl_pg_pool_new(const char *dsn, int size);
void pl_pg_pool_destroy(struct pl_pg_pool *pool);

/**
 * @brief Takes a healthy connection, waiting for a free one; reconnects broken ones.
 * @returns a connection to give back with pl_pg_release, or NULL (err set) when the
 *          database cannot be reached.
 */
PGconn *pl_pg_acquire(struct pl_pg_pool *pool, struct pl_pg_error *err);

/** @brief Returns a connection; an open transaction on it is rolled back first. */
void pl_pg_release(struct pl_pg_pool *pool, PGconn *conn);

/** @brief True when a `SELECT 1` succeeds (for /readyz). */
bool pl_pg_ping(struct pl_pg_pool *pool);

/**
 * @brief Runs a parameterised statement (text parameters; NULL entries are SQL NULL).
 * @returns the result (caller PQclear()s it), or NULL with err filled.
 */
PGresult *pl_pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                      struct pl_pg_error *err);

/**
 * @brief Runs sql, which answers at most one row, and copies the first column of that row
 *        into *out (caller frees): the stores' "one object as JSON, or not found" reads.
 * @returns 1 with *out set, 0 when there is no row (or the value is NULL), -1 with err.
 */
int pl_pg_query_text(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     char **out, struct pl_pg_error *err);

/**
 * @brief pl_pg_query for a hot statement: prepared once per pooled connection under name (a
 *        string literal, one per sql), so PostgreSQL parses and plans it once per session.
 */
PGresult *pl_pg_query_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                               const char *const *params, struct pl_pg_error *err);

/** @brief pl_pg_query_text through a prepared statement (see pl_pg_query_prepared). */
int pl_pg_query_text_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                              const char *const *params, char **out, struct pl_pg_error *err);

/** @brief Runs a statement that returns nothing of interest; 0 or -1 with err filled. */
int pl_pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
               struct pl_pg_error *err);

/** @brief True when err is a retryable conflict (serialization failure or deadlock). */
bool pl_pg_error_retryable(const struct pl_pg_error *err);

/** @brief The integer in a result cell (0 when NULL); for columns the schema makes integers. */
long long pl_pg_getll(const PGresult *res, int row, int col);

/**
 * @brief Writes one element of a Postgres array literal to f: double-quoted, with '"' and
 *        '\\' escaped, preceded by ',' unless first. The caller writes the braces.
 */
void pl_pg_array_item(FILE *f, const char *value, bool first);

/**
 * @brief Writes one field of a COPY text row to f: \\N for NULL, backslash, tab, newline and
 *        CR escaped, then a tab (or a newline when last).
 */
void pl_pg_copy_text(FILE *f, const char *value, bool last);

/** @brief pl_pg_copy_text for len bytes at value (no NUL needed). */
void pl_pg_copy_textn(FILE *f, const char *value, size_t len, bool last);

/**
 * @brief The Postgres text[] literal {"a","b"} of n strings. @returns a string the caller
 *        frees (NULL: no memory).
 */
char *pl_pg_text_array(const char *const *items, size_t n);

/**
 * @brief Builds the API list body {"items":[items],"total":N,"limit":L,"offset":O} from
 *        comma-joined item objects. @returns a string the caller frees (NULL: no memory).
 */
char *pl_list_envelope(const char *items, const char *total, long long limit, long long offset);

/** @brief Connects one connection directly (tools); NULL with err on failure. */
PGconn *pl_pg_connect(const char *dsn, struct pl_pg_error *err);

#endif
