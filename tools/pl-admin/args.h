/* pl-admin's command-line options: `--name value` pairs and bare `--flag`s. */
#ifndef PL_ADMIN_ARGS_H
#define PL_ADMIN_ARGS_H

#include <stdbool.h>

/** @brief The value after --name in argv, or NULL. */
const char *admin_opt(int argc, char **argv, const char *name);

/** @brief Whether a bare --name is in argv. */
bool admin_flag(int argc, char **argv, const char *name);

#endif
