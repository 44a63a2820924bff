/* Masking of the variable parts of an error message (see mask.h). */
#include "mask.h"

#include <stdbool.h>
#include <string.h>

/* Every scanner is bounded by a cap so that a pathological line (one huge dotted word, a
 * megabyte of hex) costs O(n * cap), never O(n^2). */
#define MASK_MAX_LOCAL  64
#define MASK_MAX_HOST   253
#define MASK_MAX_LABEL  63
#define MASK_MAX_SCHEME 32
#define MASK_MAX_URL    8192
#define MASK_MAX_IPV6   64
#define MASK_MAX_HEX    4096
#define MASK_MAX_NUM    512
#define MASK_MAX_STR    8192

/* The input: bytes s[0..n). */
struct mask_in {
    const unsigned char *s;
    size_t n;
};

/* The output: writes stop (and `full` is set) at the first piece that does not fit (text is
 * cut there, a placeholder is left out whole); `len` keeps counting for the return value. */
struct mask_out {
    char *buf;
    size_t cap; /* bytes usable for text, the NUL excluded */
    size_t pos;
    size_t len;
    bool full;
};

static bool is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(unsigned c)
{
    return is_digit(c) || is_alpha(c);
}

static bool is_hex(unsigned c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Word bytes: a token must not start or end next to one. */
static bool is_word(unsigned c)
{
    return is_alnum(c) || c == '_' || c >= 0x80;
}

static unsigned at(const struct mask_in *in, size_t i)
{
    return i < in->n ? in->s[i] : 0;
}

/* True when a token may end at i: end of input or a non-word byte follows. */
static bool end_ok(const struct mask_in *in, size_t i)
{
    return i >= in->n || !is_word(in->s[i]);
}

/* Counts the digits at i (at most max). */
static size_t digits(const struct mask_in *in, size_t i, size_t max)
{
    size_t k = 0;
    while (k < max && is_digit(at(in, i + k)))
        k++;
    return k;
}

/* Exactly `count` digits at i. */
static bool digits_n(const struct mask_in *in, size_t i, size_t count)
{
    return digits(in, i, count + 1) == count;
}

/* Appends k bytes. A placeholder (whole) is written entirely or not at all; plain text is
 * cut at the last byte that fits. */
static void out_put(struct mask_out *o, const char *p, size_t k, bool whole)
{
    o->len += k;
    if (o->full)
        return;
    if (o->pos + k > o->cap) {
        if (!whole) {
            memcpy(o->buf + o->pos, p, o->cap - o->pos);
            o->pos = o->cap;
        }
        o->full = true;
        return;
    }
    memcpy(o->buf + o->pos, p, k);
    o->pos += k;
}

/* ---- hostnames and e-mail ------------------------------------------------------------------ */

/* Top-level domains that mark a dotted word as a hostname. Lists, not "any two letters",
 * because file names, config keys and code are dotted words too: main.py, jquery.min.js,
 * spark.task.id, log.info. Generic ones count after one label ("example.com"); country
 * codes after two ("cuhk.edu.hk", "www.example.de"), since many are words or extensions. */
static const char *const mask_tlds_generic[] = {
    "com",  "net",   "org",   "edu",      "gov", "mil",         "io",   "ai",   "biz",    "eu",
    "asia", "cloud", "local", "internal", "lan", "localdomain", "arpa", "corp", "example"};

static const char *const mask_tlds_country[] = {
    "uk", "de", "fr", "jp", "cn", "ru", "hk", "tw", "kr", "in", "au", "ca", "br", "nl", "it",
    "es", "se", "ch", "at", "be", "dk", "fi", "no", "ie", "nz", "sg", "za", "pl", "cz", "hu",
    "ro", "gr", "pt", "mx", "ar", "cl", "tr", "il", "ua", "us", "co", "me", "tv", "cc"};

/* Dotted labels [A-Za-z0-9-] scanned by scan_labels. */
struct mask_labels {
    size_t len;      /* bytes, 0 when there is no label */
    int count;       /* labels */
    size_t last;     /* offset of the last label from the start */
    bool last_alpha; /* the last label is letters only */
    bool last_lower; /* ... lowercase letters only */
};

static struct mask_labels scan_labels(const struct mask_in *in, size_t i)
{
    struct mask_labels l = {0, 0, 0, false, false};
    size_t j = i;
    for (;;) {
        size_t k = 0;
        bool alpha = true, lower = true;
        unsigned c;
        while (k < MASK_MAX_LABEL && (is_alnum(c = at(in, j + k)) || c == '-')) {
            if (!is_alpha(c))
                alpha = false;
            if (!(c >= 'a' && c <= 'z'))
                lower = false;
            k++;
        }
        if (k == 0 || at(in, j) == '-' || at(in, j + k - 1) == '-' || j + k - i > MASK_MAX_HOST)
            return l.count > 0 ? l : (struct mask_labels){0, 0, 0, false, false};
        l.count++;
        l.last = j - i;
        l.last_alpha = alpha;
        l.last_lower = lower;
        j += k;
        l.len = j - i;
        /* Another label only if a label byte follows the dot: "example.com." ends a sentence. */
        if (at(in, j) == '.' && is_alnum(at(in, j + 1)))
            j++;
        else
            return l;
    }
}

/* ":port" (1-5 digits, then a token end) at i: its length, else 0. */
static size_t scan_port(const struct mask_in *in, size_t i)
{
    if (at(in, i) != ':')
        return 0;
    size_t k = digits(in, i + 1, 6);
    if (k == 0 || k > 5 || !end_ok(in, i + 1 + k))
        return 0;
    return 1 + k;
}

static bool in_list(const char *const *list, size_t n, const unsigned char *p, size_t k)
{
    for (size_t i = 0; i < n; i++)
        if (list[i][0] == (char)p[0] && strlen(list[i]) == k && memcmp(list[i], p, k) == 0)
            return true;
    return false;
}

/* Last labels that make a dotted word a file name, not a host: "Foo.java:42" is a position
 * in code and "jquery.min.js" a file, although "js" could be a country. */
static const char *const mask_file_exts[] = {
    "c",   "h",    "cc",  "cpp",  "hpp",  "cxx", "go",    "rs",     "py",  "rb",   "js",    "ts",
    "jsx", "tsx",  "mjs", "java", "kt",   "kts", "scala", "groovy", "php", "cs",   "swift", "m",
    "mm",  "pm",   "sh",  "lua",  "ex",   "exs", "erl",   "hs",     "ml",  "clj",  "vue",   "so",
    "md",  "gz",   "xz",  "db",   "txt",  "log", "json",  "yaml",   "yml", "xml",  "conf",  "cfg",
    "ini", "toml", "sql", "csv",  "tsv",  "bin", "tmp",   "lock",   "pid", "sock", "jar",   "class",
    "dll", "exe",  "zip", "tar",  "html", "css", "png",   "jpg",    "gif", "pdf"};

static bool is_file_ext(const unsigned char *p, size_t k)
{
    return in_list(mask_file_exts, sizeof(mask_file_exts) / sizeof(mask_file_exts[0]), p, k);
}

static size_t match_email(const struct mask_in *in, size_t i)
{
    size_t k = 0;
    unsigned c;
    while (k <= MASK_MAX_LOCAL && (is_alnum(c = at(in, i + k)) || c == '.' || c == '_' ||
                                   c == '%' || c == '+' || c == '-'))
        k++;
    if (k == 0 || k > MASK_MAX_LOCAL || at(in, i) == '.' || at(in, i + k) != '@')
        return 0;
    struct mask_labels l = scan_labels(in, i + k + 1);
    if (l.count < 2 || !l.last_alpha || l.len - l.last < 2 || !end_ok(in, i + k + 1 + l.len))
        return 0;
    return k + 1 + l.len;
}

/* A hostname: dotted labels ending in a known top-level domain (see the lists) or, with a
 * port, any dotted name ending in a lowercase label that is no file extension. A
 * single label with a port ("db:5432") stays text: "memory:1024" is a key and a value. */
static size_t match_host(const struct mask_in *in, size_t i)
{
    struct mask_labels l = scan_labels(in, i);
    if (l.count == 0)
        return 0;
    const unsigned char *last = in->s + i + l.last;
    size_t last_len = l.len - l.last;
    size_t port = scan_port(in, i + l.len);
    bool host = false;
    if (l.count >= 2 && l.last_alpha && l.last_lower) {
        if (in_list(mask_tlds_generic, sizeof(mask_tlds_generic) / sizeof(mask_tlds_generic[0]),
                    last, last_len))
            host = true;
        else if (l.count >= 3 &&
                 in_list(mask_tlds_country,
                         sizeof(mask_tlds_country) / sizeof(mask_tlds_country[0]), last, last_len))
            host = true;
        else if (port && last_len >= 2 && !is_file_ext(last, last_len))
            host = true;
    }
    if (!host)
        return 0;
    if (port)
        return l.len + port;
    return end_ok(in, i + l.len) ? l.len : 0;
}

/* ---- URLs ---------------------------------------------------------------------------------- */

static bool url_byte(unsigned c)
{
    return c > ' ' && c != '"' && c != '\'' && c != '<' && c != '>' && c != '`' && c != 0x7f;
}

static size_t match_url(const struct mask_in *in, size_t i)
{
    if (!is_alpha(at(in, i)))
        return 0;
    size_t k = 1;
    unsigned c;
    while (k < MASK_MAX_SCHEME && (is_alnum(c = at(in, i + k)) || c == '+' || c == '.' || c == '-'))
        k++;
    if (at(in, i + k) != ':' || at(in, i + k + 1) != '/' || at(in, i + k + 2) != '/')
        return 0;
    size_t j = i + k + 3;
    while (j - i < MASK_MAX_URL && url_byte(at(in, j)))
        j++;
    /* Sentence punctuation after a URL is not part of it. */
    while (j > i + k + 3 && strchr(".,;:!?)]}", (int)at(in, j - 1)))
        j--;
    if (j == i + k + 3)
        return 0;
    return j - i;
}

/* ---- IP addresses -------------------------------------------------------------------------- */

/* A dotted quad at i with every part <= 255: its length, else 0. No boundary check. */
static size_t scan_ipv4(const struct mask_in *in, size_t i)
{
    size_t j = i;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (at(in, j) != '.')
                return 0;
            j++;
        }
        size_t k = digits(in, j, 4);
        if (k == 0 || k > 3)
            return 0;
        int v = 0;
        for (size_t d = 0; d < k; d++)
            v = v * 10 + (int)(at(in, j + d) - '0');
        if (v > 255)
            return 0;
        j += k;
    }
    return j - i;
}

