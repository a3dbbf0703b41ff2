/*
 * report.c - event listings and status for the CLI and the admin API.
 */
#include "report.h"
#include "inbox.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fields of an event summary, in the order they are printed. */
static const char *const summary_fields[] = {
    "id",    "connection", "source", "entity",      "entity_id",  "operation",
    "state", "attempts",   "reason", "received_at", "last_error",
};

struct list_arg {
    const struct event_filter *f;
    json_t *out;
};

static bool field_is(json_t *rec, const char *name, const char *want)
{
    if (want == NULL)
        return true;
    const char *v = json_string_value(json_object_get(rec, name));
    return v != NULL && strcmp(v, want) == 0;
}

static int list_cb(uint64_t id, const char *text, size_t len, void *arg)
{
    struct list_arg *a = arg;
    json_t *rec = json_loadb(text, len, 0, NULL);
    if (rec == NULL)
        return 0;
    const struct event_filter *f = a->f;
    if ((f->state < 0 || field_is(rec, "state", event_state_name(f->state))) &&
        field_is(rec, "source", f->source) && field_is(rec, "connection", f->connection) &&
        field_is(rec, "entity", f->entity)) {
        json_t *s = json_object();
        json_object_set_new(rec, "id", json_integer((json_int_t)id));
        for (size_t i = 0; i < sizeof summary_fields / sizeof summary_fields[0]; i++) {
            json_t *v = json_object_get(rec, summary_fields[i]);
            json_object_set(s, summary_fields[i], v ? v : json_null());
        }
        json_array_append_new(a->out, s);
    }
    json_decref(rec);
    return f->limit > 0 && json_array_size(a->out) >= (size_t)f->limit;
}

json_t *report_events(struct store *st, const struct event_filter *f, char *err, size_t errlen)
{
    struct list_arg a = {f, json_array()};
    if (store_scan_events_before(st, f->before, list_cb, &a, err, errlen) < 0) {
        json_decref(a.out);
        return NULL;
    }
    return a.out;
}

struct activity_arg {
    int64_t first_ms; /* the first minute counted */
    json_t *minutes;  /* array, oldest first */
};

static int activity_cb(uint64_t id, const char *text, size_t len, void *arg)
{
    (void)id;
    struct activity_arg *a = arg;
    json_t *rec = json_loadb(text, len, 0, NULL);
    int64_t ms;
    const char *at = gw_str(rec, "received_at");
    int stop = 0;
    if (at != NULL && gw_ts_parse(at, &ms)) {
        if (ms < a->first_ms) {
            stop = 1; /* ids grow with time: the rest is older */
        } else {
            json_t *m = json_array_get(a->minutes, (size_t)((ms - a->first_ms) / 60000));
            const char *state = gw_str(rec, "state");
            if (m != NULL) {
                json_object_set_new(
                    m, "received",
                    json_integer(json_integer_value(json_object_get(m, "received")) + 1));
                if (state != NULL)
                    json_object_set_new(
                        m, state, json_integer(json_integer_value(json_object_get(m, state)) + 1));
            }
        }
    }
    json_decref(rec);
    return stop;
}

json_t *report_activity(struct store *st, int minutes, int64_t now_ms, char *err, size_t errlen)
{
    struct activity_arg a = {(now_ms / 60000 - minutes + 1) * 60000, json_array()};
    for (int i = 0; i < minutes; i++) {
        char ts[GW_TS_LEN];
        gw_ts_format(a.first_ms + (int64_t)i * 60000, ts, sizeof ts);
        json_t *m = json_pack("{s:s, s:I}", "at", ts, "received", (json_int_t)0);
        for (int s = 0; s < GW_STATE_COUNT; s++)
            json_object_set_new(m, event_state_name(s), json_integer(0));
        json_array_append_new(a.minutes, m);
    }
    if (store_scan_events(st, activity_cb, &a, err, errlen) < 0) {
        json_decref(a.minutes);
        return NULL;
    }
    return json_pack("{s:o}", "minutes", a.minutes);
}

static int covered_cb(const char *name, size_t namelen, const char *value, size_t len, void *arg)
{
    (void)name;
    (void)namelen;
    json_t *v = json_loadb(value, len, 0, NULL);
    if (v != NULL)
        json_array_append_new(arg, v);
    return 0;
}

/*
 * A daily summary's event also shows what is booked for its day (the
 * entries and the figures they add up to) and the receipts it covers (the
 * sales flow lists each it leaves to the summary).
 */
