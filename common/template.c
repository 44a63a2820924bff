/* Templates of masked error messages.
 *
 * Why message-local rules and not a Drain tree that learns: Drain decides whether a token is
 * variable by comparing the message with the templates it has already seen, so the group of
 * a message depends on which messages arrived before it. The detector runs as several
 * replicas, restarts, and replays Kafka partitions; if the signature depended on arrival
 * order, two replicas (or one replica before and after a restart) would file the same failure
 * under different signatures, and counts, alerts and proposals keyed on them would split.
 * So a template here is a pure function of the message text: tokenise, then decide for each
 * token from the token itself (and its immediate neighbours in the same message) whether it
 * is a variable. The same message always yields the same template, on any replica, at any
 * time. The price is that a variable made of plain words (a user name, a program name) stays
 * in the template; the rules below are chosen to make that rare for real error messages.
 * (A Drain-style tree may still index these templates for lookup; it must not rewrite them.)
 *
 * The rules, all message-local and applied in a fixed order:
 *  - tokens: words, delimiters = , ; : ( ) [ ] { } " ' | (kept as they are), dot leaders;
 *    whitespace runs become one space;
 *  - a word is a variable when it holds a digit or a mask placeholder, is a path, or is a
 *    reverse-DNS identifier; the word after "for user" / "as user" is a variable;
 *  - a size unit (KB, MiB, bytes, ...) after a variable joins it; an aside "( ... )" after a
 *    space that holds only variables, or nothing, is dropped;
 *  - consecutive variables, also joined by ',' or ':', are written as one PL_TEMPLATE_VAR.
 * Measured with bench/loghub (grouping accuracy on the Loghub-2k sets).
 */
#include "template.h"

#include "mask.h"
#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bytes that end a word and are kept in the template as they are. */
static bool tpl_is_delim(unsigned c)
{
    return c == '=' || c == ',' || c == ';' || c == ':' || c == '(' || c == ')' || c == '[' ||
           c == ']' || c == '{' || c == '}' || c == '"' || c == '\'' || c == '|';
}

static bool tpl_is_space(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

enum tpl_kind { TPL_WORD, TPL_DELIM, TPL_DOTS };

/* One token of the message: a word, a delimiter byte or a run of dots (leaders). */
struct tpl_unit {
    size_t off, len;
    enum tpl_kind kind;
    bool space;   /* whitespace before it */
    bool var;     /* a variable (words only) */
    bool dropped; /* removed by a rule below */
};

#define TPL_STACK_UNITS 256

/* Size units that belong to the number before them: "5.2 KB" and "93 B" are one value. */
static const char *const tpl_size_units[] = {"B",  "kB",  "KB",  "MB",  "GB",  "TB",
                                             "PB", "KiB", "MiB", "GiB", "TiB", "bytes"};

static bool tpl_word_eq(const char *w, size_t k, const char *lit)
{
    return strlen(lit) == k && memcmp(w, lit, k) == 0;
}

static bool tpl_is_size_unit(const char *w, size_t k)
{
    for (size_t i = 0; i < sizeof(tpl_size_units) / sizeof(tpl_size_units[0]); i++)
        if (tpl_word_eq(w, k, tpl_size_units[i]))
            return true;
    return false;
}

/* A file system path: "/var/log/x", "./run", "../lib", "~/src" or "a/b/c". */
static bool tpl_is_path(const char *w, size_t k)
{
    if (k >= 2 && w[0] == '/')
        return true;
    if ((k >= 2 && w[0] == '~' && w[1] == '/') || (k >= 3 && w[0] == '.' && w[1] == '/') ||
        (k >= 4 && w[0] == '.' && w[1] == '.' && w[2] == '/'))
        return true;
    int slashes = 0;
    for (size_t i = 0; i < k; i++)
        if (w[i] == '/')
            slashes++;
    return slashes >= 2;
}

/* A reverse-DNS identifier, "com.apple.icloud.fmfd" or "org.example.billing.Job": a
 * bundle, service, logger or class name, so a value of the message. (The detector keeps the
 * exception type in its own signature field.) */
static bool tpl_is_reverse_dns(const char *w, size_t k)
{
    static const char *const roots[] = {"com.", "org.", "net.", "io.", "edu.", "gov."};
    for (size_t r = 0; r < sizeof(roots) / sizeof(roots[0]); r++) {
        size_t rl = strlen(roots[r]);
        if (k <= rl || memcmp(w, roots[r], rl) != 0)
            continue;
        const char *dot = memchr(w + rl, '.', k - rl);
        return dot && dot > w + rl && dot + 1 < w + k;
    }
    return false;
}

/* Decides from the word alone whether it is a variable: it holds a digit or a mask
 * placeholder, or it is a path or a reverse-DNS identifier. */
static bool tpl_word_is_var(const char *w, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        unsigned c = (unsigned char)w[i];
        if (c >= '0' && c <= '9')
            return true;
        if (c == '<' && pl_mask_placeholder_len(w + i) > 0)
            return true;
    }
    return tpl_is_path(w, k) || tpl_is_reverse_dns(w, k);
}

