/* pl-detector: consumes pl.traces in batches; stores traces, evaluates the projects' eval
 * rules, turns failures into signatures and clusters, and announces clusters that reach
 * their project's threshold on pl.clusters (through the outbox). */
#include "detect.h"
#include "evaluate.h"
#include "log.h"
#include "service.h"
#include "worker.h"

#include <stdlib.h>

#define DETECT_BATCH_MAX     5000
#define DETECT_BATCH_WAIT_MS 50

int main(int argc, char **argv)
{
    struct pl_service svc;
    struct pl_eval_ledger *ledger = NULL;
    int rc = EXIT_FAILURE;
    if (pl_service_start(&svc, "detector", argc, argv, NULL, 0, NULL) != 0)
        goto out;
    const char *topics[] = {svc.cfg.kafka_topic_traces, NULL};
    static const struct pl_worker_stages stages = {detect_prepare, detect_store, detect_release};
    /* Tenants' costly-rule time, across batches: prepare runs on one thread only. */
    ledger = pl_eval_ledger_new(svc.cfg.eval_tenant_budget_ms, svc.cfg.eval_tenant_window_ms);
    if (!ledger)
        goto out;
    if (pl_worker_run_stages(&svc, topics, &stages, ledger, DETECT_BATCH_MAX,
                             DETECT_BATCH_WAIT_MS) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_eval_ledger_free(ledger);
    pl_service_stop(&svc);
    return rc;
}
