/* pl-monitor: watches shipped prompt versions on live traffic and rolls back regressions
 * (architecture §7); watch.c holds the stage logic. One consumer group reads pl.traces and
 * pl.deployments, in batches. */
#include "log.h"
#include "service.h"
#include "watch.h"
#include "worker.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    struct pl_service svc;
    int rc = EXIT_FAILURE;
    if (pl_service_start(&svc, "monitor", argc, argv, NULL, 0, NULL) != 0)
        goto out;
    /* an alarm whose transition a crash interrupted is acted on before anything else */
    struct pl_pg_error err;
    PGconn *conn = pl_pg_acquire(svc.pg, &err);
    if (conn) {
        if (pl_monitor_act_on_alarms(&svc, conn, &err) != 0)
            pl_warn("monitor: pending alarms: %s", err.message);
        pl_pg_release(svc.pg, conn);
    }
    const char *topics[] = {svc.cfg.kafka_topic_traces, svc.cfg.kafka_topic_deployments, NULL};
    if (pl_worker_run_batch(&svc, topics, pl_monitor_batch, NULL, 500, 50) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_service_stop(&svc);
    return rc;
}
