/* Schema migrations: applies the embedded schemas/sql files in order, once each. */
#include "migrate.h"

#include "log.h"
#include "pg.h"

#include <stdio.h>
#include <string.h>

/* Any fixed number works: it only has to be the same in every pl-admin. */
#define MIGRATE_LOCK_KEY "7233360914107211001"

static int migrate_simple(PGconn *conn, const char *sql, char *err, size_t errsz)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errsz, "%s", PQresultErrorMessage(res));
        rc = -1;
    }
    PQclear(res);
    return rc;
}

int pl_migrate_apply(PGconn *conn, char *err, size_t errsz)
{
    int applied = 0;
    if (migrate_simple(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", err, errsz) != 0)
        return -1;
    if (migrate_simple(conn,
                       "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                       err, errsz) != 0) {
        applied = -1;
        goto out_unlock;
    }
    for (const struct pl_migration *m = pl_migrations; m->name; m++) {
        const char *params[1] = {m->name};
        struct pl_pg_error perr = {"", ""};
        PGresult *res = pl_pg_query(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
                                    params, &perr);
        if (!res) {
            snprintf(err, errsz, "%s", perr.message);
            applied = -1;
            goto out_unlock;
        }
        int done = PQntuples(res) > 0;
        PQclear(res);
        if (done)
            continue;
        char why[1024];
        if (migrate_simple(conn, "BEGIN", err, errsz) != 0 ||
            migrate_simple(conn, m->sql, why, sizeof(why)) != 0) {
            snprintf(err, errsz, "%s: %s", m->name, why);
            migrate_simple(conn, "ROLLBACK", why, sizeof(why));
            applied = -1;
            goto out_unlock;
        }
        if (pl_pg_exec(conn, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, params,
                       &perr) != 0 ||
            migrate_simple(conn, "COMMIT", err, errsz) != 0) {
            snprintf(err, errsz, "%s: recording failed: %s", m->name, perr.message);
            migrate_simple(conn, "ROLLBACK", why, sizeof(why));
            applied = -1;
            goto out_unlock;
        }
        pl_info("migration %s applied", m->name);
        applied++;
    }
out_unlock:;
    char ignored[256];
    migrate_simple(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", ignored,
                   sizeof(ignored));
    return applied;
}
