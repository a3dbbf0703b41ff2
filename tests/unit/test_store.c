/* Unit tests: the LMDB store - atomic dedupe, ids, counters, map growth, purge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <lmdb.h>

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

static int forget_fn(struct store_txn *t, void *arg)
{
    struct forget_result *res = arg;
    return store_txn_forget(t, "Femke@Example.nl", false, res);
}

static int meta_fn(struct store_txn *t, void *arg)
{
    json_t *v = json_pack("{s:s, s:[s]}", "email", "FEMKE@example.NL", "seen", "other@example.nl");
    int rc = store_txn_meta_put(t, "idmap.a.relation.1", v);
    json_decref(v);
    return rc;
}

/* An address is replaced wherever it stands, in any letter case, in JSON and
 * in raw bodies, never inside a longer address; the store file keeps no copy. */
static void test_forget_and_compact(void **state)
{
    (void)state;
    struct store *st = open_fresh("forget", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p[2];
    put_init(&p[0], "k1",
             "{\"state\":\"done\",\"note\":\"mail femke@example.nl, xfemke@example.nl, "
             "femke@example.nl.evil.org and femke@example.nl.\"}",
             GW_DONE);
    static const char raw[] = "not json: <femke@EXAMPLE.nl>\xff";
    put_init(&p[1], "k2", "{\"state\":\"dead\"}", GW_DEAD);
    p[1].payload = raw;
    p[1].payload_len = sizeof raw - 1;
    assert_int_equal(store_ingest(st, p, 2, err, sizeof err), 0);
    assert_int_equal(store_write(st, meta_fn, NULL, err, sizeof err), 0);
    struct forget_result res;
    assert_int_equal(store_write(st, forget_fn, &res, err, sizeof err), 0);
    assert_int_equal(res.events, 1);
    assert_int_equal(res.payloads, 1);
    assert_int_equal(res.meta, 1);
    json_t *rec;
    assert_int_equal(store_get_event(st, p[0].id, &rec, err, sizeof err), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "note")),
                        "mail [forgotten], xfemke@example.nl, femke@example.nl.evil.org and "
                        "[forgotten].");
    json_decref(rec);
    void *got;
    size_t len;
    assert_int_equal(store_get_payload(st, p[1].id, &got, &len, err, sizeof err), 0);
    assert_int_equal(len, strlen("not json: <[forgotten]>\xff"));
    assert_memory_equal(got, "not json: <[forgotten]>\xff", len);
    free(got);
    json_t *m;
    assert_int_equal(store_meta_get(st, "idmap.a.relation.1", &m, err, sizeof err), 0);
    assert_string_equal(json_string_value(json_object_get(m, "email")), "[forgotten]");
    assert_string_equal(json_string_value(json_array_get(json_object_get(m, "seen"), 0)),
                        "other@example.nl");
    json_decref(m);
    /* The file: the old values are gone once it is compacted, the rest is all there. */
    assert_int_equal(store_compact(st, err, sizeof err), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/forget/data.mdb", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char data[4 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    for (size_t i = 0; i + 16 <= n; i++)
        if (strncasecmp(data + i, "femke@example.nl", 16) == 0)
            assert_true(i > 0 && (data[i - 1] == 'x' || strncmp(data + i + 16, ".evil", 5) == 0));
    assert_int_equal(store_get_event(st, p[0].id, &rec, err, sizeof err), 0);
    json_decref(rec);
    uint64_t counts[GW_STATE_COUNT];
    assert_int_equal(store_counts(st, counts, err, sizeof err), 0);
    assert_int_equal(counts[GW_DONE] + counts[GW_DEAD], 2);
    store_close(st);
}

/* Event id's history becomes the one attempt entry (taken). */
static int put_attempt(struct store_txn *t, uint64_t id, json_t *entry)
{
    json_t *rec;
    int rc = store_txn_get_event(t, id, &rec);
    if (rc != 0) {
        json_decref(entry);
        return rc;
    }
    json_object_set_new(rec, "history", json_pack("[o]", entry));
    rc = store_txn_put_event(t, id, rec, NULL, NULL);
    json_decref(rec);
    return rc;
}

static int with_calls_fn(struct store_txn *t, void *arg)
{
    return put_attempt(t, *(uint64_t *)arg,
                       json_pack("{s:I, s:[{s:s, s:s, s:s}, {s:s}]}", "attempt", (json_int_t)1,
                                 "calls", "path", "/customer", "request", "{\"DisplayName\":\"A\"}",
                                 "response", "{\"Customer\":{}}", "path", "/query"));
}

static int raw_cb(uint64_t id, const char *rec, size_t len, void *arg)
{
    (void)id;
    char **out = arg;
    *out = strndup(rec, len);
    return 1;
}