/* Dot leaders or an ellipsis at s: two dots or more, not "../" (a path). @returns their
 * length, else 0. */
static size_t tpl_leader_len(const char *s)
{
    size_t k = 0;
    while (s[k] == '.')
        k++;
    return k >= 2 && s[k] != '/' ? k : 0;
}

/* Splits s into units (at most cap; @returns the count, or cap + 1 when there are more). */
static size_t tpl_tokenise(const char *s, struct tpl_unit *u, size_t cap)
{
    size_t n = 0, i = 0;
    bool space = false;
    while (s[i]) {
        unsigned c = (unsigned char)s[i];
        if (tpl_is_space(c)) {
            space = true;
            i++;
            continue;
        }
        size_t j = i + 1;
        enum tpl_kind kind = TPL_DELIM;
        size_t dots = tpl_leader_len(s + i);
        if (dots > 0) {
            kind = TPL_DOTS;
            j = i + dots;
        } else if (!tpl_is_delim(c)) {
            kind = TPL_WORD;
            /* A word ends at a space, a delimiter or dot leaders ("depth.....0"); a path
             * keeps the '=' and ':' of its query or line number ("/a?b=1", "/a/b:12"). */
            bool path = c == '/';
            while (s[j] && !tpl_is_space((unsigned char)s[j])) {
                if (s[j] == '.') {
                    size_t k = 1;
                    while (s[j + k] == '.')
                        k++;
                    if (k >= 2 && s[j + k] != '/')
                        break;
                    j += k;
                    continue;
                }
                if (tpl_is_delim((unsigned char)s[j]) &&
                    !(path && (s[j] == '=' || s[j] == ':') && s[j + 1] &&
                      !tpl_is_space((unsigned char)s[j + 1]) &&
                      !tpl_is_delim((unsigned char)s[j + 1])))
                    break;
                j++;
            }
        }
        if (n == cap)
            return cap + 1;
        u[n] = (struct tpl_unit){i, j - i, kind, space, false, false};
        if (kind == TPL_WORD)
            u[n].var = tpl_word_is_var(s + i, j - i);
        n++;
        space = false;
        i = j;
    }
    return n;
}

static bool tpl_is(const char *s, const struct tpl_unit *u, char c)
{
    return u->kind == TPL_DELIM && s[u->off] == c;
}

static bool tpl_word_ieq(const char *s, const struct tpl_unit *u, const char *lit)
{
    return u->kind == TPL_WORD && strlen(lit) == u->len &&
           strncasecmp(s + u->off, lit, u->len) == 0;
}

/* The message-local rules, applied in a fixed order. */
static void tpl_apply_rules(const char *s, struct tpl_unit *u, size_t n)
{
    /* "for user NAME", "as user NAME" (PAM, sshd, database logins): the name is a value. */
    for (size_t i = 2; i < n; i++)
        if (u[i].kind == TPL_WORD && u[i].space && u[i - 1].space &&
            (tpl_word_ieq(s, &u[i - 1], "user") || tpl_word_ieq(s, &u[i - 1], "username")) &&
            (tpl_word_ieq(s, &u[i - 2], "for") || tpl_word_ieq(s, &u[i - 2], "as")))
            u[i].var = true;
    /* A size unit after a variable is part of it. */
    for (size_t i = 1; i < n; i++)
        if (u[i].kind == TPL_WORD && u[i - 1].kind == TPL_WORD && u[i - 1].var &&
            tpl_is_size_unit(s + u[i].off, u[i].len))
            u[i].var = true;
    /* An aside in parentheses that holds only variables, or nothing, is dropped: "(1.2 KB)"
     * or "()" adds no kind of failure, only its details. A call "f(x)" (no space before the
     * parenthesis) is kept. */
    for (size_t i = 0; i < n; i++) {
        if (!tpl_is(s, &u[i], '(') || (i > 0 && !u[i].space))
            continue;
        size_t j = i + 1;
        bool only_vars = true;
        /* Nested parentheses end the search: that keeps the rule linear. */
        while (j < n && !tpl_is(s, &u[j], ')') && !tpl_is(s, &u[j], '(')) {
            if ((u[j].kind == TPL_WORD && !u[j].var) || u[j].kind == TPL_DOTS)
                only_vars = false;
            j++;
        }
        if (j == n || !tpl_is(s, &u[j], ')') || !only_vars)
            continue;
        for (size_t k = i; k <= j; k++)
            u[k].dropped = true;
        if (j + 1 < n)
            u[j + 1].space = u[j + 1].space || u[i].space;
        i = j;
    }
}

/* The template being written: writes stop at the first unit that does not fit. */
struct tpl_out {
    char *buf;
    size_t cap;
    size_t pos;
    bool full;
};

