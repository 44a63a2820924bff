/* pl-admin replay: creates, resumes and reports backfills (see replay.h). */
#include "replay.h"

#include "args.h"
#include "backfill.h"
#include "pg.h"
#include "util.h"

#include <ctype.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int replay_fail(const char *what, const char *detail)
{
    fprintf(stderr, "pl-admin: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

/* YYYY-MM-DDTHH:MM:SSZ to epoch milliseconds; -1 when it is not one. */
static int64_t replay_time(const char *s)
{
    struct tm tm = {0};
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    return end && !*end ? (int64_t)timegm(&tm) * 1000 : -1;
}

/* The default name: the stage and the range, so that the same command resumes. */
static void replay_default_name(char *out, size_t outsz, const char *stage, const char *from,
                                const char *to)
{
    size_t len = (size_t)snprintf(out, outsz, "%s-", stage);
    for (const char *p = from; *p && len + 1 < outsz; p++)
        if (isdigit((unsigned char)*p))
            out[len++] = *p;
    if (to && len + 4 < outsz) {
        memcpy(out + len, "-to-", 4);
        len += 4;
        for (const char *p = to; *p && len + 1 < outsz; p++)
            if (isdigit((unsigned char)*p))
                out[len++] = *p;
    }
    out[len] = '\0';
}

/* One line per backfill: where its group stands, with a bar on a terminal. */
static int replay_print_status(const struct pl_config *cfg, const struct pl_backfill *b)
{
    struct pl_backfill_progress p;
    char err[512];
    int64_t *committed = calloc((size_t)b->npartitions, sizeof(*committed));
    if (!committed ||
        pl_backfill_progress(cfg->kafka_brokers, b, &p, committed, err, sizeof(err)) != 0) {
        free(committed);
        return replay_fail(b->name, committed ? err : "out of memory");
    }
    double pct = p.total ? 100.0 * (double)p.done / (double)p.total : 100.0;
    const char *state = b->finished_at[0] ? "finished" : p.complete ? "caught up" : "running";
    printf("%s  stage=%s group=%s topic=%s from=%s to=%s  %s  %lld/%lld (%.1f%%) lag=%lld\n",
           b->name, b->stage, b->group_id, b->topic, b->from, b->to[0] ? b->to : "(creation)",
           state, (long long)p.done, (long long)p.total, pct, (long long)(p.total - p.done));
    if (isatty(STDOUT_FILENO)) {
        char bar[41];
        int filled = (int)(pct * 40 / 100);
        for (int i = 0; i < 40; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[40] = '\0';
        printf("  [%s]\n", bar);
        for (int i = 0; i < b->npartitions; i++)
            printf("  %s[%d] %lld..%lld at %lld\n", b->topic, i, (long long)b->start[i],
                   (long long)b->end[i], (long long)committed[i]);
    }
    free(committed);
    return 0;
}

static int replay_status(const struct pl_config *cfg, PGconn *conn, const char *name)
{
    char err[512];
    char **names = NULL;
    int n;
    char *one[1] = {(char *)name};
    if (name) {
        names = one;
        n = 1;
    } else if ((n = pl_backfill_names(conn, &names, err, sizeof(err))) < 0) {
        return replay_fail("replay status", err);
    }
    int rc = 0;
    if (n == 0)
        printf("no backfills\n");
    for (int i = 0; i < n; i++) {
        struct pl_backfill b;
        int found = pl_backfill_load(conn, names[i], &b, err, sizeof(err));
        if (found <= 0)
            rc = replay_fail(names[i], found < 0 ? err : "no such backfill");
        else if (replay_print_status(cfg, &b) != 0)
            rc = 1;
        pl_backfill_free(&b);
        if (!name)
            free(names[i]);
    }
    if (!name)
        free(names);
    return rc;
}

/* Runs the stage's executable (next to this one) as the backfill, in the foreground. */
static int replay_run(const char *stage, const char *name)
{
    char self[PATH_MAX], exe[PATH_MAX + 32];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        return replay_fail("cannot find the stage's executable", NULL);
    self[len] = '\0';
    snprintf(exe, sizeof(exe), "%s/pl-%s", dirname(self), stage);
    if (setenv("PL_DETECTOR_BACKFILL", name, 1) != 0 ||
        setenv("PL_HTTP_PORT", "0", 0) != 0) /* next to a live stage on the same host */
        return replay_fail("setenv", NULL);
    fflush(stdout);
    execl(exe, exe, (char *)NULL);
    return replay_fail(exe, "cannot run it");
}

int admin_replay(const struct pl_config *cfg, int argc, char **argv)
{
    struct pl_pg_error perr;
    PGconn *conn = pl_pg_connect(cfg->pg_dsn, &perr);
    if (!conn)
        return replay_fail("database", perr.message);
    int rc;
    if (argc > 0 && strcmp(argv[0], "status") == 0) {
        rc = replay_status(cfg, conn, admin_opt(argc, argv, "--name"));
        PQfinish(conn);
        return rc;
    }
    const char *stage = admin_opt(argc, argv, "--stage"), *from = admin_opt(argc, argv, "--from");
    const char *to = admin_opt(argc, argv, "--to"), *name = admin_opt(argc, argv, "--name");
    int64_t from_ms = replay_time(from), to_ms = to ? replay_time(to) : 0;
    if (!stage || from_ms < 0 || to_ms < 0 || (to && to_ms <= from_ms)) {
        PQfinish(conn);
        return replay_fail("replay needs --stage detector --from YYYY-MM-DDTHH:MM:SSZ "
                           "[--to a later time] [--name NAME] [--no-run]",
                           NULL);
    }
    if (strcmp(stage, "detector") != 0) {
        PQfinish(conn);
        return replay_fail("only the detector backfills", "the other stages' replays change "
                                                          "nothing (pl-admin offsets reset)");
    }
    char defname[PL_BACKFILL_NAME_MAX];
    if (!name) {
        replay_default_name(defname, sizeof(defname), stage, from, to);
        name = defname;
    }
    char err[512];
    struct pl_backfill b;
    int made = pl_backfill_create(conn, cfg->kafka_brokers, name, stage, cfg->kafka_topic_traces,
                                  from_ms, to_ms, &b, err, sizeof(err));
    PQfinish(conn);
    if (made < 0)
        return replay_fail("replay", err);
    int64_t total = 0;
    for (int i = 0; i < b.npartitions; i++)
        total += b.end[i] > b.start[i] ? b.end[i] - b.start[i] : 0;
    printf("backfill %s %s: group %s, %lld message(s) of %s from %s%s%s\n", b.name,
           made ? "created" : "resumed", b.group_id, (long long)total, b.topic, b.from,
           b.to[0] ? " to " : "", b.to);
    bool finished = b.finished_at[0] != '\0';
    pl_backfill_free(&b);
    if (finished) {
        printf("backfill %s finished earlier: nothing to do\n", name);
        return 0;
    }
    if (admin_flag(argc, argv, "--no-run")) {
        printf("run it with: PL_DETECTOR_BACKFILL=%s pl-detector\n", name);
        return 0;
    }
    return replay_run(stage, name);
}
