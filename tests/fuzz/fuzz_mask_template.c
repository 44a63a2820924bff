/* libFuzzer target: masking (mask.c) and templates and signatures (template.c) of error
 * messages: size bounds, truncation, templates that are fixed points and blind to the kind
 * of placeholder, and signatures that keep their fields apart. */
#include "fuzz.h"

#include "mask.h"
#include "template.h"
#include "util.h"

#include <ctype.h>

/* The template of text masked once. The caller frees both. */
static int template_of(const char *text, size_t len, char **masked, char **tmpl)
{
    size_t msz = 5 * len + 1;
    *masked = malloc(msz);
    size_t ml = pl_mask_textn(text, len, *masked, msz);
    FUZZ_CHECK(ml < msz && ml <= 5 * len, "masked %zu bytes to %zu", len, ml);
    FUZZ_CHECK(strlen(*masked) == ml, "the masked text holds a NUL or is short: %zu of %zu",
               strlen(*masked), ml);
    size_t tsz = 3 * ml + 1;
    *tmpl = malloc(tsz);
    int rc = pl_template_build(*masked, *tmpl, tsz);
    /* 3 * strlen + 1 is enough; only more than PL_TEMPLATE_MAX_TOKENS tokens cut it. */
    FUZZ_CHECK(rc == 0 || ml > PL_TEMPLATE_MAX_TOKENS, "a template of %zu bytes was cut", ml);
    return rc;
}

static void check_truncation(const char *text, size_t len, const char *full, size_t full_len,
                             size_t cap)
{
    char *small = malloc(cap ? cap : 1);
    size_t n = pl_mask_textn(text, len, small, cap);
    FUZZ_CHECK(n == full_len, "the length depends on the buffer: %zu, %zu", n, full_len);
    if (cap == 0) {
        free(small);
        return;
    }
    size_t got = strlen(small);
    FUZZ_CHECK(got < cap && memcmp(small, full, got) == 0,
               "a cut masked text is no prefix of the whole one");
    free(small);
}

