/* PostgreSQL access: the connection pool, queries, prepared statements. */
#include "pg.h"

#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pl_pg_pool {
    char *dsn;
    int size;
    int nidle;
    int nopen; /* connections handed out or idle */
    PGconn **idle;
    pthread_mutex_t lock;
    pthread_cond_t freed;
};

static void pg_error_from_conn(PGconn *conn, const PGresult *res, struct pl_pg_error *err)
{
    if (!err)
        return;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(conn);
    snprintf(err->message, sizeof(err->message), "%s", msg && *msg ? msg : "unknown error");
    /* libpq messages end in a newline; logs and JSON read better without it. */
    size_t n = strlen(err->message);
    while (n > 0 && (err->message[n - 1] == '\n' || err->message[n - 1] == ' '))
        err->message[--n] = '\0';
}

/* Server notices ("... already exists, skipping") are not errors: debug log only. */
/* Named statements prepared on each connection: prepared on first use, forgotten when the
 * pool resets or closes the connection (a new session has none). A connection is known by its
 * address and its backend's pid, so a connection opened outside the pool at the address of a
 * closed one is not taken for it. */
static struct {
    pthread_mutex_t lock;
    struct pg_prepared {
        const PGconn *conn;
        int backend_pid;
        const char *name; /* a string literal of the caller */
    } * items;
    size_t n, cap;
} pg_prepared = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool pg_prepared_has(const PGconn *conn, const char *name)
{
    bool found = false;
    pthread_mutex_lock(&pg_prepared.lock);
    for (size_t i = 0; i < pg_prepared.n && !found; i++)
        found = pg_prepared.items[i].conn == conn &&
                pg_prepared.items[i].backend_pid == PQbackendPID(conn) &&
                strcmp(pg_prepared.items[i].name, name) == 0;
    pthread_mutex_unlock(&pg_prepared.lock);
    return found;
}

static void pg_prepared_add(const PGconn *conn, const char *name)
{
    pthread_mutex_lock(&pg_prepared.lock);
    if (pg_prepared.n == pg_prepared.cap) {
        size_t cap = pg_prepared.cap ? 2 * pg_prepared.cap : 16;
        struct pg_prepared *items = realloc(pg_prepared.items, cap * sizeof(*items));
        if (items) {
            pg_prepared.items = items;
            pg_prepared.cap = cap;
        }
    }
    if (pg_prepared.n < pg_prepared.cap) /* else: prepared again next time, harmless */
        pg_prepared.items[pg_prepared.n++] = (struct pg_prepared){conn, PQbackendPID(conn), name};
    pthread_mutex_unlock(&pg_prepared.lock);
}

static void pg_prepared_forget(const PGconn *conn)
{
    pthread_mutex_lock(&pg_prepared.lock);
    for (size_t i = 0; i < pg_prepared.n;)
        if (pg_prepared.items[i].conn == conn)
            pg_prepared.items[i] = pg_prepared.items[--pg_prepared.n];
        else
            i++;
    if (pg_prepared.n == 0) {
        free(pg_prepared.items);
        pg_prepared.items = NULL;
        pg_prepared.cap = 0;
    }
    pthread_mutex_unlock(&pg_prepared.lock);
}

static void pg_notice(void *arg, const char *message)
{
    (void)arg;
    pl_debug("postgres: %s", message);
}

PGconn *pl_pg_connect(const char *dsn, struct pl_pg_error *err)
{
    PGconn *conn = PQconnectdb(dsn);
    if (!conn) {
        if (err)
            snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        pg_error_from_conn(conn, NULL, err);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, pg_notice, NULL);
    return conn;
}

struct pl_pg_pool *pl_pg_pool_new(const char *dsn, int size)
{
    struct pl_pg_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->dsn = strdup(dsn);
    pool->idle = calloc((size_t)size, sizeof(PGconn *));
    if (!pool->dsn || !pool->idle) {
        free(pool->dsn);
        free(pool->idle);
        free(pool);
        return NULL;
    }
    pool->size = size;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->freed, NULL);
    return pool;
}

void pl_pg_pool_destroy(struct pl_pg_pool *pool)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->nidle; i++) {
        pg_prepared_forget(pool->idle[i]);
        PQfinish(pool->idle[i]);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->freed);
    free(pool->idle);
    free(pool->dsn);
    free(pool);
}

PGconn *pl_pg_acquire(struct pl_pg_pool *pool, struct pl_pg_error *err)
{
    PGconn *conn = NULL;
    pthread_mutex_lock(&pool->lock);
    while (pool->nidle == 0 && pool->nopen >= pool->size)
        pthread_cond_wait(&pool->freed, &pool->lock);
    if (pool->nidle > 0)
        conn = pool->idle[--pool->nidle];
    else
        pool->nopen++; /* reserve a slot; connect outside the lock */
    pthread_mutex_unlock(&pool->lock);

    if (conn && PQstatus(conn) != CONNECTION_OK) {
        pg_prepared_forget(conn);
        PQreset(conn);
    }
    if (!conn)
        conn = pl_pg_connect(pool->dsn, err);
    else if (PQstatus(conn) != CONNECTION_OK) {
        pg_error_from_conn(conn, NULL, err);
        pg_prepared_forget(conn);
        PQfinish(conn);
        conn = NULL;
    }
    if (!conn) {
        pthread_mutex_lock(&pool->lock);
        pool->nopen--;
        pthread_cond_signal(&pool->freed);
        pthread_mutex_unlock(&pool->lock);
    }
    return conn;
}

