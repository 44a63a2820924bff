/* pl-differ: consumes pl.clusters and proposes prompt fixes (architecture §7); the stage logic is
 * in propose.c. */
#include "log.h"
#include "propose.h"
#include "service.h"
#include "worker.h"

#include <stdlib.h>

static enum pl_handle_result differ_handle(struct pl_service *svc, const rd_kafka_message_t *msg,
                                           char *reason, size_t reasonsz)
{
    static const char *const required[] = {"tenant_id", "project_id", "cluster_id", NULL};
    json_object *ev = pl_worker_parse_event(msg, required, reason, reasonsz);
    if (!ev)
        return PL_HANDLE_DLQ;
    enum pl_handle_result r = pl_differ_handle_event(svc, svc->ctx, ev, reason, reasonsz);
    json_object_put(ev);
    return r;
}

int main(int argc, char **argv)
{
    struct pl_service svc;
    int rc = EXIT_FAILURE;
    struct pl_llm_client *llm = NULL;
    if (pl_service_start(&svc, "differ", argc, argv, NULL, 0, NULL) != 0)
        goto out;
    char err[256];
    llm = pl_llm_client_new(&svc.cfg, err, sizeof(err));
    if (!llm) {
        pl_error("differ: %s", err);
        goto out;
    }
    svc.ctx = llm;
    const char *topics[] = {svc.cfg.kafka_topic_clusters, NULL};
    if (pl_worker_run(&svc, topics, differ_handle) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_service_stop(&svc);
    pl_llm_client_free(llm);
    return rc;
}
