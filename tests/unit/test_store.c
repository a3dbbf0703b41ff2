/* Unit tests: the LMDB store - atomic dedupe, ids, counters, map growth, purge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sig.h"
#include "store.h"
#include "util.h"
#include "testutil.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return temp_dir_make(dir, sizeof dir, "store");
}

static int teardown(void **state)
{
    (void)state;
    return temp_dir_remove(dir);
}
static struct store *open_fresh(const char *sub, size_t map_mb, size_t max_mb)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    struct store *st;
    char err[GW_ERR_LEN];
    if (store_open(path, map_mb, max_mb, &st, err, sizeof err) != 0)
        fail_msg("%s", err);
    return st;
}

static void put_init(struct store_put *p, const char *key, const char *rec, enum gw_state s)
{
    memset(p, 0, sizeof *p);
    store_dedupe_hash(key, NULL, p->key);
    p->rec = rec;
    p->rec_len = strlen(rec);
    p->state = s;
    p->due_ms = 1767225600000; /* queued at this time when pending */
    p->entity_key = "test|Thing|1";
}

static void test_ingest_dedupe_and_ids(void **state)
{
    (void)state;
    struct store *st = open_fresh("a", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p[3];
    put_init(&p[0], "k1", "{\"state\":\"pending\"}", GW_PENDING);
    put_init(&p[1], "k2", "{\"state\":\"skipped\"}", GW_SKIPPED);
    put_init(&p[2], "k1", "{\"state\":\"pending\"}", GW_PENDING); /* same key, same batch */
    assert_int_equal(store_ingest(st, p, 3, err, sizeof err), 0);
    assert_false(p[0].duplicate);
    assert_false(p[1].duplicate);
    assert_true(p[2].duplicate);
    assert_true(p[0].id == 1 && p[1].id == 2 && p[2].id == 1);

    /* A redelivery later stores nothing and reports the first id. */
    struct store_put again;
    put_init(&again, "k2", "{\"state\":\"skipped\"}", GW_SKIPPED);
    assert_int_equal(store_ingest(st, &again, 1, err, sizeof err), 0);
    assert_true(again.duplicate);
    assert_true(again.id == 2);

    uint64_t counts[GW_STATE_COUNT];
    assert_int_equal(store_counts(st, counts, err, sizeof err), 0);
    assert_true(counts[GW_PENDING] == 1 && counts[GW_SKIPPED] == 1 && counts[GW_DEAD] == 0);

    json_t *e;
    assert_int_equal(store_get_event(st, 2, &e, err, sizeof err), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "id")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "state")), "skipped");
    json_decref(e);
    assert_int_equal(store_get_event(st, 3, &e, err, sizeof err), STORE_ENOTFOUND);

    int64_t oldest;
    assert_int_equal(store_oldest_queued(st, &oldest, err, sizeof err), 0);
    assert_int_equal(oldest, 1767225600000);
    store_close(st);

    /* Reopened, the store still knows both keys and continues the ids. */
    st = open_fresh("a", 1, 64);
    struct store_put p3[2];
    put_init(&p3[0], "k1", "{}", GW_PENDING);
    put_init(&p3[1], "k3", "{}", GW_PENDING);
    assert_int_equal(store_ingest(st, p3, 2, err, sizeof err), 0);
    assert_true(p3[0].duplicate && p3[0].id == 1);
    assert_true(!p3[1].duplicate && p3[1].id == 3);
    store_close(st);
}