/* The calls' bodies live apart from the record, and come back with it. */
static void test_bodies_apart(void **state)
{
    (void)state;
    struct store *st = open_fresh("bodies", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p;
    put_init(&p, "b1", "{\"state\":\"done\"}", GW_DONE);
    assert_int_equal(store_ingest(st, &p, 1, err, sizeof err), 0);
    assert_int_equal(store_write(st, with_calls_fn, &p.id, err, sizeof err), 0);
    char *raw = NULL;
    assert_int_equal(store_scan_events(st, raw_cb, &raw, err, sizeof err), 0);
    assert_non_null(raw);
    assert_null(strstr(raw, "DisplayName"));
    assert_non_null(strstr(raw, "/customer"));
    free(raw);
    json_t *rec;
    assert_int_equal(store_get_event(st, p.id, &rec, err, sizeof err), 0);
    json_t *calls = json_object_get(json_array_get(json_object_get(rec, "history"), 0), "calls");
    assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 0), "request")),
                        "{\"DisplayName\":\"A\"}");
    assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 0), "response")),
                        "{\"Customer\":{}}");
    assert_null(json_object_get(json_array_get(calls, 1), "request"));
    json_decref(rec);
    /* A compaction (forget) keeps every database, the bodies too. */
    assert_int_equal(store_compact(st, err, sizeof err), 0);
    assert_int_equal(store_get_event(st, p.id, &rec, err, sizeof err), 0);
    calls = json_object_get(json_array_get(json_object_get(rec, "history"), 0), "calls");
    assert_string_equal(json_string_value(json_object_get(json_array_get(calls, 0), "request")),
                        "{\"DisplayName\":\"A\"}");
    json_decref(rec);
    store_close(st);
}

/* The raw value of the one entry in the bodies database of the store at sub,
 * replaced by old when not NULL (the store closed meanwhile). */