static size_t match_ipv4(const struct mask_in *in, size_t i)
{
    size_t k = scan_ipv4(in, i);
    if (k == 0)
        return 0;
    /* 1.2.3.4.5 is not an address. */
    if (at(in, i + k) == '.' && is_digit(at(in, i + k + 1)))
        return 0;
    size_t p = scan_port(in, i + k);
    if (p)
        return k + p;
    return end_ok(in, i + k) ? k : 0;
}

/* An IPv6 address of exactly the bytes [i, i+k): hex groups of 1-4, at most one "::", eight
 * groups without it (fewer with it), an optional dotted quad as the last two groups. A digit
 * is required so that C++ names like "Class::add" are not addresses. */
static bool valid_ipv6(const struct mask_in *in, size_t i, size_t k)
{
    int groups = 0, compress = 0;
    bool digit = false;
    size_t j = i, end = i + k;
    if (k < 2)
        return false;
    if (at(in, j) == ':') {
        if (at(in, j + 1) != ':')
            return false;
        compress = 1;
        j += 2;
    }
    while (j < end) {
        size_t g = 0;
        while (j + g < end && is_hex(at(in, j + g))) {
            if (is_digit(at(in, j + g)))
                digit = true;
            g++;
        }
        if (j + g < end && at(in, j + g) == '.') {
            /* Embedded IPv4 must close the address. */
            if (scan_ipv4(in, j) != end - j)
                return false;
            groups += 2;
            digit = true;
            j = end;
            break;
        }
        if (g == 0 || g > 4)
            return false;
        groups++;
        j += g;
        if (j == end)
            break;
        if (at(in, j) != ':')
            return false;
        j++;
        if (j < end && at(in, j) == ':') {
            if (compress)
                return false;
            compress = 1;
            j++;
        } else if (j == end) {
            return false; /* a single trailing ':' */
        }
    }
    if (!digit)
        return false;
    return compress ? (groups >= 1 && groups <= 7) : groups == 8;
}

