/* Scale-out: three detector replicas in one group on a six-partition topic, one killed with
 * SIGKILL mid-run; every trace stored once, exact cluster counts, and a rebalance in time. */
#include "itest.h"

#include "kafka.h"
#include "util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define PARTITIONS 6
#define REPLICAS   3
#define TRACES     4000 /* half before the kill may happen, half only after it */
#define CHUNK      50   /* traces per produce call */
#define CHUNK_GAP  20   /* ms between calls: the replicas are busy when one is killed */
#define SESSION_MS 6000
/* The bounds on the rebalance after a crash, from the kill:
 * - the survivors are told (they revoke their partitions) once the coordinator has expired
 *   the dead member's session, which it checks once a second, at their next heartbeat
 *   (librdkafka's heartbeat.interval.ms, 3 s), plus 1 s of slack;
 * - every partition progresses again after the join phase, which librdkafka's mock cluster
 *   holds for session timeout - 1 s waiting for the survivors to rejoin (a real broker closes
 *   it as soon as every live member has rejoined), the sync, and a first batch (2 s of slack,
 *   for sanitizer builds).
 * The mock also answers a member whose SyncGroup arrives after the leader's with "rebalance
 * in progress" (a real broker hands it the leader's assignment): that member rejoins and
 * the group goes through another held join phase. Each such extra generation, seen as a
 * second revocation in a survivor's log, adds one hold to the bound (at most two). */
#define EXPIRY_TICK_MS      1000
#define HEARTBEAT_MS        3000
#define JOIN_HOLD_MS        (SESSION_MS - 1000)
#define NOTICED_BOUND_MS    (SESSION_MS + EXPIRY_TICK_MS + HEARTBEAT_MS + 1000)
#define REBALANCE_MARGIN_MS (EXPIRY_TICK_MS + JOIN_HOLD_MS + 2000)
#define EXTRA_GENERATIONS   2

static PGconn *db;
static struct itest_tenant t;
static char topic[96], group[128];

