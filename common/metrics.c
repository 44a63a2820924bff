/* Process-wide Prometheus counters and gauges, rendered in text format 0.0.4. */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pl_metric {
    char family[96];
    char labels[160];
    const char *help;
    const char *type;
    _Atomic int64_t value;
    struct pl_metric *next;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_metric *metrics_head, *metrics_tail;

static struct pl_metric *metrics_get(const char *family, const char *labels, const char *help,
                                     const char *type)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock(&metrics_lock);
    struct pl_metric *m;
    for (m = metrics_head; m; m = m->next)
        if (strcmp(m->family, family) == 0 && strcmp(m->labels, labels) == 0)
            goto out;
    m = calloc(1, sizeof(*m));
    if (!m)
        abort(); /* out of memory at registration: nothing sensible to do */
    snprintf(m->family, sizeof(m->family), "%s", family);
    snprintf(m->labels, sizeof(m->labels), "%s", labels);
    m->help = help;
    m->type = type;
    if (metrics_tail)
        metrics_tail->next = m;
    else
        metrics_head = m;
    metrics_tail = m;
out:
    pthread_mutex_unlock(&metrics_lock);
    return m;
}

struct pl_metric *pl_metric_counter(const char *family, const char *labels, const char *help)
{
    return metrics_get(family, labels, help, "counter");
}

struct pl_metric *pl_metric_gauge(const char *family, const char *labels, const char *help)
{
    return metrics_get(family, labels, help, "gauge");
}

void pl_metric_add(struct pl_metric *m, int64_t n)
{
    atomic_fetch_add(&m->value, n);
}

void pl_metric_set(struct pl_metric *m, int64_t v)
{
    atomic_store(&m->value, v);
}

int64_t pl_metric_value(const struct pl_metric *m)
{
    return atomic_load(&((struct pl_metric *)m)->value);
}

char *pl_metrics_render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&metrics_lock);
    /* A family's lines must be contiguous: emit each family at its first series, with
     * every series of it, whenever they were registered. */
    for (struct pl_metric *m = metrics_head; m; m = m->next) {
        bool first = true;
        for (struct pl_metric *p = metrics_head; p != m; p = p->next)
            if (strcmp(p->family, m->family) == 0) {
                first = false;
                break;
            }
        if (!first)
            continue;
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m->family, m->help, m->family, m->type);
        for (struct pl_metric *p = m; p; p = p->next) {
            if (strcmp(p->family, m->family) != 0)
                continue;
            if (p->labels[0])
                fprintf(f, "%s{%s} %lld\n", p->family, p->labels,
                        (long long)atomic_load(&p->value));
            else
                fprintf(f, "%s %lld\n", p->family, (long long)atomic_load(&p->value));
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    fclose(f);
    return buf;
}

struct pl_metric *pl_metric_result_counter(const char *family, const char *result, const char *help)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    return pl_metric_counter(family, labels, help);
}
