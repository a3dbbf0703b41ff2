/* Unit tests: the retry policy and the queue/entity indexes the dispatcher relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "clients.h"
#include "config.h"
#include "dispatch.h"
#include "qbo.h"
#include "sig.h"
#include "store.h"
#include "task.h"

static void test_backoff_full_jitter(void **state)
{
    (void)state;
    struct gw_config cfg = {.retry_first_s = 10, .retry_max_s = 3600};
    /* The upper bound doubles per attempt, from 10 s, and stops at the cap. */
    assert_int_equal(dispatch_backoff_ms(&cfg, 1, 0.999999), 9999);
    assert_int_equal(dispatch_backoff_ms(&cfg, 2, 0.999999), 19999);
    assert_int_equal(dispatch_backoff_ms(&cfg, 4, 0.5), 40000);
    assert_int_equal(dispatch_backoff_ms(&cfg, 20, 0.999999), 3599996);
    /* Full jitter reaches down to zero, but never below a second. */
    assert_int_equal(dispatch_backoff_ms(&cfg, 3, 0.0), 1000);
    for (unsigned a = 1; a < 40; a++) {
        int64_t ms = dispatch_backoff_ms(&cfg, a, 0.7);
        assert_true(ms >= 1000 && ms <= 3600 * 1000);
    }
}

static char dir[64];

struct seen {
    uint64_t ids[16];
    bool head[16];
    size_t n;
};

static int due_cb(const struct store_due *e, void *arg)
{
    struct seen *s = arg;
    s->ids[s->n] = e->id;
    s->head[s->n++] = e->head;
    /* A head arrives with its record. */
    if (e->head && (e->rec == NULL || e->rec_len == 0))
        return 1;
    return 0;
}

struct change {
    uint64_t id;
    const char *state;
    long long due;
};

static int change_fn(struct store_txn *t, void *arg)
{
    struct change *c = arg;
    json_t *rec;
    int rc = store_txn_get_event(t, c->id, &rec);
    if (rc != 0)
        return rc;
    json_object_set_new(rec, "state", json_string(c->state));
    json_object_set_new(rec, "due_ms", json_integer(c->due));
    rc = store_txn_put_event(t, c->id, rec, NULL, NULL);
    json_decref(rec);
    return rc;
}