static size_t match_ipv6(const struct mask_in *in, size_t i)
{
    bool bracket = at(in, i) == '[';
    size_t s = i + (bracket ? 1 : 0);
    size_t k = 0;
    unsigned c;
    while (k < MASK_MAX_IPV6 && (is_hex(c = at(in, s + k)) || c == ':' || c == '.'))
        k++;
    /* A ':' or '.' just after the address belongs to the sentence. */
    while (k > 0 && (at(in, s + k - 1) == '.' ||
                     (at(in, s + k - 1) == ':' && (k < 2 || at(in, s + k - 2) != ':'))))
        k--;
    if (k == 0 || !valid_ipv6(in, s, k))
        return 0;
    size_t j = s + k;
    if (bracket) {
        if (at(in, j) != ']')
            return 0;
        j++;
        j += scan_port(in, j);
        return j - i;
    }
    /* A zone id: fe80::1%eth0. */
    if (at(in, j) == '%' && is_alnum(at(in, j + 1))) {
        j++;
        while (j - i < MASK_MAX_IPV6 && (is_alnum(at(in, j)) || at(in, j) == '.'))
            j++;
    }
    return end_ok(in, j) ? j - i : 0;
}

/* ---- UUIDs, hashes, hex ---------------------------------------------------------------------- */