static void test_raw_body_kept(void **state)
{
    (void)state;
    struct store *st = open_fresh("raw", 1, 64);
    char err[GW_ERR_LEN];
    static const char raw[] = "{\"eventNotifications\": [\x00\xff";
    struct store_put p;
    put_init(&p, "malformed", "{\"state\":\"dead\"}", GW_DEAD);
    p.payload = raw;
    p.payload_len = sizeof raw - 1;
    assert_int_equal(store_ingest(st, &p, 1, err, sizeof err), 0);
    void *got;
    size_t len;
    assert_int_equal(store_get_payload(st, p.id, &got, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof raw - 1);
    assert_memory_equal(got, raw, len);
    free(got);
    store_close(st);
}

static void test_map_full_grows_and_keeps_everything(void **state)
{
    (void)state;
    /* A 1 MiB map that must grow several times to take 4 MiB of records. */
    struct store *st = open_fresh("grow", 1, 64);
    char err[GW_ERR_LEN];
    size_t reclen = 8000;
    char *rec = malloc(reclen + 1);
    memset(rec, 'x', reclen);
    rec[reclen] = '\0';
    enum { N = 512, BATCH = 64 };
    for (int b = 0; b < N / BATCH; b++) {
        struct store_put p[BATCH];
        for (int i = 0; i < BATCH; i++) {
            char key[32];
            snprintf(key, sizeof key, "grow-%d", b * BATCH + i);
            put_init(&p[i], key, rec, GW_PENDING);
        }
        if (store_ingest(st, p, BATCH, err, sizeof err) != 0)
            fail_msg("batch %d: %s", b, err);
        for (int i = 0; i < BATCH; i++)
            assert_false(p[i].duplicate);
    }
    assert_true(store_map_size(st) > (1u << 20));
    uint64_t counts[GW_STATE_COUNT];
    assert_int_equal(store_counts(st, counts, err, sizeof err), 0);
    assert_int_equal(counts[GW_PENDING], N);
    store_close(st);

    /* With the hard limit reached, the write fails cleanly instead of crashing. */
    st = open_fresh("full", 1, 1);
    struct store_put p[BATCH];
    int rc = 0;
    for (int b = 0; b < 8 && rc == 0; b++) {
        for (int i = 0; i < BATCH; i++) {
            char key[32];
            snprintf(key, sizeof key, "full-%d", b * BATCH + i);
            put_init(&p[i], key, rec, GW_PENDING);
        }
        rc = store_ingest(st, p, BATCH, err, sizeof err);
    }
    assert_int_equal(rc, STORE_EFAIL);
    assert_non_null(strstr(err, "MDB_MAP_FULL"));
    store_close(st);
    free(rec);
}

static int count_cb(uint64_t id, const char *rec, size_t len, void *arg)
{
    (void)id;
    (void)rec;
    (void)len;
    (*(int *)arg)++;
    return 0;
}

static void test_purge_keeps_dead_and_recent(void **state)
{
    (void)state;
    struct store *st = open_fresh("purge", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p[4];
    put_init(&p[0], "old-done",
             "{\"state\":\"done\",\"received_at\":\"2020-01-01T00:00:00.000Z\","
             "\"dedupe_key\":\"old-done\"}",
             GW_DONE);
    put_init(&p[1], "old-dead",
             "{\"state\":\"dead\",\"received_at\":\"2020-01-01T00:00:01.000Z\","
             "\"dedupe_key\":\"old-dead\"}",
             GW_DEAD);
    put_init(&p[2], "old-pending",
             "{\"state\":\"pending\",\"received_at\":\"2020-01-01T00:00:02.000Z\","
             "\"dedupe_key\":\"old-pending\"}",
             GW_PENDING);
    put_init(&p[3], "new-done",
             "{\"state\":\"done\",\"received_at\":\"2030-01-01T00:00:00.000Z\","
             "\"dedupe_key\":\"new-done\"}",
             GW_DONE);
    assert_int_equal(store_ingest(st, p, 4, err, sizeof err), 0);
    uint64_t ev, pl;
    int64_t cutoff;
    assert_true(gw_ts_parse("2025-01-01T00:00:00Z", &cutoff));
    assert_int_equal(store_purge(st, cutoff, &ev, &pl, err, sizeof err), 0);
    assert_int_equal(ev, 1);
    int n = 0;
    assert_int_equal(store_scan_events(st, count_cb, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    uint64_t counts[GW_STATE_COUNT];
    store_counts(st, counts, err, sizeof err);
    assert_int_equal(counts[GW_DONE], 1);
    assert_int_equal(counts[GW_DEAD], 1);
    /* The purged event's dedupe key is gone with it, and its id is not given again. */
    struct store_put again;
    put_init(&again, "old-done", "{}", GW_DONE);
    assert_int_equal(store_ingest(st, &again, 1, err, sizeof err), 0);
    assert_false(again.duplicate);
    assert_int_equal(again.id, 5);

    store_close(st);

    /* Purging the newest event must not hand its id to the next one. */
    st = open_fresh("purge-newest", 1, 64);
    struct store_put last;
    put_init(&last, "newest",
             "{\"state\":\"done\",\"received_at\":\"2020-01-02T00:00:00.000Z\","
             "\"dedupe_key\":\"newest\"}",
             GW_DONE);
    assert_int_equal(store_ingest(st, &last, 1, err, sizeof err), 0);
    assert_int_equal(last.id, 1);
    assert_int_equal(store_purge(st, cutoff, &ev, &pl, err, sizeof err), 0);
    assert_int_equal(ev, 1);
    struct store_put next;
    put_init(&next, "after-purge", "{}", GW_DONE);
    assert_int_equal(store_ingest(st, &next, 1, err, sizeof err), 0);
    assert_int_equal(next.id, 2);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_dedupe_and_ids),
        cmocka_unit_test(test_raw_body_kept),
        cmocka_unit_test(test_map_full_grows_and_keeps_everything),
        cmocka_unit_test(test_purge_keeps_dead_and_recent),
    };
    return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
