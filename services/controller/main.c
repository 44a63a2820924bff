/* pl-controller: consumes pl.failures and runs the runtime control loop on each failing trace
 * (architecture §7); loop.c holds the stage logic. A second thread sweeps every
 * controller.sweep_interval_ms: actions kept pending while a kill switch was on, and
 * escalations past their project's hitl_timeout_s. */
#include "log.h"
#include "loop.h"
#include "service.h"
#include "util.h"
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>

/* How long a batch waits for more failures after its first: short, the loop is latency-bound. */
#define CONTROLLER_BATCH_WAIT_MS 20

static void *controller_sweep_loop(void *arg)
{
    struct controller *c = arg;
    while (pl_running) {
        pl_controller_sweep(c);
        int64_t next = pl_now_ms() + c->svc->cfg.controller_sweep_interval_ms;
        while (pl_running && pl_now_ms() < next)
            pl_sleep_ms(20);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct pl_service svc;
    struct controller c = {&svc, NULL, NULL};
    int rc = EXIT_FAILURE;
    pthread_t sweeper;
    bool sweeping = false;
    if (pl_service_start(&svc, "controller", argc, argv, NULL, 0, &c) != 0)
        goto out;
    char err[256];
    c.llm = pl_llm_client_new(&svc.cfg, err, sizeof(err));
    c.sweep_llm = c.llm ? pl_llm_client_new(&svc.cfg, err, sizeof(err)) : NULL;
    if (!c.sweep_llm) {
        pl_error("controller: %s", err);
        goto out;
    }
    sweeping = pthread_create(&sweeper, NULL, controller_sweep_loop, &c) == 0;
    const char *topics[] = {svc.cfg.kafka_topic_failures, NULL};
    if (pl_worker_run_batch(&svc, topics, pl_controller_handle, &c,
                            (size_t)svc.cfg.controller_batch, CONTROLLER_BATCH_WAIT_MS) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_running = 0;
    if (sweeping)
        pthread_join(sweeper, NULL);
    pl_service_stop(&svc);
    pl_llm_client_free(c.llm);
    pl_llm_client_free(c.sweep_llm);
    return rc;
}