static int setup(void **state)
{
    (void)state;
    db = itest_pg(NULL);
    itest_tenant_new(db, "team", &t);
    /* A topic with exactly six partitions; itest_topic's would get the broker's default. */
    unsigned char rnd[6];
    pl_random_bytes(rnd, sizeof(rnd));
    snprintf(topic, sizeof(topic), "itest.scaleout.%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
    snprintf(group, sizeof(group), "itest-scaleout-%s", topic + 15);
    char path[160];
    snprintf(path, sizeof(path), "/topics/%s/partitions/%d", topic, PARTITIONS);
    struct itest_response r =
        itest_http(itest_env("PL_DEVKAFKA_CONTROL_URL"), "POST", path, NULL, NULL);
    if (r.status != 201)
        fail_msg("create %s: %ld %s", topic, r.status, r.body);
    itest_response_free(&r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(db);
    return 0;
}

static long long count_sql(const char *sql)
{
    const char *p[1] = {t.project_id};
    char *v = itest_sql(db, sql, 1, p);
    long long n = strtoll(v, NULL, 10);
    free(v);
    return n;
}

/* How many lines of a log contain needle. */
static int log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

struct feeder {
    const char *brokers;
    atomic_bool killed; /* set by the test once a replica is dead: phase "b" may start */
    char error[512];    /* empty unless producing failed (cmocka must not fail off-thread) */
};

/* Produces phase (a or b): TRACES / 2 envelopes "<phase>-<partition>-<k>", round robin over
 * the partitions, every other one with an error of one of two shapes. */
static int feed_phase(struct pl_producer *p, char phase, struct feeder *f)
{
    static char ids[CHUNK][48], evs[CHUNK][4096];
    struct pl_kafka_msg msgs[CHUNK];
    for (int base = 0; base < TRACES / 2; base += CHUNK) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char now[40];
        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
        for (int j = 0; j < CHUNK; j++) {
            int k = base + j, part = k % PARTITIONS;
            char error[160] = "";
            if (k % 4 == 0)
                snprintf(error, sizeof(error),
                         ",\"error\":\"Timeout after %d ms calling https://api.example.com/v1/"
                         "items/%d\"",
                         100 + k % 997, k);
            else if (k % 4 == 2)
                snprintf(error, sizeof(error),
                         ",\"error\":\"KeyError: user_%d not found in shard %d\"", k, k % 13);
            snprintf(ids[j], sizeof(ids[j]), "%c-%d-%d", phase, part, k);
            snprintf(evs[j], sizeof(evs[j]),
                     "{\"schema_version\":1,\"tenant_id\":\"%s\",\"project_id\":\"%s\","
                     "\"received_at\":\"%s.%06dZ\",\"trace\":{\"project_id\":\"%s\",\"id\":\"%s\","
                     "\"output\":\"order %d shipped\"%s}}",
                     t.id, t.project_id, now, (int)(ts.tv_nsec / 1000), t.project_id, ids[j], k,
                     error);
            msgs[j] = (struct pl_kafka_msg){.topic = topic,
                                            .partition = part,
                                            .key = ids[j],
                                            .key_len = strlen(ids[j]),
                                            .value = evs[j],
                                            .value_len = strlen(evs[j])};
        }
        if (pl_producer_send_batch(p, msgs, CHUNK) != 0) {
            snprintf(f->error, sizeof(f->error), "producing %c-%d.. to %s failed", phase, base,
                     topic);
            return -1;
        }
        pl_sleep_ms(CHUNK_GAP); /* pacing, not synchronisation */
    }
    return 0;
}

static void *feed(void *arg)
{
    struct feeder *f = arg;
    char err[256];
    struct pl_producer *p = pl_producer_new(f->brokers, 10000, err, sizeof(err));
    if (!p) {
        snprintf(f->error, sizeof(f->error), "producer: %s", err);
        return NULL;
    }
    if (feed_phase(p, 'a', f) == 0) {
        int64_t deadline = pl_now_ms() + 60000;
        while (!atomic_load(&f->killed) && pl_now_ms() < deadline)
            pl_sleep_ms(5);
        if (atomic_load(&f->killed))
            feed_phase(p, 'b', f);
        else
            snprintf(f->error, sizeof(f->error), "no replica was killed within 60 s");
    }
    pl_producer_destroy(p, 5000);
    return NULL;
}

static void test_kill_one_of_three(void **state)
{
    (void)state;
    char topic_env[160], session_env[64];
    snprintf(topic_env, sizeof(topic_env), "PL_KAFKA_TOPIC_TRACES=%s", topic);
    snprintf(session_env, sizeof(session_env), "PL_KAFKA_SESSION_TIMEOUT_MS=%d", SESSION_MS);
    const char *env[] = {topic_env, session_env, NULL};
    pid_t pid[REPLICAS];
    char log[REPLICAS][128], url[REPLICAS][64];
    for (int i = 0; i < REPLICAS; i++) {
        pid[i] = itest_service_start("pl-detector", group, env, log[i]);
        snprintf(url[i], sizeof(url[i]), "%s", itest_service_url());
    }
    /* One generation with all three: two partitions each (range assignor, 6 / 3). */
    for (int i = 0; i < REPLICAS; i++)
        if (!itest_wait_file_contains(log[i], "partitions assigned: 2", 30000))
            fail_msg("replica %d never held two partitions (see %s)", i, log[i]);

    struct feeder f = {.brokers = itest_env("PL_KAFKA_BROKERS")};
    pthread_t feeder;
    assert_int_equal(pthread_create(&feeder, NULL, feed, &f), 0);

    /* Mid-run: some traces stored, every replica has stored some of them. */
    const int victim = REPLICAS - 1;
    int64_t deadline = pl_now_ms() + 30000;
    long long before = 0;
    bool busy = false;
    while (!busy && pl_now_ms() < deadline && !f.error[0]) {
        before = count_sql("SELECT count(*) FROM traces WHERE project_id = $1");
        busy = before >= TRACES / 8;
        for (int i = 0; busy && i < REPLICAS; i++)
            busy = itest_metric(url[i], "pl_detector_traces_total") > 0;
        if (!busy)
            pl_sleep_ms(10); /* poll interval */
    }
    if (!busy)
        fail_msg("not every replica stored traces in time (%lld stored; %s)", before, f.error);
    long long victim_stored = itest_metric(url[victim], "pl_detector_traces_total");
    int revoked[REPLICAS]; /* each survivor's revocations so far */
    for (int i = 0; i < REPLICAS; i++)
        revoked[i] = log_count(log[i], "partitions revoked");
    int64_t t_kill = pl_now_ms();
    assert_int_equal(kill(pid[victim], SIGKILL), 0);
    atomic_store(&f.killed, true);
    int st = itest_wait(pid[victim], 5000);
    assert_true(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(before < TRACES); /* the second half is produced only now */

    /* Progress resumes on every partition, the dead replica's included: each has a trace of
     * the second half stored. */
    int64_t t_resumed = -1, t_noticed = -1, told[REPLICAS] = {0};
    int extra = 0; /* generations beyond the one that replaced the dead replica's */
    deadline = t_kill + 3 * SESSION_MS + REBALANCE_MARGIN_MS;
    while (t_resumed < 0 && pl_now_ms() < deadline) {
        int64_t now = pl_now_ms();
        bool all_told = true;
        for (int i = 0; i < REPLICAS; i++) {
            if (i == victim)
                continue;
            int n = log_count(log[i], "partitions revoked") - revoked[i];
            if (n > 0 && !told[i])
                told[i] = now - t_kill;
            all_told &= told[i] > 0;
            if (n - 1 > extra)
                extra = n - 1;
        }
        if (all_told && t_noticed < 0)
            t_noticed = now - t_kill; /* every survivor knows */
        if (count_sql("SELECT count(DISTINCT split_part(id, '-', 2)) FROM traces"
                      " WHERE project_id = $1 AND id LIKE 'b-%'") == PARTITIONS)
            t_resumed = pl_now_ms() - t_kill;
        else
            pl_sleep_ms(20); /* poll interval */
    }
    assert_int_equal(pthread_join(feeder, NULL), 0);
    if (f.error[0])
        fail_msg("%s", f.error);
    if (t_resumed < 0)
        fail_msg("the dead replica's partitions were not taken over within %d ms",
                 3 * SESSION_MS + REBALANCE_MARGIN_MS);
    /* and the group catches up to the end of every partition */
    assert_true(itest_group_caught_up(group, topic, 60000));
    int64_t t_caught_up = pl_now_ms() - t_kill;
    /* The counter includes redeliveries: what the victim had stored but not committed came
     * again to its partitions' new owners (at least this many; 0 when its last offsets had
     * been committed). */
    long long handled = victim_stored;
    for (int i = 0; i < REPLICAS; i++)
        if (i != victim)
            handled += itest_metric(url[i], "pl_detector_traces_total");
    print_message("kill -9 after %lld of %d traces stored; survivors revoked after %lld ms,"
                  " every partition progressing after %lld ms (%d extra generation(s)), group"
                  " caught up after %lld ms (session timeout %d ms); >= %lld traces delivered"
                  " twice\n",
                  before, TRACES, (long long)t_noticed, (long long)t_resumed, extra,
                  (long long)t_caught_up, SESSION_MS, handled - TRACES);

    /* Every trace stored exactly once, and nothing else. */
    assert_int_equal(count_sql("SELECT count(*) FROM traces WHERE project_id = $1"), TRACES);
    assert_int_equal(count_sql("SELECT count(DISTINCT id) FROM traces WHERE project_id = $1"
                               " AND id ~ '^[ab]-[0-5]-[0-9]+$'"),
                     TRACES);
    /* The counts are exact though the dead replica's last batches were redelivered: two
     * clusters of a quarter of the traces each, as many member rows, one event each. */
    assert_int_equal(count_sql("SELECT count(*) FROM traces WHERE project_id = $1"
                               " AND error IS NOT NULL"),
                     TRACES / 2);
    assert_int_equal(count_sql("SELECT count(*) FROM failure_clusters WHERE project_id = $1"), 2);
    char exact[256];
    snprintf(exact, sizeof(exact),
             "SELECT count(*) FROM failure_clusters c WHERE project_id = $1 AND count = %d"
             " AND count = (SELECT count(*) FROM cluster_members m WHERE m.cluster_id = c.id)",
             TRACES / 4);
    assert_int_equal(count_sql(exact), 2);
    assert_int_equal(count_sql("SELECT count(*) FROM failure_clusters c WHERE project_id = $1"
                               " AND error_type = 'error' AND threshold_reached_at IS NOT NULL"),
                     2);
    assert_int_equal(count_sql("SELECT count(*) FROM outbox WHERE topic = 'pl.clusters'"
                               " AND payload->>'project_id' = $1::text"),
                     2);

    /* The rebalance: the survivors took one of the dead replica's partitions each, in time. */
    for (int i = 0; i < REPLICAS; i++)
        if (i != victim)
            assert_true(itest_wait_file_contains(log[i], "partitions assigned: 3", 0));
    assert_true(t_noticed >= 0 && t_noticed < NOTICED_BOUND_MS);
    assert_true(extra <= EXTRA_GENERATIONS);
    assert_true(t_resumed < SESSION_MS + REBALANCE_MARGIN_MS + extra * JOIN_HOLD_MS);
    /* Both told at once: one leaving alone starts a rebalance the other's close waits for. */
    for (int i = 0; i < REPLICAS; i++)
        if (i != victim)
            kill(pid[i], SIGTERM);
    for (int i = 0; i < REPLICAS; i++)
        if (i != victim)
            itest_service_stop(pid[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_one_of_three),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