static size_t hex_run(const struct mask_in *in, size_t i, size_t max)
{
    size_t k = 0;
    while (k < max && is_hex(at(in, i + k)))
        k++;
    return k;
}

static size_t match_uuid(const struct mask_in *in, size_t i)
{
    static const size_t parts[] = {8, 4, 4, 4, 12};
    size_t j = i;
    for (size_t p = 0; p < 5; p++) {
        if (p > 0) {
            if (at(in, j) != '-')
                return 0;
            j++;
        }
        if (hex_run(in, j, parts[p] + 1) != parts[p])
            return 0;
        j += parts[p];
    }
    return end_ok(in, j) ? j - i : 0;
}

static size_t match_hash(const struct mask_in *in, size_t i)
{
    size_t k = hex_run(in, i, 65);
    if ((k == 32 || k == 40 || k == 64) && end_ok(in, i + k))
        return k;
    return 0;
}

/* A MAC address: six two-digit hex groups joined by ':' or '-'. */
static size_t match_mac(const struct mask_in *in, size_t i)
{
    unsigned sep = at(in, i + 2);
    if (sep != ':' && sep != '-')
        return 0;
    for (size_t g = 0; g < 6; g++) {
        size_t j = i + 3 * g;
        if (hex_run(in, j, 3) != 2 || (g < 5 && at(in, j + 2) != sep))
            return 0;
    }
    return end_ok(in, i + 17) ? 17 : 0;
}

static size_t match_hex(const struct mask_in *in, size_t i)
{
    if (at(in, i) == '0' && (at(in, i + 1) == 'x' || at(in, i + 1) == 'X')) {
        size_t k = hex_run(in, i + 2, MASK_MAX_HEX);
        if (k > 0 && end_ok(in, i + 2 + k))
            return 2 + k;
        return 0;
    }
    size_t k = hex_run(in, i, MASK_MAX_HEX);
    if (k < 8 || !end_ok(in, i + k))
        return 0;
    bool digit = false, letter = false;
    for (size_t d = 0; d < k; d++) {
        if (is_digit(at(in, i + d)))
            digit = true;
        else
            letter = true;
    }
    return digit && letter ? k : 0;
}

