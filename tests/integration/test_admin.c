/* pl-admin against the real database and broker: migrations, tenants, projects, keys,
 * offset resets for replays, and its input errors. */
#include "itest.h"

#include "kafka.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Extra environment for the next pl-admin runs (NULL: the stack's as it is). */
static const char *const *admin_env;

/* Runs pl-admin with args; returns its exit code and its output (stdout+stderr) in out. */
static int admin(char *out, size_t outsz, const char *a1, const char *a2, const char *a3,
                 const char *a4, const char *a5, const char *a6, const char *a7, const char *a8)
{
    const char *args[] = {a1, a2, a3, a4, a5, a6, a7, a8, NULL};
    int rc = itest_admin(args, admin_env, 30000, out, outsz);
    assert_true(rc >= 0);
    return rc;
}

static void test_migrate_is_idempotent(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(admin(out, sizeof(out), "migrate", NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                     0);
    assert_string_equal(out, "0 migration(s) applied");
}

static void test_tenant_project_key(void **state)
{
    (void)state;
    char out[1024], tenant[64], name[64];
    assert_int_equal(
        admin(out, sizeof(out), "tenant", "create", "--name", "x", "--plan", "gold", NULL, NULL),
        1);
    assert_non_null(strstr(out, "--plan"));
    assert_int_equal(
        admin(out, sizeof(out), "tenant", "create", "--name", "acme", NULL, NULL, NULL, NULL), 1);
    assert_int_equal(
        admin(out, sizeof(out), "tenant", "create", "--name", "acme", "--plan", "team", NULL, NULL),
        0);
    assert_true(pl_uuid_valid(out));
    snprintf(tenant, sizeof(tenant), "%.36s", out);

    snprintf(name, sizeof(name), "web-%d", (int)getpid());
    assert_int_equal(admin(out, sizeof(out), "project", "create", "--tenant", tenant, "--name",
                           name, NULL, NULL),
                     0);
    assert_true(pl_uuid_valid(out));
    assert_int_equal(admin(out, sizeof(out), "project", "create", "--tenant", tenant, "--name",
                           name, NULL, NULL),
                     1);
    assert_non_null(strstr(out, "already exists"));

    assert_int_equal(admin(out, sizeof(out), "apikey", "create", "--tenant", tenant, "--role",
                           "admin", NULL, NULL),
                     1);
    assert_int_equal(admin(out, sizeof(out), "apikey", "create", "--tenant", tenant, "--role",
                           "viewer", "--name", "ci"),
                     0);
    assert_int_equal(strlen(out), 51);
    assert_memory_equal(out, "pl_", 3);
    /* the key works, and only its hash is stored */
    struct itest_response r = itest_api("GET", "/v1/projects", out, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, name));
    itest_response_free(&r);
    PGconn *db = itest_pg(NULL);
    const char *p[1] = {out};
    char *n =
        itest_sql(db, "SELECT count(*) FROM api_keys WHERE key_hash = $1 OR prefix = $1", 1, p);
    assert_string_equal(n, "0");
    free(n);
    PQfinish(db);

    assert_int_equal(
        admin(out, sizeof(out), "audit", "verify", "--tenant", tenant, NULL, NULL, NULL, NULL), 0);
    assert_true(strncmp(out, "audit chain ok: 3 entries, head ", 32) == 0);
    assert_int_equal(strlen(out), 32 + 64);
    char head[65];
    snprintf(head, sizeof(head), "%.64s", out + 32);
    /* a keyed chain has nothing to rekey; rekey needs a tenant or --all */
    assert_int_equal(
        admin(out, sizeof(out), "audit", "rekey", "--tenant", tenant, NULL, NULL, NULL, NULL), 0);
    assert_non_null(strstr(out, ": 0 entries rekeyed"));
    assert_int_equal(admin(out, sizeof(out), "audit", "rekey", NULL, NULL, NULL, NULL, NULL, NULL),
                     1);
    /* without the key nothing is appended or verified; a short key is refused outright */
    static const char *const no_key[] = {"PL_AUDIT_KEY=", NULL};
    static const char *const short_key[] = {"PL_AUDIT_KEY=only-twenty-characters", NULL};
    admin_env = no_key;
    assert_int_equal(admin(out, sizeof(out), "project", "create", "--tenant", tenant, "--name",
                           "keyless", NULL, NULL),
                     1);
    assert_non_null(strstr(out, "no audit key"));
    assert_int_equal(
        admin(out, sizeof(out), "audit", "verify", "--tenant", tenant, NULL, NULL, NULL, NULL), 1);
    assert_non_null(strstr(out, "no audit key"));
    admin_env = short_key;
    assert_int_equal(
        admin(out, sizeof(out), "audit", "verify", "--tenant", tenant, NULL, NULL, NULL, NULL), 1);
    assert_non_null(strstr(out, "32 to 512 bytes"));
    admin_env = NULL;
    /* the head published now is still in the chain after more entries; once the newest
     * entries are deleted it is not, though what is left still chains */
    assert_int_equal(admin(out, sizeof(out), "project", "create", "--tenant", tenant, "--name",
                           "later", NULL, NULL),
                     0);
    assert_int_equal(admin(out, sizeof(out), "audit", "verify", "--tenant", tenant,
                           "--expected-head", head, NULL, NULL),
                     0);
    db = itest_pg(NULL);
    const char *pt[1] = {tenant};
    free(itest_sql(db,
                   "DELETE FROM audit_log WHERE tenant_id = $1 AND id >= (SELECT max(id) - 1"
                   " FROM audit_log WHERE tenant_id = $1) RETURNING 1",
                   1, pt));
    PQfinish(db);
    assert_int_equal(
        admin(out, sizeof(out), "audit", "verify", "--tenant", tenant, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(admin(out, sizeof(out), "audit", "verify", "--tenant", tenant,
                           "--expected-head", head, NULL, NULL),
                     1);
    /* every entry of the tenant deleted: an empty chain verifies, the published head does not */
    db = itest_pg(NULL);
    free(itest_sql(db, "DELETE FROM audit_log WHERE tenant_id = $1", 1, pt));
    PQfinish(db);
    assert_int_equal(
        admin(out, sizeof(out), "audit", "verify", "--tenant", tenant, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(admin(out, sizeof(out), "audit", "verify", "--tenant", tenant,
                           "--expected-head", head, NULL, NULL),
                     1);
    assert_non_null(strstr(out, "not in the chain"));
    assert_int_equal(admin(out, sizeof(out), "bogus", NULL, NULL, NULL, NULL, NULL, NULL, NULL), 2);
}

/* The committed offset of group on topic[0], or -2 if none. */
static int64_t committed(const char *group, const char *topic)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", itest_env("PL_KAFKA_BROKERS"), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0);
    int64_t off = -2;
    if (rd_kafka_committed(rk, l, 5000) == 0)
        off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return off;
}

static void test_offsets_reset(void **state)
{
    (void)state;
    /* pl.dlq has one partition; make sure it holds messages */
    char err[256];
    struct pl_producer *p = pl_producer_new(itest_env("PL_KAFKA_BROKERS"), 10000, err, sizeof(err));
    assert_non_null(p);
    struct pl_kafka_msg m = {
        .topic = "pl.dlq", .partition = 0, .key = "k", .key_len = 1, .value = "{}", .value_len = 2};
    assert_int_equal(pl_producer_send(p, &m, err, sizeof(err)), 0);
    assert_int_equal(pl_producer_send(p, &m, err, sizeof(err)), 0);
    int64_t hi = m.out_offset + 1;
    pl_producer_destroy(p, 5000);

    char group[64], out[2048];
    snprintf(group, sizeof(group), "itest-offsets-%d", (int)getpid());
    assert_int_equal(admin(out, sizeof(out), "offsets", "reset", "--group", group, "--topic",
                           "pl.dlq", "--to", "2999-01-01T00:00:00Z"),
                     0);
    assert_int_equal(committed(group, "pl.dlq"), hi);
    assert_int_equal(admin(out, sizeof(out), "offsets", "reset", "--group", group, "--topic",
                           "pl.dlq", "--to", "earliest"),
                     0);
    assert_int_equal(committed(group, "pl.dlq"), 0);
    assert_non_null(strstr(out, "pl.dlq[0] -> 0"));
    assert_int_equal(admin(out, sizeof(out), "offsets", "reset", "--group", group, "--topic",
                           "pl.dlq", "--to", "yesterday"),
                     1);
    char missing[64];
    snprintf(missing, sizeof(missing), "no.such.topic.%d", (int)getpid());
    assert_int_equal(admin(out, sizeof(out), "offsets", "reset", "--group", group, "--topic",
                           missing, "--to", "earliest"),
                     1);
    assert_non_null(strstr(out, "not found"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_is_idempotent),
        cmocka_unit_test(test_tenant_project_key),
        cmocka_unit_test(test_offsets_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
