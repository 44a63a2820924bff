/* pl-monitor: consumes deployment events and traces; watches shipped prompts (issue 5).
 * For now the stage validates each event's envelope (dead-lettering bad ones) and
 * acknowledges it; the stage logic itself arrives with its issue. */
#include "log.h"
#include "service.h"
#include "worker.h"

#include <stdlib.h>

static enum pl_handle_result monitor_handle(struct pl_service *svc, const rd_kafka_message_t *msg,
                                            char *reason, size_t reasonsz)
{
    (void)svc;
    static const char *const required[] = {"tenant_id", "project_id", NULL};
    json_object *ev = pl_worker_parse_event(msg, required, reason, reasonsz);
    if (!ev)
        return PL_HANDLE_DLQ;
    pl_debug("event %s[%d]@%lld accepted", rd_kafka_topic_name(msg->rkt), msg->partition,
             (long long)msg->offset);
    json_object_put(ev);
    return PL_HANDLED;
}

int main(int argc, char **argv)
{
    struct pl_service svc;
    int rc = EXIT_FAILURE;
    if (pl_service_start(&svc, "monitor", argc, argv, NULL, 0, NULL) != 0)
        goto out;
    const char *topics[] = {svc.cfg.kafka_topic_deployments, svc.cfg.kafka_topic_traces, NULL};
    if (pl_worker_run(&svc, topics, monitor_handle) == 0)
        rc = EXIT_SUCCESS;
out:
    pl_service_stop(&svc);
    return rc;
}
