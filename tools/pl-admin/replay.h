/* pl-admin replay: backfills of a stage over a time range (see common/backfill.h). */
#ifndef PL_ADMIN_REPLAY_H
#define PL_ADMIN_REPLAY_H

#include "config.h"

/**
 * @brief `replay --stage detector --from TIME [--to TIME] [--name NAME] [--no-run]` creates
 *        (or resumes) a backfill and runs it in the foreground; `replay status [--name NAME]`
 *        shows where backfills stand. argv starts after "replay". @returns the exit code.
 */
int admin_replay(const struct pl_config *cfg, int argc, char **argv);

#endif
