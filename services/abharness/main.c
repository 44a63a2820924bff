/* pl-abharness: consumes pl.deployments, runs the A/B of every proposed deployment and
 * autoships passed ones when the project allows (architecture §7); replay.c holds the stage logic.
 * A second thread resumes A/B runs orphaned by a crashed harness: at startup, then every
 * abharness.resume_interval_ms for runs untouched for abharness.resume_after_ms. */
#include "log.h"
#include "replay.h"
#include "service.h"
#include "util.h"
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>

struct abharness {
    struct pl_service *svc;
    struct pl_llm_client *llm;        /* the consumer's */
    struct pl_llm_client *resume_llm; /* the resume thread's: a client runs one batch at a time */
};

static enum pl_handle_result ab_handle(struct pl_service *svc, const rd_kafka_message_t *msg,
                                       char *reason, size_t reasonsz)
{
    static const char *const required[] = {"tenant_id", "project_id", "deployment_id", NULL};
    json_object *ev = pl_worker_parse_event(msg, required, reason, reasonsz);
    if (!ev)
        return PL_HANDLE_DLQ;
    struct abharness *h = svc->ctx;
    enum pl_handle_result r = pl_ab_handle_event(svc, h->llm, ev, reason, reasonsz);
    json_object_put(ev);
    return r;
}

static void *ab_resume_loop(void *arg)
{
    struct abharness *h = arg;
    pl_ab_resume_orphans(h->svc, h->resume_llm, true);
    while (pl_running) {
        int64_t next = pl_now_ms() + h->svc->cfg.abharness_resume_interval_ms;
        while (pl_running && pl_now_ms() < next)
            pl_sleep_ms(100);
        if (pl_running)
            pl_ab_resume_orphans(h->svc, h->resume_llm, false);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct pl_service svc;
    struct abharness h = {&svc, NULL, NULL};
    int rc = EXIT_FAILURE;
    pthread_t resumer;
    bool resuming = false;
    if (pl_service_start(&svc, "abharness", argc, argv, NULL, 0, &h) != 0)
        goto out;
    char err[256];
    h.llm = pl_llm_client_new(&svc.cfg, err, sizeof(err));
    h.resume_llm = h.llm ? pl_llm_client_new(&svc.cfg, err, sizeof(err)) : NULL;
    if (!h.resume_llm) {
        pl_error("abharness: %s", err);
        goto out;
    }
    resuming = pthread_create(&resumer, NULL, ab_resume_loop, &h) == 0;
    const char *topics[] = {svc.cfg.kafka_topic_deployments, NULL};
    if (pl_worker_run(&svc, topics, ab_handle) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_running = 0;
    if (resuming)
        pthread_join(resumer, NULL);
    pl_service_stop(&svc);
    pl_llm_client_free(h.llm);
    pl_llm_client_free(h.resume_llm);
    return rc;
}