/* ---- dates and times ------------------------------------------------------------------------ */

static const char mask_months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
static const char mask_days[] = "MonTueWedThuFriSatSun";

/* A three-letter name from list (Jan, Mon, ...) at i followed by a space. */
static bool name3(const struct mask_in *in, size_t i, const char *list)
{
    if (i + 3 >= in->n || in->s[i + 3] != ' ')
        return false;
    for (const char *p = list; *p; p += 3)
        if (memcmp(p, in->s + i, 3) == 0)
            return true;
    return false;
}

/* [+-]hh[:]mm or Z after a time: its length, else 0. */
static size_t scan_zone(const struct mask_in *in, size_t i)
{
    if (at(in, i) == 'Z')
        return 1;
    if (at(in, i) != '+' && at(in, i) != '-')
        return 0;
    if (!digits_n(in, i + 1, 2) && !digits_n(in, i + 1, 4))
        return 0;
    if (digits_n(in, i + 1, 4))
        return 5;
    if (at(in, i + 3) == ':' && digits_n(in, i + 4, 2))
        return 6;
    return 3;
}

/* hh:mm[:ss[.fff]] (sep ':') or hh.mm.ss[.ffffff] (sep '.'), with 1-2 digit hours. */
static size_t scan_time(const struct mask_in *in, size_t i, unsigned sep, bool need_seconds)
{
    size_t h = digits(in, i, 3);
    if (h < 1 || h > 2 || at(in, i + h) != sep || !digits_n(in, i + h + 1, 2))
        return 0;
    size_t j = i + h + 3;
    if (at(in, j) == sep && digits_n(in, j + 1, 2)) {
        j += 3;
        if ((at(in, j) == '.' || at(in, j) == ',') && digits(in, j + 1, 10) > 0)
            j += 1 + digits(in, j + 1, 10);
    } else if (need_seconds) {
        return 0;
    }
    return j - i;
}

static size_t match_date(const struct mask_in *in, size_t i)
{
    /* yyyy-mm-dd or yyyy/mm/dd, then a time after 'T', ' ' or '-' (BGL), then a zone. */
    if (digits_n(in, i, 4) && (at(in, i + 4) == '-' || at(in, i + 4) == '/') &&
        digits_n(in, i + 5, 2) && at(in, i + 7) == at(in, i + 4) && digits_n(in, i + 8, 2)) {
        size_t j = i + 10;
        unsigned c = at(in, j);
        if (c == 'T' || c == ' ' || c == '-') {
            size_t t = scan_time(in, j + 1, ':', false);
            if (t == 0 && c == '-')
                t = scan_time(in, j + 1, '.', true);
            if (t > 0)
                j += 1 + t;
        }
        j += scan_zone(in, j);
        return end_ok(in, j) ? j - i : 0;
    }
    /* Syslog: [Www ]Mmm dd hh:mm:ss[ yyyy]. */
    size_t j = i;
    if (name3(in, j, mask_days))
        j += 4;
    if (name3(in, j, mask_months)) {
        j += 4;
        if (at(in, j) == ' ')
            j++;
        size_t d = digits(in, j, 3);
        if (d >= 1 && d <= 2 && at(in, j + d) == ' ') {
            size_t t = scan_time(in, j + d + 1, ':', true);
            if (t > 0) {
                j += d + 1 + t;
                if (at(in, j) == ' ' && digits_n(in, j + 1, 4) && end_ok(in, j + 5))
                    j += 5;
                return end_ok(in, j) ? j - i : 0;
            }
        }
        return 0;
    }
    /* A bare time. */
    size_t t = scan_time(in, i, ':', false);
    if (t > 0) {
        j = i + t;
        j += scan_zone(in, j);
        if (end_ok(in, j) && !(at(in, j) == ':' && is_alnum(at(in, j + 1))))
            return j - i;
    }
    return 0;
}

/* ---- numbers and durations ------------------------------------------------------------------ */

/* A number at i: [-+]digits[.digits...][e[-+]digits]. Sets *dots to the count of '.'.
 * @returns its length, else 0. No boundary check. */
