/* Process-wide Prometheus counters and gauges, rendered in text format 0.0.4. */
#ifndef PL_METRICS_H
#define PL_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct pl_metric;

/**
 * @brief Returns the series family{labels} (labels like `code="200"`, or NULL), creating
 *        it on first use. The series lives for the process; the pointer stays valid.
 *        Counter family names must end in _total.
 */
struct pl_metric *pl_metric_counter(const char *family, const char *labels, const char *help);
struct pl_metric *pl_metric_gauge(const char *family, const char *labels, const char *help);

/** @brief The counter family{result="..."}: the usual outcome-by-result series. */
struct pl_metric *pl_metric_result_counter(const char *family, const char *result,
                                           const char *help);

void pl_metric_add(struct pl_metric *m, int64_t n);
void pl_metric_set(struct pl_metric *m, int64_t v);
int64_t pl_metric_value(const struct pl_metric *m);

/** @brief Renders every series; the caller frees the returned string. */
char *pl_metrics_render(void);

#endif
