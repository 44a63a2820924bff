/* JSON-lines logging to stderr: one object per line, safe from many threads. */
#ifndef PL_LOG_H
#define PL_LOG_H

enum pl_log_level { PL_LOG_DEBUG, PL_LOG_INFO, PL_LOG_WARN, PL_LOG_ERROR };

/** @brief Sets the service name written on every line (the string is copied). */
void pl_log_init(const char *service, enum pl_log_level level);

/** @brief Parses "debug|info|warn|error"; returns -1 on anything else. */
int pl_log_level_parse(const char *s, enum pl_log_level *out);

/** @brief Writes one line {"ts","level","service","msg"} where msg is printf-formatted. */
void pl_log(enum pl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pl_debug(...) pl_log(PL_LOG_DEBUG, __VA_ARGS__)
#define pl_info(...)  pl_log(PL_LOG_INFO, __VA_ARGS__)
#define pl_warn(...)  pl_log(PL_LOG_WARN, __VA_ARGS__)
#define pl_error(...) pl_log(PL_LOG_ERROR, __VA_ARGS__)

#endif