static size_t scan_number(const struct mask_in *in, size_t i, int *dots)
{
    size_t j = i;
    *dots = 0;
    if (at(in, j) == '-' || at(in, j) == '+')
        j++;
    size_t k = digits(in, j, MASK_MAX_NUM);
    if (k == 0)
        return 0;
    j += k;
    while (at(in, j) == '.' && is_digit(at(in, j + 1)) && j - i < MASK_MAX_NUM) {
        j += 1 + digits(in, j + 1, MASK_MAX_NUM);
        (*dots)++;
    }
    if (*dots <= 1 && (at(in, j) == 'e' || at(in, j) == 'E')) {
        size_t e = j + 1;
        if (at(in, e) == '-' || at(in, e) == '+')
            e++;
        size_t ed = digits(in, e, 4);
        if (ed > 0 && ed <= 3 && end_ok(in, e + ed))
            j = e + ed;
    }
    return j - i;
}

/* Duration units; the longest that matches wins ("ms" over "m", "minutes" over "min"). */
static const char *const mask_units[] = {
    "ns",          "us",           "\xc2\xb5s",   "ms",   "msec",  "msecs", "s",      "sec",
    "secs",        "second",       "seconds",     "m",    "min",   "mins",  "minute", "minutes",
    "h",           "hr",           "hrs",         "hour", "hours", "d",     "day",    "days",
    "nanoseconds", "microseconds", "milliseconds"};

static size_t scan_unit(const struct mask_in *in, size_t i)
{
    size_t best = 0;
    for (size_t u = 0; u < sizeof(mask_units) / sizeof(mask_units[0]); u++) {
        if (mask_units[u][0] != (char)at(in, i))
            continue;
        size_t k = strlen(mask_units[u]);
        if (k > best && i + k <= in->n && memcmp(in->s + i, mask_units[u], k) == 0)
            best = k;
    }
    return best;
}

static size_t match_duration(const struct mask_in *in, size_t i)
{
    size_t j = i;
    int parts = 0;
    /* 1h30m5s: several number+unit parts, each unit ending on a digit or the token end. */
    for (;;) {
        int dots;
        size_t k = scan_number(in, j, &dots);
        if (k == 0 || dots > 1 || (parts > 0 && (at(in, j) == '-' || at(in, j) == '+')))
            break;
        size_t u = scan_unit(in, j + k);
        if (u == 0) {
            /* "5 seconds", "0.6 sec.": one space before a unit of two letters or more ("us"
             * excepted: "5 us" reads as a word). */
            if (parts > 0 || at(in, j + k) != ' ')
                break;
            u = scan_unit(in, j + k + 1);
            if (u < 2 || (u == 2 && at(in, j + k + 1) == 'u') || !end_ok(in, j + k + 1 + u))
                break;
            return k + 1 + u;
        }
        if (!end_ok(in, j + k + u) && !is_digit(at(in, j + k + u)))
            break;
        j += k + u;
        parts++;
        if (end_ok(in, j))
            return j - i;
    }
    return 0;
}

static size_t match_number(const struct mask_in *in, size_t i)
{
    int dots;
    size_t k = scan_number(in, i, &dots);
    if (k == 0 || !end_ok(in, i + k))
        return 0;
    return k;
}

/* ---- quoted values -------------------------------------------------------------------------- */

static size_t match_quoted(const struct mask_in *in, size_t i)
{
    unsigned q = at(in, i);
    if ((q != '"' && q != '\'') || i == 0 || in->s[i - 1] != '=')
        return 0;
    for (size_t j = i + 1; j < in->n && j - i < MASK_MAX_STR; j++) {
        if (in->s[j] == '\\')
            j++;
        else if (in->s[j] == q)
            return j + 1 - i;
    }
    return 0;
}

/* ---- the scanner ---------------------------------------------------------------------------- */

typedef size_t (*mask_matcher)(const struct mask_in *in, size_t i);