static void test_entity_order_and_queue(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/gw_dispatch_XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct store *st;
    char err[256];
    assert_int_equal(store_open(dir, 1, 64, &st, err, sizeof err), 0);
    /* Two changes of customer 7 and one of customer 8, all due. */
    const char *recs[] = {
        "{\"connection\":\"a\",\"entity\":\"Customer\",\"entity_id\":\"7\",\"state\":\"pending\","
        "\"due_ms\":100}",
        "{\"connection\":\"a\",\"entity\":\"Customer\",\"entity_id\":\"8\",\"state\":\"pending\","
        "\"due_ms\":101}",
        "{\"connection\":\"a\",\"entity\":\"Customer\",\"entity_id\":\"7\",\"state\":\"pending\","
        "\"due_ms\":102}",
    };
    const char *ekeys[] = {"a|Customer|7", "a|Customer|8", "a|Customer|7"};
    struct store_put p[3];
    for (int i = 0; i < 3; i++) {
        memset(&p[i], 0, sizeof p[i]);
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        store_dedupe_hash(key, NULL, p[i].key);
        p[i].rec = recs[i];
        p[i].rec_len = strlen(recs[i]);
        p[i].state = GW_PENDING;
        p[i].entity_key = ekeys[i];
        p[i].due_ms = 100 + i;
    }
    assert_int_equal(store_ingest(st, p, 3, err, sizeof err), 0);

    struct seen s = {.n = 0};
    assert_int_equal(store_scan_due(st, 1000, 100, NULL, due_cb, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 3);
    /* Only the oldest change of each entity may run. */
    assert_true(s.ids[0] == 1 && s.head[0]);
    assert_true(s.ids[1] == 2 && s.head[1]);
    assert_true(s.ids[2] == 3 && !s.head[2]);

    /* Event 1 fails and is due again later: event 3 still waits behind it. */
    struct change c = {1, "retrying", 5000};
    assert_int_equal(store_write(st, change_fn, &c, err, sizeof err), 0);
    s.n = 0;
    assert_int_equal(store_scan_due(st, 1000, 100, NULL, due_cb, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 2);
    assert_true(s.ids[0] == 2 && s.ids[1] == 3 && !s.head[1]);

    /* Event 1 is done: event 3 becomes the head; counters follow the states. */
    c = (struct change){1, "done", 0};
    assert_int_equal(store_write(st, change_fn, &c, err, sizeof err), 0);
    s.n = 0;
    assert_int_equal(store_scan_due(st, 1000, 100, NULL, due_cb, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 2);
    assert_true(s.ids[1] == 3 && s.head[1]);
    uint64_t counts[GW_STATE_COUNT];
    assert_int_equal(store_counts(st, counts, err, sizeof err), 0);
    assert_int_equal(counts[GW_PENDING], 2);
    assert_int_equal(counts[GW_DONE], 1);
    assert_int_equal(counts[GW_RETRYING], 0);

    /* Nothing is due before its time. */
    s.n = 0;
    assert_int_equal(store_scan_due(st, 100, 100, NULL, due_cb, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 0);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The room for payloads the poller offers: counted by their stored texts,
 * bounded by DISPATCH_OFFER_BYTES, given back when they are dropped (as a
 * forget does); one that does not fit is not kept, and its texts stay with
 * the caller. */
static void test_offer_room(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_in_flight = 8;
    struct dispatcher *d = dispatch_new(base, &cfg, NULL, NULL, NULL, NULL);
    json_t *payload = json_object(), *rec = json_object();
    char *ptext = strdup("{}"), *rtext = strdup("{\"state\":\"pending\"}");
    size_t plen = 1000, rlen = strlen(rtext); /* a payload counted as 1000 bytes */
    dispatch_offer(d, 1, payload, &ptext, plen, rec, &rtext, rlen);
    assert_null(ptext); /* kept with the offer */
    assert_null(rtext);
    assert_int_equal(dispatch_offered_bytes(d), plen + rlen);
    assert_int_equal(payload->refcount, 2);
    assert_int_equal(rec->refcount, 2);

    char *big = strdup("{}"), *brec = strdup("{}");
    dispatch_offer(d, 2, payload, &big, DISPATCH_OFFER_BYTES, rec, &brec, 2);
    assert_non_null(big); /* did not fit: not kept */
    assert_non_null(brec);
    assert_int_equal(dispatch_offered_bytes(d), plen + rlen);
    assert_int_equal(payload->refcount, 2);

    dispatch_offer(d, 3, payload, &big, DISPATCH_OFFER_BYTES - plen - rlen - 2, rec, &brec, 2);
    assert_null(big); /* fits exactly */
    assert_int_equal(dispatch_offered_bytes(d), DISPATCH_OFFER_BYTES);
    assert_int_equal(payload->refcount, 3);

    dispatch_drop_offers(d);
    assert_int_equal(dispatch_offered_bytes(d), 0);
    assert_int_equal(payload->refcount, 1);
    assert_int_equal(rec->refcount, 1);
    json_decref(payload);
    json_decref(rec);
    dispatch_free(d);
    event_base_free(base);
}

static int tokens_fn(struct store_txn *t, void *arg)
{
    char key[128];
    qbo_tokens_key(arg, key, sizeof key);
    json_t *tokens = json_pack("{s:s, s:I}", "refresh_token", "r", "updated_ms", (json_int_t)1);
    int rc = store_txn_meta_put(t, key, tokens);
    json_decref(tokens);
    return rc;
}

static void done_at_once(struct task *t)
{
    task_done(t);
}

static const struct flow quick_flows[] = {
    {"customers", GW_FLOW_CUSTOMERS, NULL, "Widget", done_at_once, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

/* An event whose claim and outcome are all the dispatcher waits for is not
 * kept waiting for company: with lazy jobs lingering 30 s, it is done at once. */
static void test_waiting_only_on_the_store_commits_at_once(void **state)
{
    (void)state;
    evthread_use_pthreads();
    snprintf(dir, sizeof dir, "/tmp/gw_dispatch_XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct store *st;
    char err[256];
    assert_int_equal(store_open(dir, 1, 64, &st, err, sizeof err), 0);
    const char *rec = "{\"connection\":\"a\",\"source\":\"test\",\"entity\":\"Widget\","
                      "\"entity_id\":\"1\",\"state\":\"pending\",\"due_ms\":100}";
    struct store_put p;
    memset(&p, 0, sizeof p);
    store_dedupe_hash("w1", NULL, p.key);
    p.rec = rec;
    p.rec_len = strlen(rec);
    p.state = GW_PENDING;
    p.entity_key = "a|Widget|1";
    p.due_ms = 100;
    assert_int_equal(store_ingest(st, &p, 1, err, sizeof err), 0);

    struct event_base *base = event_base_new();
    struct committer *cm = committer_start(base, st, 512);
    committer_set_linger(cm, 30.0);
    struct gw_connection conn = {.name = "a", .flows = GW_FLOW_CUSTOMERS};
    struct gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.conns = &conn;
    cfg.nconns = 1;
    cfg.max_in_flight = 8;
    cfg.max_in_flight_per_connection = 8;
    cfg.retry_first_s = 1;
    cfg.retry_max_s = 60;
    cfg.retry_give_up_s = 3600;
    cfg.qbo_rate_per_sec = 10;
    cfg.qbo_rate_per_min = 500;
    assert_int_equal(store_write(st, tokens_fn, "a", err, sizeof err), 0); /* authorised */
    struct gw_clients clients = {.qbo = qbo_new(base, &cfg, st, cm, NULL)};
    struct dispatcher *d = dispatch_new(base, &cfg, st, cm, &clients, quick_flows);
    dispatch_kick(d);
    const char *now = NULL;
    json_t *e = NULL;
    for (int i = 0; i < 50; i++) { /* 5 s at most */
        struct timeval tv = {0, 100 * 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        json_decref(e);
        assert_int_equal(store_get_event(st, 1, &e, err, sizeof err), 0);
        now = json_string_value(json_object_get(e, "state"));
        if (now != NULL && strcmp(now, "done") == 0 && dispatch_idle(d))
            break;
    }
    assert_string_equal(now, "done");
    json_decref(e);
    dispatch_free(d);
    committer_stop(cm);
    qbo_free(clients.qbo);
    event_base_free(base);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_entity_order_and_queue),
        cmocka_unit_test(test_offer_room),
        cmocka_unit_test(test_waiting_only_on_the_store_commits_at_once),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
