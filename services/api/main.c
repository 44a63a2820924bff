/* pl-api: REST API (architecture §8). Wires the route table to the service runtime. */
#include "api.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>

static const struct pl_http_route api_routes[] = {
    {"GET", "/v1/prompts/deployments", api_deployments_list},
    {"GET", "/v1/prompts/deployments/{id}", api_deployments_get},
    {"GET", "/v1/prompts/deployments/{id}/series", api_deployments_series},
    {"GET", "/v1/alerts", api_alerts},
    {"GET", "/v1/audit-log", api_audit_list},
    {"GET", "/v1/audit/verify", api_audit_verify},
    {"POST", "/v1/prompts/deployments/{id}/approve", api_deployments_approve},
    {"POST", "/v1/prompts/deployments/{id}/reject", api_deployments_reject},
    {"POST", "/v1/prompts/deployments/{id}/rollback", api_deployments_rollback},
    {"POST", "/v1/ingest", api_ingest_one},
    {"POST", "/v1/ingest/batch", api_ingest_batch},
    {"GET", "/v1/eval-rules", api_eval_rules_list},
    {"POST", "/v1/eval-rules", api_eval_rules_create},
    {"GET", "/v1/eval-rules/{id}", api_eval_rules_get},
    {"PATCH", "/v1/eval-rules/{id}", api_eval_rules_update},
    {"DELETE", "/v1/eval-rules/{id}", api_eval_rules_delete},
    {"GET", "/v1/failures/clusters", api_clusters_list},
    {"GET", "/v1/failures/clusters/{id}", api_clusters_get},
    {"PATCH", "/v1/failures/clusters/{id}", api_clusters_update},
    {"GET", "/v1/projects", api_projects_list},
    {"POST", "/v1/projects", api_projects_create},
    {"GET", "/v1/projects/{id}", api_projects_get},
    {"PATCH", "/v1/projects/{id}", api_projects_update},
    {"GET", "/v1/policies", api_policies_list},
    {"POST", "/v1/policies", api_policies_create},
    {"GET", "/v1/policies/{id}", api_policies_get},
    {"PATCH", "/v1/policies/{id}", api_policies_update},
    {"DELETE", "/v1/policies/{id}", api_policies_delete},
    {"GET", "/v1/control/killswitch", api_killswitch_get},
    {"POST", "/v1/control/killswitch/enable", api_killswitch_enable},
    {"POST", "/v1/control/killswitch/disable", api_killswitch_disable},
    /* the queue before {id}: the router takes the first pattern that matches */
    {"GET", "/v1/control/actions", api_actions_list},
    {"GET", "/v1/control/actions/pending", api_actions_pending},
    {"GET", "/v1/control/actions/{id}", api_actions_get},
    {"POST", "/v1/control/actions/{id}/reject", api_actions_reject},
    {"POST", "/v1/control/actions/{id}/approve", api_actions_approve},
    {"GET", "/v1/control/actions/{id}/diff", api_actions_diff},
    {"POST", "/v1/control/execute", api_control_execute},
    {"GET", "/ui", api_ui_redirect},
    {"POST", "/ui/session", api_ui_sign_in},
    {"GET", "/ui/session", api_ui_session},
    {"DELETE", "/ui/session", api_ui_sign_out},
    {"POST", "/ui/links", api_ui_link_create},
    {"GET", "/ui/signin/{token}", api_ui_link_redeem},
    {"GET", "/ui/", api_ui_asset},
    {"GET", "/ui/{file}", api_ui_asset},
    {"GET", "/v1/traces/{id}", api_traces_get},
    {"POST", "/v1/prompts", api_prompts_create},
    {"GET", "/v1/prompts", api_prompts_list},
    {"GET", "/v1/prompts/{id}", api_prompts_get},
    {"POST", "/v1/prompts/{id}/versions", api_prompt_versions_create},
    {"GET", "/v1/environments", api_environments_list},
    {"POST", "/v1/environments/{id}/deployments", api_environment_deploy},
    {"GET", "/v1/environments/{id}/deployments", api_environment_history},
    {"GET", "/v2/deployments", api_adaline_deployment},
    {"GET", "/api/ml/v1/prompt-versions", api_truefoundry_versions},
    {"PUT", "/api/ml/v1/prompt-versions/tags", api_truefoundry_tags},
};

int main(int argc, char **argv)
{
    struct pl_service svc;
    int rc = EXIT_FAILURE;
    if (pl_service_start(&svc, "api", argc, argv, api_routes,
                         sizeof(api_routes) / sizeof(api_routes[0]), NULL) != 0)
        goto out;
    while (pl_running)
        pl_sleep_ms(100);
    pl_info("api: shutting down");
    rc = EXIT_SUCCESS;
out:
    pl_service_stop(&svc);
    return rc;
}