static void summary_view(struct store *st, json_t *rec)
{
    const char *conn = json_string_value(json_object_get(rec, "connection"));
    const char *day = json_string_value(json_object_get(rec, "entity_id"));
    if (conn == NULL || day == NULL)
        return;
    char key[300];
    snprintf(key, sizeof key, "idmap.%s.summary.%s", conn, day);
    json_t *booked = NULL;
    if (store_meta_get(st, key, &booked, NULL, 0) == 0)
        json_object_set_new(rec, "booked", booked);
    snprintf(key, sizeof key, "idmap.%s.summary.%s/", conn, day);
    json_t *receipts = json_array();
    if (store_meta_scan(st, key, covered_cb, receipts, NULL, 0) == 0)
        json_object_set_new(rec, "receipts", receipts);
    else
        json_decref(receipts);
}

json_t *report_event(struct store *st, uint64_t id, int *rc, char *err, size_t errlen)
{
    json_t *rec;
    *rc = store_get_event(st, id, &rec, err, errlen);
    if (*rc < 0)
        return NULL;
    void *raw;
    size_t len;
    if (store_get_payload(st, id, &raw, &len, NULL, 0) == 0) {
        json_t *payload = json_loadb(raw, len, JSON_DECODE_ANY, NULL);
        if (payload != NULL && !json_is_null(json_object_get(rec, "reason")) &&
            strcmp(json_string_value(json_object_get(rec, "reason")) ?: "", "malformed") == 0) {
            json_decref(payload);
            payload = NULL;
        }
        if (payload != NULL) {
            json_object_set_new(rec, "payload", payload);
        } else {
            /* A malformed body is hostile input: shown as text only when it
             * is valid UTF-8, else by its length. */
            json_t *s = json_stringn(raw, len);
            json_object_set_new(rec, "raw_body", s ? s : json_null());
            json_object_set_new(rec, "raw_body_bytes", json_integer((json_int_t)len));
        }
        free(raw);
    }
    if (strcmp(json_string_value(json_object_get(rec, "entity")) ?: "", "summary") == 0)
        summary_view(st, rec);
    return rec;
}

json_t *report_status(struct store *st, const struct gw_config *cfg, int64_t inbox_known, char *err,
                      size_t errlen)
{
    uint64_t counts[GW_STATE_COUNT];
    if (store_counts(st, counts, err, errlen) < 0)
        return NULL;
    json_t *o = json_object();
    json_t *q = json_object();
    for (int s = 0; s < GW_STATE_COUNT; s++)
        json_object_set_new(q, event_state_name(s), json_integer((json_int_t)counts[s]));
    json_object_set_new(o, "events", q);
    /* Webhooks accepted in a burst, not yet events. */
    uint64_t inbox = inbox_known >= 0 ? (uint64_t)inbox_known : 0, done = 0;
    if (inbox_known < 0) { /* another process: count the records, reading the last file */
        json_t *d = NULL;
        if (store_meta_get(st, INBOX_DONE_KEY, &d, NULL, 0) == 0 && json_is_integer(d))
            done = (uint64_t)json_integer_value(d);
        json_decref(d);
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/inbox", cfg->storage_path);
        inbox_count(dir, done, &inbox);
    }
    json_object_set_new(o, "inbox", json_integer((json_int_t)inbox));
    int64_t oldest = 0;
    if (store_oldest_queued(st, &oldest, NULL, 0) == 0 && oldest > 0) {
        char ts[GW_TS_LEN];
        gw_ts_format(oldest, ts, sizeof ts);
        json_object_set_new(o, "oldest_queued_at", json_string(ts));
    }
    json_object_set_new(o, "storage_path", json_string(cfg->storage_path));
    json_object_set_new(o, "storage_map_bytes", json_integer((json_int_t)store_map_size(st)));
    /* The daemon keeps its live view (circuit, tokens, throttling) in the store. */
    json_t *live = NULL;
    store_meta_get(st, "daemon.status", &live, NULL, 0);
    json_t *conns = json_array();
    for (size_t i = 0; i < cfg->nconns; i++) {
        const struct gw_connection *c = &cfg->conns[i];
        json_t *co =
            json_pack("{s:s, s:s?, s:s?, s:b}", "name", c->name, "realm_id", c->realm_id, "flows",
                      c->flows_text, "mplus_callbacks", c->mplus_webhook_key_len > 0);
        json_t *l = json_object_get(json_object_get(live, "connections"), c->name);
        if (json_is_object(l))
            json_object_update(co, l);
        json_array_append_new(conns, co);
    }
    /* Conditions that need a person (alerts.c), while the daemon runs. */
    json_t *alerts = json_object_get(live, "alerts");
    json_object_set_new(o, "alerts", json_is_array(alerts) ? json_incref(alerts) : json_array());
    json_decref(live);
    json_object_set_new(o, "connections", conns);
    return o;
}
