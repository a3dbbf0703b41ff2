/*
 * replay.c - re-queue events.
 */
#include "replay.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

struct replay_arg {
    const struct replay_filter *f;
    json_t *ids;
};

static bool matches(json_t *rec, const char *field, const char *want)
{
    const char *v = json_string_value(json_object_get(rec, field));
    return want == NULL || (v != NULL && strcmp(v, want) == 0);
}

static int collect_cb(uint64_t id, const char *text, size_t len, void *arg)
{
    struct replay_arg *a = arg;
    const struct replay_filter *f = a->f;
    json_t *rec = json_loadb(text, len, 0, NULL);
    if (rec == NULL)
        return 0;
    int64_t received = 0;
    gw_ts_parse(json_string_value(json_object_get(rec, "received_at")) ?: "", &received);
    if (matches(rec, "state", "dead") && matches(rec, "source", f->source) &&
        matches(rec, "entity", f->entity) && matches(rec, "connection", f->connection) &&
        (f->since_ms == 0 || received >= f->since_ms) &&
        (f->until_ms == 0 || received < f->until_ms))
        json_array_append_new(a->ids, json_integer((json_int_t)id));
    json_decref(rec);
    return 0;
}

struct requeue_arg {
    json_t *ids;
    uint64_t running; /* an event found in flight: nothing was changed */
};

/* One transaction re-queues them all, after checking each as it stands. */
static int requeue_fn(struct store_txn *t, void *arg)
{
    struct requeue_arg *a = arg;
    json_t *ids = a->ids;
    int64_t now = gw_now_ms();
    char ts[GW_TS_LEN];
    gw_ts_format(now, ts, sizeof ts);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        json_t *rec;
        int rc = store_txn_get_event(t, (uint64_t)json_integer_value(v), &rec);
        if (rc != 0)
            return rc;
        struct store_event_keys old;
        store_event_keys(rec, &old);
        if (old.state == GW_IN_FLIGHT) {
            a->running = (uint64_t)json_integer_value(v);
            json_decref(rec);
            return STORE_EFAIL;
        }
        event_history_append(rec, json_pack("{s:s, s:s, s:s, s:O}", "at", ts, "outcome", "replayed",
                                            "from_state", event_state_name(old.state), "attempts",
                                            json_object_get(rec, "attempts")));
        json_object_set_new(rec, "state", json_string("pending"));
        json_object_set_new(rec, "attempts", json_integer(0));
        /* A new generation of QBO requestids (task_requestid). */
        json_object_set_new(rec, "replays",
                            json_integer(json_integer_value(json_object_get(rec, "replays")) + 1));
        json_object_set_new(rec, "reason", json_null());
        json_object_set_new(rec, "last_error", json_null());
        json_object_set_new(rec, "due_ms", json_integer((json_int_t)now));
        json_object_del(rec, "next_attempt_at");
        rc = store_txn_put_event(t, (uint64_t)json_integer_value(v), rec, &old, NULL);
        json_decref(rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int replay_run(struct store *st, const struct replay_filter *f, json_t **ids, char *err,
               size_t errlen)
{
    struct replay_arg a = {f, json_array()};
    if (f->event_id != 0) {
        json_array_append_new(a.ids, json_integer((json_int_t)f->event_id));
    } else if (store_scan_events(st, collect_cb, &a, err, errlen) != 0) {
        json_decref(a.ids);
        return STORE_EFAIL;
    }
    struct requeue_arg r = {a.ids, 0};
    int rc = 0;
    if (f->dry_run && f->event_id != 0) {
        /* Only says what a replay would do: a look at the one event. */
        json_t *rec;
        if ((rc = store_get_event(st, f->event_id, &rec, err, errlen)) == 0) {
            struct store_event_keys k;
            store_event_keys(rec, &k);
            json_decref(rec);
            if (k.state == GW_IN_FLIGHT) {
                r.running = f->event_id;
                rc = STORE_EFAIL;
            }
        }
    } else if (!f->dry_run && json_array_size(a.ids) > 0) {
        /* Each event is checked in the transaction that re-queues it. */
        rc = store_write(st, requeue_fn, &r, err, errlen);
    }
    if (rc != 0) {
        if (r.running != 0)
            snprintf(err, errlen, "event %llu is running now; replay it once it has ended",
                     (unsigned long long)r.running);
        json_decref(a.ids);
        return rc;
    }
    *ids = a.ids;
    return 0;
}
