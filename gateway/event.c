/*
 * event.c - event states and new-event records.
 */
#include "event.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[GW_STATE_COUNT] = {
    "pending", "in_flight", "retrying", "done", "skipped", "dead",
};

const char *event_state_name(enum gw_state s)
{
    return (unsigned)s < GW_STATE_COUNT ? state_names[s] : "unknown";
}

int event_state_parse(const char *name)
{
    for (int i = 0; i < GW_STATE_COUNT; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *event_new_record(const char *connection, const char *source, const char *entity,
                         const char *entity_id, const char *operation, enum gw_state state,
                         int64_t received_ms, const char *occurred_at, const char *reason,
                         const char *last_error, json_t *payload)
{
    char received[GW_TS_LEN];
    gw_ts_format(received_ms, received, sizeof received);
    json_t *r = json_object();
    json_object_set_new(r, "connection", json_string(connection));
    json_object_set_new(r, "source", json_string(source));
    json_object_set_new(r, "entity", str_or_null(entity));
    json_object_set_new(r, "entity_id", str_or_null(entity_id));
    json_object_set_new(r, "operation", str_or_null(operation));
    json_object_set_new(r, "state", json_string(event_state_name(state)));
    json_object_set_new(r, "attempts", json_integer(0));
    json_object_set_new(r, "received_at", json_string(received));
    if (state == GW_PENDING)
        json_object_set_new(r, "due_ms", json_integer((json_int_t)received_ms));
    json_object_set_new(r, "occurred_at", str_or_null(occurred_at));
    json_object_set_new(r, "reason", str_or_null(reason));
    json_object_set_new(r, "last_error", str_or_null(last_error));
    json_object_set_new(r, "payload", payload ? payload : json_null());
    return r;
}

#define HISTORY_CALLS_KEPT 3 /* attempts whose exchanges are kept */

void event_history_append(json_t *rec, json_t *entry)
{
    json_t *h = json_object_get(rec, "history");
    h = json_is_array(h) ? json_copy(h) : json_array();
    json_object_set_new(rec, "history", h);
    json_array_append_new(h, entry);
    while (json_array_size(h) > 50)
        json_array_remove(h, 10);
    /* The activity log (what was sent and answered) of the latest attempts
     * only: it is the bulk of a record, rewritten with every change. */
    size_t n = json_array_size(h);
    for (size_t i = 0; i + HISTORY_CALLS_KEPT < n; i++) {
        json_t *e = json_array_get(h, i);
        if (json_object_get(e, "calls") == NULL)
            continue;
        json_t *lean = json_copy(e); /* entries are shared with the stored record */
        json_object_del(lean, "calls");
        json_object_set_new(lean, "calls_removed", json_true());
        json_array_set_new(h, i, lean);
    }
}

int batch_add(struct gw_batch *b, char *dedupe_key, json_t *record, enum gw_state state)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4;
        struct gw_new_event *n = realloc(b->ev, cap * sizeof *n);
        if (n == NULL) {
            free(dedupe_key);
            json_decref(record);
            return -1;
        }
        b->ev = n;
        b->cap = cap;
    }
    json_object_set_new(record, "dedupe_key", json_string(dedupe_key));
    /* The payload is stored apart: state changes rewrite the record, never it. */
    json_t *payload = json_object_get(record, "payload");
    if (json_is_null(payload))
        payload = NULL;
    json_incref(payload);
    json_object_del(record, "payload");
    b->ev[b->n++] = (struct gw_new_event){dedupe_key, record, payload, state, NULL, 0};
    return 0;
}

void batch_free(struct gw_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->ev[i].dedupe_key);
        json_decref(b->ev[i].record);
        json_decref(b->ev[i].payload);
    }
    free(b->ev);
    b->ev = NULL;
    b->n = b->cap = 0;
}

void event_entity_key(json_t *rec, char *out, size_t outlen)
{
    const char *c = json_string_value(json_object_get(rec, "connection"));
    const char *e = json_string_value(json_object_get(rec, "entity"));
    const char *i = json_string_value(json_object_get(rec, "entity_id"));
    snprintf(out, outlen, "%s|%s|%s", c ? c : "", e ? e : "", i ? i : "");
}

void batch_set_client(struct gw_batch *b, const char *client)
{
    for (size_t i = 0; client != NULL && client[0] && i < b->n; i++)
        json_object_set_new(b->ev[i].record, "client", json_string(client));
}
