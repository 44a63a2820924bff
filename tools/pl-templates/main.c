/* pl-templates: prints "group<TAB>template" for every line of stdin, using exactly the
 * detector's masking (mask.h) and template (template.h) rules. The group is the first 16 hex
 * digits of the template's SHA-256. For the grouping benchmark (bench/loghub) and for
 * checking by hand how a set of error messages would be grouped. */
#include "mask.h"
#include "template.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char templates_usage[] =
    "usage: pl-templates < messages.txt\n"
    "  prints group<TAB>template for every input line (group = 16 hex digits)\n";

/* Grows *buf to at least need bytes. @returns 0, or -1 when out of memory. */
static int templates_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    char *p = realloc(*buf, need);
    if (!p)
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        bool help = argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
        fputs(templates_usage, help ? stdout : stderr);
        return help ? 0 : 2;
    }
    int rc = 1;
    char *line = NULL, *masked = NULL, *tmpl = NULL;
    size_t line_cap = 0, masked_cap = 0, tmpl_cap = 0;
    ssize_t n;
    while ((n = getline(&line, &line_cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        /* Sizes from mask.h and template.h that never truncate. */
        if (templates_reserve(&masked, &masked_cap, 5 * len + 1) != 0) {
            fprintf(stderr, "pl-templates: out of memory (line of %zu bytes)\n", len);
            goto out;
        }
        size_t mlen = pl_mask_textn(line, len, masked, masked_cap);
        if (templates_reserve(&tmpl, &tmpl_cap, 3 * mlen + 1) != 0) {
            fprintf(stderr, "pl-templates: out of memory (line of %zu bytes)\n", len);
            goto out;
        }
        /* -1 here only means a template cut at PL_TEMPLATE_MAX_TOKENS: still a template. */
        if (pl_template_build(masked, tmpl, tmpl_cap) != 0 && tmpl[0] == '\0' && mlen > 0) {
            fprintf(stderr, "pl-templates: out of memory (line of %zu bytes)\n", len);
            goto out;
        }
        char group[PL_GROUP_ID_SIZE];
        pl_template_group_id(tmpl, group);
        if (printf("%s\t%s\n", group, tmpl) < 0) {
            perror("pl-templates: stdout");
            goto out;
        }
    }
    if (ferror(stdin)) {
        perror("pl-templates: stdin");
        goto out;
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(line);
    free(masked);
    free(tmpl);
    return rc;
}
