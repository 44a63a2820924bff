/* pl-detector: consumes pl.traces in batches; stores traces, evaluates the projects' eval
 * rules, turns failures into signatures and clusters, and announces clusters that reach
 * their project's threshold on pl.clusters (through the outbox). With detector.backfill set
 * it runs one backfill (pl-admin replay) under its own group instead, and exits when done. */
#include "backfill.h"
#include "detect.h"
#include "evaluate.h"
#include "log.h"
#include "service.h"
#include "util.h"
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DETECT_BATCH_MAX     5000
#define DETECT_BATCH_WAIT_MS 50
#define BACKFILL_CHECK_MS    1000
#define BACKFILL_REPORT_MS   10000

/* Watches a backfill's committed positions; at the end of its range, records it finished and
 * stops the consumer. */
static void *detector_backfill_watch(void *arg)
{
    struct pl_service *svc = arg;
    const struct detect_context *ctx = svc->ctx;
    int64_t reported = 0;
    while (pl_running) {
        pl_sleep_ms(BACKFILL_CHECK_MS);
        struct pl_backfill_progress p;
        char err[512];
        if (pl_backfill_progress(svc->cfg.kafka_brokers, ctx->backfill, &p, NULL, err,
                                 sizeof(err)) != 0) {
            pl_warn("backfill %s: %s", ctx->backfill->name, err);
            continue;
        }
        if (pl_now_ms() - reported >= BACKFILL_REPORT_MS || p.complete) {
            pl_info("backfill %s: %lld of %lld messages", ctx->backfill->name, (long long)p.done,
                    (long long)p.total);
            reported = pl_now_ms();
        }
        if (!p.complete)
            continue;
        struct pl_pg_error perr;
        PGconn *conn = pl_pg_acquire(svc->pg, &perr);
        if (!conn || pl_backfill_mark_finished(conn, ctx->backfill->name, &perr) != 0) {
            pl_warn("backfill %s: recording the end: %s", ctx->backfill->name, perr.message);
            if (conn)
                pl_pg_release(svc->pg, conn);
            continue;
        }
        pl_pg_release(svc->pg, conn);
        pl_info("backfill %s: finished", ctx->backfill->name);
        pl_running = 0;
    }
    return NULL;
}

/* Loads the configured backfill and takes its group: 1 ready, 0 nothing left to do, -1 error. */
static int detector_backfill_start(struct pl_service *svc, struct pl_backfill *b)
{
    struct pl_pg_error perr;
    char err[512];
    PGconn *conn = pl_pg_acquire(svc->pg, &perr);
    if (!conn) {
        pl_error("backfill: %s", perr.message);
        return -1;
    }
    int found = pl_backfill_load(conn, svc->cfg.detector_backfill, b, err, sizeof(err));
    pl_pg_release(svc->pg, conn);
    if (found <= 0) {
        pl_error("backfill %s: %s", svc->cfg.detector_backfill,
                 found < 0 ? err : "no such backfill (pl-admin replay creates it)");
        return -1;
    }
    if (strcmp(b->stage, "detector") != 0) {
        pl_error("backfill %s belongs to stage %s", b->name, b->stage);
        return -1;
    }
    if (b->finished_at[0]) {
        pl_info("backfill %s finished at %s: nothing to do", b->name, b->finished_at);
        return 0;
    }
    snprintf(svc->cfg.kafka_group_id, sizeof(svc->cfg.kafka_group_id), "%s", b->group_id);
    snprintf(svc->cfg.kafka_topic_traces, sizeof(svc->cfg.kafka_topic_traces), "%s", b->topic);
    pl_info("backfill %s: group %s over %s from %s", b->name, b->group_id, b->topic, b->from);
    return 1;
}

int main(int argc, char **argv)
{
    struct pl_service svc;
    struct detect_context ctx = {0};
    struct pl_backfill backfill = {0};
    pthread_t watcher;
    bool watching = false;
    int rc = EXIT_FAILURE;
    if (pl_service_start(&svc, "detector", argc, argv, NULL, 0, &ctx) != 0)
        goto out;
    if (svc.cfg.detector_backfill[0]) {
        int ready = detector_backfill_start(&svc, &backfill);
        if (ready <= 0) {
            rc = ready == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
            goto out;
        }
        ctx.backfill = &backfill;
        if (pthread_create(&watcher, NULL, detector_backfill_watch, &svc) != 0)
            goto out;
        watching = true;
    }
    const char *topics[] = {svc.cfg.kafka_topic_traces, NULL};
    static const struct pl_worker_stages stages = {detect_prepare, detect_store, detect_release};
    /* Tenants' costly-rule time, across batches: prepare runs on one thread only. */
    ctx.ledger = pl_eval_ledger_new(svc.cfg.eval_tenant_budget_ms, svc.cfg.eval_tenant_window_ms);
    if (!ctx.ledger)
        goto out;
    if (pl_worker_run_stages(&svc, topics, &stages, &ctx, DETECT_BATCH_MAX, DETECT_BATCH_WAIT_MS) ==
        0)
        rc = EXIT_SUCCESS;
out:
    pl_running = 0;
    if (watching)
        pthread_join(watcher, NULL);
    pl_eval_ledger_free(ctx.ledger);
    pl_backfill_free(&backfill);
    pl_service_stop(&svc);
    return rc;
}
