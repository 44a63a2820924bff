/* The control loop's kill switch, one per tenant (architecture §7): while it is active the
 * controller and the API's execute route run nothing; what arrives is recorded as `pending` and
 * picked up after it is disabled. */
#ifndef PL_KILLSWITCH_H
#define PL_KILLSWITCH_H

#include "pg.h"

#include <stdbool.h>

/**
 * @brief Whether the tenant's switch is active (a tenant that never set it: inactive).
 * @returns 0 with *active filled, -1 with err.
 */
int pl_killswitch_get(PGconn *conn, const char *tenant_id, bool *active, struct pl_pg_error *err);

/**
 * @brief Sets the tenant's switch and audits it (action killswitch.enable / .disable, by
 *        actor) in one transaction. Setting it to what it is still writes an audit entry: the
 *        owner asked. @returns 0, -1 with err.
 */
int pl_killswitch_set(PGconn *conn, const char *tenant_id, bool active, const char *actor,
                      struct pl_pg_error *err);

#endif