void pl_pg_release(struct pl_pg_pool *pool, PGconn *conn)
{
    if (!conn)
        return;
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(conn, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&pool->lock);
    pool->idle[pool->nidle++] = conn;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

bool pl_pg_ping(struct pl_pg_pool *pool)
{
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(pool, &err);
    if (!conn)
        return false;
    bool ok = pl_pg_exec(conn, "SELECT 1", 0, NULL, &err) == 0;
    pl_pg_release(pool, conn);
    return ok;
}

PGresult *pl_pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                      struct pl_pg_error *err)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    pg_error_from_conn(conn, res, err);
    PQclear(res);
    return NULL;
}

/* The first column of res's first row into *out (see pl_pg_query_text); clears res. */
static int pg_first_text(PGresult *res, char **out, struct pl_pg_error *err)
{
    if (!res)
        return -1;
    int found = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
    if (found && !(*out = strdup(PQgetvalue(res, 0, 0)))) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        err->sqlstate[0] = '\0';
        found = -1;
    }
    PQclear(res);
    return found;
}

int pl_pg_query_text(PGconn *conn, const char *sql, int nparams, const char *const *params,
                     char **out, struct pl_pg_error *err)
{
    return pg_first_text(pl_pg_query(conn, sql, nparams, params, err), out, err);
}

int pl_pg_query_text_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                              const char *const *params, char **out, struct pl_pg_error *err)
{
    return pg_first_text(pl_pg_query_prepared(conn, name, sql, nparams, params, err), out, err);
}

PGresult *pl_pg_query_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                               const char *const *params, struct pl_pg_error *err)
{
    if (!pg_prepared_has(conn, name)) {
        PGresult *res = PQprepare(conn, name, sql, nparams, NULL);
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* 42P05: the session has it already (it could not be recorded last time). */
        bool ok = res && (PQresultStatus(res) == PGRES_COMMAND_OK ||
                          (state && strcmp(state, "42P05") == 0));
        if (!ok) {
            pg_error_from_conn(conn, res, err);
            PQclear(res);
            return NULL;
        }
        PQclear(res);
        pg_prepared_add(conn, name);
    }
    PGresult *res = PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return res;
    pg_error_from_conn(conn, res, err);
    PQclear(res);
    if (err && strcmp(err->sqlstate, "26000") == 0) /* the session lost it: prepare again */
        pg_prepared_forget(conn);
    return NULL;
}

int pl_pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
               struct pl_pg_error *err)
{
    PGresult *res = pl_pg_query(conn, sql, nparams, params, err);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

bool pl_pg_error_retryable(const struct pl_pg_error *err)
{
    return strcmp(err->sqlstate, PL_SQLSTATE_SERIALIZATION) == 0 ||
           strcmp(err->sqlstate, PL_SQLSTATE_DEADLOCK) == 0;
}

long long pl_pg_getll(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

char *pl_list_envelope(const char *items, const char *total, long long limit, long long offset)
{
    size_t cap = strlen(items) + strlen(total) + 96;
    char *s = malloc(cap);
    if (s)
        snprintf(s, cap, "{\"items\":[%s],\"total\":%s,\"limit\":%lld,\"offset\":%lld}", items,
                 total, limit, offset);
    return s;
}

void pl_pg_array_item(FILE *f, const char *value, bool first)
{
    fputs(first ? "\"" : ",\"", f);
    for (const char *c = value; *c;) {
        size_t run = strcspn(c, "\"\\");
        fwrite(c, 1, run, f);
        c += run;
        if (*c) {
            fputc('\\', f);
            fputc(*c++, f);
        }
    }
    fputc('"', f);
}

void pl_pg_copy_textn(FILE *f, const char *value, size_t len, bool last)
{
    if (!value) {
        fputs("\\N", f);
    } else {
        /* Runs of plain bytes in one write: per-byte stdio calls dominated the detector. */
        const char *end = value + len;
        for (const char *c = value; c < end;) {
            const char *run = c;
            while (c < end && *c != '\\' && *c != '\t' && *c != '\n' && *c != '\r')
                c++;
            fwrite(run, 1, (size_t)(c - run), f);
            if (c < end) {
                static const char esc[] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r'};
                fputc('\\', f);
                fputc(esc[(unsigned char)*c++], f);
            }
        }
    }
    fputc(last ? '\n' : '\t', f);
}

void pl_pg_copy_text(FILE *f, const char *value, bool last)
{
    pl_pg_copy_textn(f, value, value ? strlen(value) : 0, last);
}

char *pl_pg_text_array(const char *const *items, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputc('{', f);
    for (size_t i = 0; i < n; i++)
        pl_pg_array_item(f, items[i], i == 0);
    fputc('}', f);
    fclose(f);
    return text;
}
