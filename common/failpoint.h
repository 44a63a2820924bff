/* Failpoints: named places where a test can make the process die, to prove crash safety.
 * Armed only through the PL_FAILPOINT environment variable (comma-separated names). */
#ifndef PL_FAILPOINT_H
#define PL_FAILPOINT_H

#include <stdbool.h>

/** @brief True when name is listed in PL_FAILPOINT. */
bool pl_failpoint_armed(const char *name);

/** @brief Kills the process with SIGKILL (like kill -9) when name is armed. */
void pl_failpoint_crash(const char *name);

#endif