/* architecture §7 order: the first matcher that accepts a token at a position wins. MAC addresses
 * (hex ids of a fixed shape, like UUIDs and hashes) go before dates and durations, which
 * would take their first groups ("12:34:56", "5d"). Floats, versions and integers share
 * match_number (the longest number first). */
static const struct {
    mask_matcher match;
    const char *token;
} mask_kinds[] = {
    {match_email, "<EMAIL>"},  {match_url, "<URL>"}, {match_host, "<HOST>"},
    {match_ipv4, "<IP>"},      {match_ipv6, "<IP>"}, {match_uuid, "<UUID>"},
    {match_hash, "<HASH>"},    {match_mac, "<HEX>"}, {match_date, "<TS>"},
    {match_duration, "<DUR>"}, {match_hex, "<HEX>"}, {match_number, "<NUM>"},
    {match_quoted, "<STR>"},
};

/* Tokens start at word starts. A dot between word bytes joins them ("v1.2", "invoke.434",
 * "NameSystem.addBlock"): what follows it is part of a dotted name, not a new token. */
static bool token_start(const struct mask_in *in, size_t i)
{
    if (i == 0)
        return true;
    if (is_word(in->s[i - 1]))
        return false;
    return !(in->s[i - 1] == '.' && i >= 2 && is_word(in->s[i - 2]) && is_word(in->s[i]));
}

/* Most words are plain letters followed by a space or punctuation: no kind can start there
 * (all need a digit, '@', '.', ':', '-' or a quote after the letters, except a month or day
 * name and an all-letter hex hash), so the matchers are skipped. A speed-up only: the output
 * is the same without it. @returns the length of such a word, else 0. */
static size_t plain_word(const struct mask_in *in, size_t i)
{
    size_t k = 0;
    while (is_alpha(at(in, i + k)))
        k++;
    unsigned c = at(in, i + k);
    if (k == 0 || k == 3 || k == 32 || k == 40 || k == 64)
        return 0;
    if (i + k < in->n && c != ' ' && c != ',' && c != ';' && c != '(' && c != ')' && c != '=')
        return 0;
    return k;
}

/* Cheap first-byte filter: no kind starts with anything else. */
static bool may_start(unsigned c)
{
    return is_alnum(c) || c == '-' || c == '+' || c == '[' || c == ':' || c == '"' || c == '\'';
}

size_t pl_mask_textn(const char *text, size_t len, char *out, size_t outsz)
{
    struct mask_in in = {(const unsigned char *)text, len};
    struct mask_out o = {out, outsz > 0 ? outsz - 1 : 0, 0, 0, outsz == 0};
    size_t i = 0;
    while (i < in.n) {
        unsigned c = in.s[i];
        if (token_start(&in, i) && may_start(c) && plain_word(&in, i) == 0) {
            size_t k = 0, m;
            for (m = 0; m < sizeof(mask_kinds) / sizeof(mask_kinds[0]); m++)
                if ((k = mask_kinds[m].match(&in, i)) > 0)
                    break;
            if (k > 0) {
                out_put(&o, mask_kinds[m].token, strlen(mask_kinds[m].token), true);
                i += k;
                continue;
            }
        }
        /* No token here: copy the rest of the word (tokens start only at word starts). */
        size_t j = i + 1;
        if (is_word(c))
            while (j < in.n && is_word(in.s[j]))
                j++;
        if (c == '\0')
            out_put(&o, " ", 1, false);
        else
            out_put(&o, text + i, j - i, false);
        i = j;
    }
    if (outsz > 0)
        out[o.pos] = '\0';
    return o.len;
}

size_t pl_mask_placeholder_len(const char *s)
{
    if (s[0] != '<')
        return 0;
    for (size_t m = 0; m < sizeof(mask_kinds) / sizeof(mask_kinds[0]); m++) {
        size_t k = strlen(mask_kinds[m].token);
        if (strncmp(s, mask_kinds[m].token, k) == 0)
            return k;
    }
    return 0;
}

size_t pl_mask_text(const char *in, char *out, size_t outsz)
{
    return pl_mask_textn(in, strlen(in), out, outsz);
}