static char *bodies_value(const char *sub, const char *old, size_t *len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "bodies", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    char *got = malloc(v.mv_size + 1);
    memcpy(got, v.mv_data, v.mv_size);
    got[v.mv_size] = '\0';
    *len = v.mv_size;
    mdb_cursor_close(cur);
    if (old != NULL) {
        MDB_val nv = {strlen(old), (void *)old};
        assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return got;
}

static int email_calls_fn(struct store_txn *t, void *arg)
{
    return put_attempt(t, *(uint64_t *)arg,
                       json_pack("{s:I, s:[{s:s, s:s}]}", "attempt", (json_int_t)1, "calls",
                                 "request",
                                 "{\"Email\":\"femke@example.nl\",\"Note\":\"a \\\"quote\\\"\"}",
                                 "response", "{\"Id\":\"7\"}"));
}

static const char *first_body(json_t *rec, const char *which)
{
    json_t *calls = json_object_get(json_array_get(json_object_get(rec, "history"), 0), "calls");
    return json_string_value(json_object_get(json_array_get(calls, 0), which));
}

/* Bodies are stored as they are, not escaped into JSON; a forget redacts in
 * them; the JSON arrays older releases stored still read. */
static void test_bodies_framed_and_old_ones_read(void **state)
{
    (void)state;
    struct store *st = open_fresh("frames", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p;
    put_init(&p, "f1", "{\"state\":\"done\"}", GW_DONE);
    assert_int_equal(store_ingest(st, &p, 1, err, sizeof err), 0);
    assert_int_equal(store_write(st, email_calls_fn, &p.id, err, sizeof err), 0);
    store_close(st);
    size_t len;
    char *raw = bodies_value("frames", NULL, &len);
    assert_memory_equal(raw, "GWB1", 4);
    static const char unescaped[] = "\"Note\":\"a \\\"quote\\\"\"";
    assert_non_null(memmem(raw, len, unescaped, sizeof unescaped - 1));
    free(raw);

    st = open_fresh("frames", 1, 64);
    struct forget_result res;
    assert_int_equal(store_write(st, forget_fn, &res, err, sizeof err), 0);
    assert_int_equal(res.events, 1);
    json_t *rec;
    assert_int_equal(store_get_event(st, p.id, &rec, err, sizeof err), 0);
    assert_string_equal(first_body(rec, "request"),
                        "{\"Email\":\"[forgotten]\",\"Note\":\"a \\\"quote\\\"\"}");
    assert_string_equal(first_body(rec, "response"), "{\"Id\":\"7\"}");
    json_decref(rec);
    store_close(st);

    /* As a release before framing wrote them. */
    free(bodies_value("frames", "[{\"request\":\"{\\\"Old\\\":1}\"}]", &len));
    st = open_fresh("frames", 1, 64);
    assert_int_equal(store_get_event(st, p.id, &rec, err, sizeof err), 0);
    assert_string_equal(first_body(rec, "request"), "{\"Old\":1}");
    assert_null(first_body(rec, "response"));
    json_decref(rec);
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
    int64_t cutoff;
    assert_true(gw_ts_parse("2025-01-01T00:00:00Z", &cutoff));
    struct purge_opts po = {cutoff, true, 0, 0};
    struct purge_result res;
    assert_int_equal(store_purge(st, &po, &res, err, sizeof err), 0);
    assert_int_equal(res.events, 1);
    assert_int_equal(res.dead_stripped, 0);
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
    assert_int_equal(store_purge(st, &po, &res, err, sizeof err), 0);
    assert_int_equal(res.events, 1);
    struct store_put next;
    put_init(&next, "after-purge", "{}", GW_DONE);
    assert_int_equal(store_ingest(st, &next, 1, err, sizeof err), 0);
    assert_int_equal(next.id, 2);
    store_close(st);
}

/* Past retention a dead event keeps its record but loses its payload and the
 * bodies of its calls; a pass cut into small transactions goes on where it
 * stopped and ends at the first event inside retention. */
static void test_purge_strips_dead_bodies_in_small_steps(void **state)
{
    (void)state;
    struct store *st = open_fresh("purge-dead", 1, 64);
    char err[GW_ERR_LEN];
    struct store_put p[6];
    char recs[6][320];
    for (int i = 0; i < 6; i++) {
        snprintf(recs[i], sizeof recs[i],
                 "{\"state\":\"%s\",\"received_at\":\"%s\",\"dedupe_key\":\"k%d\","
                 "\"history\":[{\"calls\":[{\"system\":\"quickbooks\",\"request\":"
                 "\"{\\\"PrimaryEmailAddr\\\":\\\"piet@example.nl\\\"}\",\"response\":\"{}\","
                 "\"status\":400}]}]}",
                 i == 5  ? "dead"
                 : i % 2 ? "dead"
                         : "done",
                 i == 5 ? "2030-01-01T00:00:00.000Z" : "2020-01-01T00:00:00.000Z", i);
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        put_init(&p[i], key, recs[i], i == 5 || i % 2 ? GW_DEAD : GW_DONE);
        p[i].payload = "{\"email\":\"piet@example.nl\"}";
        p[i].payload_len = strlen(p[i].payload);
    }
    assert_int_equal(store_ingest(st, p, 6, err, sizeof err), 0);
    int64_t cutoff;
    assert_true(gw_ts_parse("2025-01-01T00:00:00Z", &cutoff));
    struct purge_opts po = {cutoff, false, 0, 2};
    struct purge_result res, all = {0};
    int steps = 0;
    do {
        assert_int_equal(store_purge(st, &po, &res, err, sizeof err), 0);
        all.events += res.events;
        all.payloads += res.payloads;
        all.dead_stripped += res.dead_stripped;
        po.start_id = res.next_id;
        steps++;
    } while (res.next_id != 0 && steps < 10);
    assert_true(steps >= 3 && steps < 10); /* two events a transaction: several, and an end */
    assert_int_equal(all.events, 3);
    assert_int_equal(all.dead_stripped, 2);
    assert_int_equal(all.payloads, 5);
    for (uint64_t id = 1; id <= 6; id++) {
        json_t *rec = NULL;
        void *body = NULL;
        size_t len = 0;
        int rc = store_get_event(st, id, &rec, err, sizeof err);
        if (id % 2 == 1) { /* the done ones are gone */
            assert_int_equal(rc, STORE_ENOTFOUND);
            continue;
        }
        assert_int_equal(rc, 0);
        json_t *call = json_array_get(
            json_object_get(json_array_get(json_object_get(rec, "history"), 0), "calls"), 0);
        int got = store_get_payload(st, id, &body, &len, err, sizeof err);
        if (id == 6) { /* inside retention: untouched */
            assert_non_null(json_object_get(call, "request"));
            assert_int_equal(got, 0);
        } else {
            assert_null(json_object_get(call, "request"));
            assert_null(json_object_get(call, "response"));
            assert_int_equal(json_integer_value(json_object_get(call, "status")), 400);
            assert_true(json_is_true(json_object_get(rec, "bodies_purged")));
            assert_int_equal(got, STORE_ENOTFOUND);
        }
        free(body);
        json_decref(rec);
    }
    /* A second pass finds nothing more to do. */
    po.start_id = 0;
    po.max_visit = 0;
    assert_int_equal(store_purge(st, &po, &res, err, sizeof err), 0);
    assert_int_equal(res.events + res.payloads + res.dead_stripped, 0);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ingest_dedupe_and_ids),
        cmocka_unit_test(test_raw_body_kept),
        cmocka_unit_test(test_forget_and_compact),
        cmocka_unit_test(test_bodies_apart),
        cmocka_unit_test(test_bodies_framed_and_old_ones_read),
        cmocka_unit_test(test_map_full_grows_and_keeps_everything),
        cmocka_unit_test(test_purge_keeps_dead_and_recent),
        cmocka_unit_test(test_purge_strips_dead_bodies_in_small_steps),
    };
    return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
