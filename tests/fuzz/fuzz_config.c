/* libFuzzer target: service configuration (config.c). The input is a libconfig file, loaded
 * from a memfd; an accepted file must mean exactly what its settings mean one by one through
 * pl_config_set (the environment's path). Its first three lines are also tried as one
 * pl_config_set(section, key, value), which must leave the config untouched when it fails. */
#define _GNU_SOURCE /* memfd_create */
#include "fuzz.h"

#include "config.h"

#include <ctype.h>
#include <libconfig.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

/* libconfig 1.5 leaks the text of a token its parser refuses (a file that is only
 * "" loses 1 byte): its leak, not ours, and every run would stop at it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static int memfd = -1, canon_fd = -1;
static char path[64], canon_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* PL_<SECTION>_<KEY> variables would be applied after the file: none here. */
    for (size_t i = 0; environ[i];)
        if (strncmp(environ[i], "PL_", 3) == 0) {
            char name[256];
            size_t n = strcspn(environ[i], "=");
            snprintf(name, sizeof(name), "%.*s", (int)n, environ[i]);
            unsetenv(name);
        } else {
            i++;
        }
    memfd = memfd_create("pl-fuzz-config", 0);
    if (memfd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    canon_fd = memfd_create("pl-fuzz-config-canonical", 0);
    if (canon_fd < 0)
        abort();
    snprintf(canon_path, sizeof(canon_path), "/proc/self/fd/%d", canon_fd);
    return 0;
}

static void write_file(int fd, const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
}

/* The accepted file's settings applied one by one, as environment overrides are. */
static void check_same_as_set(const char *text, const struct pl_config *loaded)
{
    config_t lc;
    config_init(&lc);
    FUZZ_CHECK(config_read_string(&lc, text) == CONFIG_TRUE,
               "libconfig refuses as a string what it took as a file: %s", config_error_text(&lc));
    struct pl_config cfg;
    pl_config_defaults(&cfg, "api");
    config_setting_t *root = config_root_setting(&lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        for (int j = 0; j < config_setting_length(sec); j++) {
            config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            char value[64], err[512];
            const char *v = value;
            switch (config_setting_type(s)) {
            case CONFIG_TYPE_INT:
            case CONFIG_TYPE_INT64:
                snprintf(value, sizeof(value), "%lld", (long long)config_setting_get_int64(s));
                break;
            case CONFIG_TYPE_BOOL:
                v = config_setting_get_bool(s) ? "true" : "false";
                break;
            case CONFIG_TYPE_STRING:
                v = config_setting_get_string(s);
                break;
            default:
                FUZZ_CHECK(0, "setting %s.%s of type %d was accepted", config_setting_name(sec),
                           config_setting_name(s), config_setting_type(s));
            }
            int rc = pl_config_set(&cfg, config_setting_name(sec), config_setting_name(s), v, err,
                                   sizeof(err));
            FUZZ_CHECK(rc == 0, "the file took %s.%s = \"%s\", pl_config_set refuses it: %s",
                       config_setting_name(sec), config_setting_name(s), v, err);
        }
    }
    config_destroy(&lc);
    FUZZ_CHECK(memcmp(&cfg, loaded, sizeof(cfg)) == 0,
               "the file and its settings one by one give different configs");
}

/* True when some literal could be one libconfig wraps: ten decimal digits or nine hex ones. */
static bool long_literal(const uint8_t *data, size_t size)
{
    size_t run = 0;
    for (size_t i = 0; i < size; i++) {
        run = isxdigit(data[i]) ? run + 1 : 0;
        if (run >= 9)
            return true;
    }
    return false;
}

/* A refused file is refused in libconfig's own canonical form too (one setting a line, as
 * config_write puts it): what the file says, not how it is laid out, decides. */
static void check_refused_canonical(const char *text, const char *err)
{
    config_t lc;
    config_init(&lc);
    if (config_read_string(&lc, text) == CONFIG_TRUE) {
        char *canon = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&canon, &len);
        config_write(&lc, f);
        fclose(f);
        write_file(canon_fd, (const uint8_t *)canon, len);
        struct pl_config cfg;
        char err2[1024];
        pl_config_defaults(&cfg, "api");
        FUZZ_CHECK(pl_config_load(&cfg, canon_path, err2, sizeof(err2)) != 0,
                   "a file refused (%s) means the same as one taken:\n%s", err, canon);
        free(canon);
    }
    config_destroy(&lc);
}

static void check_load(const uint8_t *data, size_t size)
{
    /* @include reads other files (a device would block): not this target's input. */
    if (memmem(data, size, "@include", 8))
        return;
    write_file(memfd, data, size);
    struct pl_config cfg;
    char err[1024] = "";
    pl_config_defaults(&cfg, "api");
    if (pl_config_load(&cfg, path, err, sizeof(err)) != 0) {
        FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0, "the error names no file: %s", err);
        if (!memchr(data, '\0', size) && !long_literal(data, size)) {
            char *text = fuzz_cstr(data, size);
            check_refused_canonical(text, err);
            free(text);
        }
        return;
    }
    /* Every string setting stays terminated within its buffer. */
#define TERMINATED(field) FUZZ_CHECK(memchr(cfg.field, '\0', sizeof(cfg.field)), #field)
    TERMINATED(log_level);
    TERMINATED(http_bind);
    TERMINATED(pg_dsn);
    TERMINATED(kafka_brokers);
    TERMINATED(kafka_group_id);
    TERMINATED(llm_base_url);
    TERMINATED(llm_api_key);
    TERMINATED(llm_model);
    TERMINATED(ui_proxy_header);
    TERMINATED(ui_proxy_addresses);
#undef TERMINATED
    if (!memchr(data, '\0', size)) {
        char *text = fuzz_cstr(data, size);
        check_same_as_set(text, &cfg);
        free(text);
    }
}

static void check_set(const uint8_t *data, size_t size)
{
    struct fuzz_fields f;
    fuzz_split_lines(data, size, 3, &f);
    if (f.n < 3)
        return;
    char *sec = fuzz_cstr((const uint8_t *)f.p[0], f.len[0]);
    char *key = fuzz_cstr((const uint8_t *)f.p[1], f.len[1]);
    char *value = fuzz_cstr((const uint8_t *)f.p[2], f.len[2]);
    struct pl_config cfg, before;
    char err[512] = "";
    pl_config_defaults(&cfg, "detector");
    before = cfg;
    if (pl_config_set(&cfg, sec, key, value, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0], "refused without a reason");
        FUZZ_CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0, "a refused setting changed the config");
    } else {
        struct pl_config again = cfg;
        FUZZ_CHECK(pl_config_set(&again, sec, key, value, err, sizeof(err)) == 0 &&
                       memcmp(&again, &cfg, sizeof(cfg)) == 0,
                   "setting %s.%s twice differs", sec, key);
    }
    free(value);
    free(key);
    free(sec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_load(data, size);
    check_set(data, size);
    return 0;
}
