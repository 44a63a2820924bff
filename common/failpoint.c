/* Failpoints: named places where a test makes a process crash or fail. */
#include "failpoint.h"

#include "log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

bool pl_failpoint_armed(const char *name)
{
    const char *list = getenv("PL_FAILPOINT");
    if (!list)
        return false;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
        bool starts = p == list || p[-1] == ',';
        bool ends = p[n] == '\0' || p[n] == ',';
        if (starts && ends)
            return true;
    }
    return false;
}

void pl_failpoint_crash(const char *name)
{
    if (!pl_failpoint_armed(name))
        return;
    pl_error("failpoint %s: killing the process", name);
    raise(SIGKILL);
}