static void tpl_put(struct tpl_out *o, const char *p, size_t k)
{
    if (o->full)
        return;
    if (o->pos + k > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->pos, p, k);
    o->pos += k;
}

/* Writes the units, merging a run of variables joined by spaces, ',' or ':' into one
 * variable: a date split into words, a list of ids or host:port then have one shape
 * whatever their length. */
static void tpl_render(const char *s, const struct tpl_unit *u, size_t n, struct tpl_out *o)
{
    bool last_var = false;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        if (u[i].dropped) {
            space = space || u[i].space;
            continue;
        }
        space = space || u[i].space;
        if (u[i].kind == TPL_WORD && u[i].var) {
            if (!last_var) {
                if (space && o->pos > 0)
                    tpl_put(o, " ", 1);
                tpl_put(o, PL_TEMPLATE_VAR, strlen(PL_TEMPLATE_VAR));
            }
            last_var = true;
            space = false;
            continue;
        }
        /* A joiner between two variables disappears with them. */
        if (last_var && (tpl_is(s, &u[i], ',') || tpl_is(s, &u[i], ':'))) {
            size_t j = i + 1;
            while (j < n && u[j].dropped)
                j++;
            if (j < n && u[j].kind == TPL_WORD && u[j].var) {
                space = false;
                continue;
            }
        }
        if (space && o->pos > 0)
            tpl_put(o, " ", 1);
        if (u[i].kind == TPL_DOTS)
            tpl_put(o, "...", 3);
        else
            tpl_put(o, s + u[i].off, u[i].len);
        last_var = false;
        space = false;
    }
}

int pl_template_build(const char *masked, char *out, size_t outsz)
{
    if (outsz == 0)
        return -1;
    struct tpl_unit stack_units[TPL_STACK_UNITS];
    struct tpl_unit *u = stack_units;
    size_t n = tpl_tokenise(masked, u, TPL_STACK_UNITS);
    bool cut = false;
    if (n > TPL_STACK_UNITS) {
        u = malloc(PL_TEMPLATE_MAX_TOKENS * sizeof(*u));
        if (!u) {
            out[0] = '\0';
            return -1;
        }
        n = tpl_tokenise(masked, u, PL_TEMPLATE_MAX_TOKENS);
        if (n > PL_TEMPLATE_MAX_TOKENS) {
            n = PL_TEMPLATE_MAX_TOKENS;
            cut = true;
        }
    }
    tpl_apply_rules(masked, u, n);
    struct tpl_out o = {out, outsz - 1, 0, false};
    tpl_render(masked, u, n, &o);
    out[o.pos] = '\0';
    if (u != stack_units)
        free(u);
    return o.full || cut ? -1 : 0;
}

int pl_template_from_text(const char *text, char *out, size_t outsz)
{
    size_t n = strlen(text);
    size_t msz = 5 * n + 1;
    char *masked = malloc(msz);
    if (!masked) {
        if (outsz > 0)
            out[0] = '\0';
        return -1;
    }
    pl_mask_text(text, masked, msz);
    int rc = pl_template_build(masked, out, outsz);
    free(masked);
    return rc;
}

/* Appends "<decimal length>:<bytes>\n" at p: the length prefix makes the join unambiguous. */
static char *tpl_field(char *p, const char *s, size_t k)
{
    p += snprintf(p, 24, "%zu:", k);
    memcpy(p, s, k);
    p += k;
    *p++ = '\n';
    return p;
}

int pl_template_signature(int grouping_version, const char *project_id, const char *error_type,
                          const char *tmpl, char out[PL_SIGNATURE_SIZE])
{
    const char *fields[3] = {project_id ? project_id : "", error_type ? error_type : "",
                             tmpl ? tmpl : ""};
    size_t lens[3];
    size_t total = 64;
    for (int f = 0; f < 3; f++) {
        lens[f] = strlen(fields[f]);
        total += lens[f] + 24;
    }
    char *buf = malloc(total);
    if (!buf) {
        out[0] = '\0';
        return -1;
    }
    char version[16];
    int vlen = snprintf(version, sizeof(version), "%d", grouping_version);
    char *p = tpl_field(buf, version, (size_t)vlen);
    for (int f = 0; f < 3; f++)
        p = tpl_field(p, fields[f], lens[f]);
    char hex[65];
    pl_sha256_hex(buf, (size_t)(p - buf), hex);
    free(buf);
    snprintf(out, PL_SIGNATURE_SIZE, "sha256:%s", hex);
    return 0;
}

void pl_template_group_id(const char *tmpl, char out[PL_GROUP_ID_SIZE])
{
    char hex[65];
    pl_sha256_hex(tmpl, strlen(tmpl), hex);
    memcpy(out, hex, PL_GROUP_ID_SIZE - 1);
    out[PL_GROUP_ID_SIZE - 1] = '\0';
}