static void check_signature(const char *s, size_t len, const char *tmpl)
{
    if (len < 2)
        return;
    /* Moving a byte from one field to the next changes the signature. */
    size_t cut = (unsigned char)s[0] % len;
    char *a = fuzz_cstr((const uint8_t *)s, cut);
    char *b = fuzz_cstr((const uint8_t *)s + cut, len - cut);
    char *a2 = fuzz_cstr((const uint8_t *)s, cut + 1); /* cut < len */
    char *b2 = fuzz_cstr((const uint8_t *)s + cut + 1, len - cut - 1);
    char sig1[PL_SIGNATURE_SIZE], sig2[PL_SIGNATURE_SIZE], sig3[PL_SIGNATURE_SIZE];
    FUZZ_CHECK(pl_template_signature(PL_GROUPING_VERSION, a, b, tmpl, sig1) == 0, "signature");
    FUZZ_CHECK(pl_template_signature(PL_GROUPING_VERSION, a2, b2, tmpl, sig2) == 0, "signature");
    FUZZ_CHECK(pl_template_signature(PL_GROUPING_VERSION, a, b, tmpl, sig3) == 0, "signature");
    FUZZ_CHECK(strcmp(sig1, sig3) == 0, "the same fields, two signatures");
    FUZZ_CHECK(strcmp(sig1, sig2) != 0, "(\"%s\", \"%s\") and (\"%s\", \"%s\") collide", a, b, a2,
               b2);
    FUZZ_CHECK(strlen(sig1) == 71 && strncmp(sig1, "sha256:", 7) == 0, "signature %s", sig1);
    for (size_t i = 7; i < 71; i++)
        FUZZ_CHECK(isxdigit((unsigned char)sig1[i]) && !isupper((unsigned char)sig1[i]),
                   "signature %s", sig1);
    char gid[PL_GROUP_ID_SIZE], hex[65];
    pl_template_group_id(tmpl, gid);
    pl_sha256_hex(tmpl, strlen(tmpl), hex);
    FUZZ_CHECK(strlen(gid) == 16 && strncmp(gid, hex, 16) == 0, "group id %s", gid);
    free(b2);
    free(a2);
    free(b);
    free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char *masked, *tmpl;
    int rc = template_of(text, size, &masked, &tmpl);
    size_t ml = strlen(masked);

    /* The NUL-terminated entry point masks the text before its first NUL the same way. */
    char *cstr = fuzz_cstr(data, size);
    size_t clen = strlen(cstr);
    char *cmasked = malloc(5 * clen + 1);
    size_t cml = pl_mask_text(cstr, cmasked, 5 * clen + 1);
    if (clen == size)
        FUZZ_CHECK(cml == ml && strcmp(cmasked, masked) == 0, "pl_mask_text differs");

    check_truncation(text, size, masked, ml, size ? (unsigned char)text[size - 1] % (ml + 2) : 0);
    check_truncation(text, size, masked, ml, ml);

    for (size_t p = 0; p < ml; p++) {
        size_t k = masked[p] == '<' ? pl_mask_placeholder_len(masked + p) : 0;
        FUZZ_CHECK(k == 0 || (k >= 4 && masked[p + k - 1] == '>'), "placeholder at %zu", p);
    }

    if (rc == 0) {
        /* The template does not depend on which kind matched: every placeholder swapped for
         * another gives the same template. (Masking the masked text again is no such
         * invariant: a placeholder ends in '>', not a word byte, so "2s::8c" masks to
         * "<DUR>::8c" and that again to "<DUR><IP>". The detector masks raw text once.) */
        char *swapped = strdup(masked);
        for (size_t p = 0; p < ml; p++) {
            size_t k = swapped[p] == '<' ? pl_mask_placeholder_len(swapped + p) : 0;
            if (k == 5)
                memcpy(swapped + p, (p & 1) ? "<HEX>" : "<NUM>", 5);
        }
        char *tmpl2 = malloc(3 * ml + 1);
        FUZZ_CHECK(pl_template_build(swapped, tmpl2, 3 * ml + 1) == 0 && strcmp(tmpl, tmpl2) == 0,
                   "the kind of a placeholder changes the template:\n  %s\n  %s", tmpl, tmpl2);
        /* A template is its own template, but for asides: one dropped inside another can
         * leave the outer one droppable, and the rule does not look into nested ones. */
        size_t tl0 = strlen(tmpl);
        char *tmpl3 = malloc(3 * tl0 + 1);
        FUZZ_CHECK(pl_template_build(tmpl, tmpl3, 3 * tl0 + 1) == 0, "a template of a template");
        FUZZ_CHECK(strchr(tmpl, '(') || strcmp(tmpl, tmpl3) == 0,
                   "templating a template changes it:\n  %s\n  %s", tmpl, tmpl3);
        free(tmpl3);
        free(tmpl2);
        free(swapped);

        /* pl_template_from_text is mask + build. */
        if (clen == size) {
            size_t tsz = 3 * ml + 1;
            char *direct = malloc(tsz);
            FUZZ_CHECK(pl_template_from_text(cstr, direct, tsz) == 0 && strcmp(direct, tmpl) == 0,
                       "pl_template_from_text differs");
            free(direct);
        }

        /* A template cut short is a prefix of the whole one, cut between tokens. */
        size_t tl = strlen(tmpl);
        if (tl > 0) {
            size_t cap = (size ? (unsigned char)text[0] : 0) % tl + 1;
            char *cut = malloc(cap);
            int crc = pl_template_build(masked, cut, cap);
            FUZZ_CHECK(strlen(cut) < cap && strncmp(cut, tmpl, strlen(cut)) == 0,
                       "a cut template is no prefix: \"%s\" of \"%s\"", cut, tmpl);
            FUZZ_CHECK(crc == -1, "cut to %zu of %zu bytes: rc %d", cap, tl, crc);
            free(cut);
        }
    }
    check_signature(cstr, clen, tmpl);

    free(cmasked);
    free(cstr);
    free(tmpl);
    free(masked);
    return 0;
}
