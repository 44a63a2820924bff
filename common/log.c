/* JSON-lines logging to stderr. */
#include "log.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char log_service[64] = "promptloop";
static enum pl_log_level log_min_level = PL_LOG_INFO;
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void pl_log_init(const char *service, enum pl_log_level level)
{
    snprintf(log_service, sizeof(log_service), "%s", service);
    log_min_level = level;
}

int pl_log_level_parse(const char *s, enum pl_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (enum pl_log_level)i;
            return 0;
        }
    }
    return -1;
}

void pl_log(enum pl_log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    /* json-c does the escaping so any message text yields a valid line. */
    json_object *line = json_object_new_object();
    json_object_object_add(line, "ts", json_object_new_string(when));
    json_object_object_add(line, "level", json_object_new_string(log_level_names[level]));
    json_object_object_add(line, "service", json_object_new_string(log_service));
    json_object_object_add(line, "msg", json_object_new_string(msg));
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    fprintf(stderr, "%s\n",
            json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(line);
}
