/* Schema migrations: the SQL files of schemas/sql, compiled in, applied in name order. */
#ifndef PL_MIGRATE_H
#define PL_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

struct pl_migration {
    const char *name; /* file name, e.g. "0001_init.sql"; NULL ends the list */
    const char *sql;
};

/** @brief All migrations, ending with {NULL, NULL} (generated at build time). */
extern const struct pl_migration pl_migrations[];

/**
 * @brief Applies every migration not yet recorded in schema_migrations, each in its own
 *        transaction, under an advisory lock so concurrent runs are safe.
 * @returns the number applied (0 when up to date), or -1 with err filled.
 */
int pl_migrate_apply(PGconn *conn, char *err, size_t errsz);

#endif
