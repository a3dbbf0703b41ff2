/*
 * event.h - the event: one entity change to carry from one side to the other.
 * Its states are the contract's; a new event is a JSON record (see
 * event_new_record) plus a dedupe key, collected in a batch until the store
 * commits it.
 */
#ifndef GW_EVENT_H
#define GW_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gw_state {
    GW_PENDING,
    GW_IN_FLIGHT,
    GW_RETRYING,
    GW_DONE,
    GW_SKIPPED,
    GW_DEAD,
    GW_STATE_COUNT
};

const char *event_state_name(enum gw_state s);
/* Returns the state, or -1 when name is not one. */
int event_state_parse(const char *name);

/* Sources of events, as the contract spells them. */
#define GW_SRC_QUICKBOOKS "quickbooks"
#define GW_SRC_MPLUS      "mplus"
#define GW_SRC_MPLUS_POLL "mplus-poll"
#define GW_SRC_QBO_CDC    "qbo-cdc"

/* A new event waiting to be stored. */
struct gw_new_event {
    char *dedupe_key; /* owned; the human-readable key of DESIGN 4.4 */
    json_t *record;   /* owned reference; fields as in event_new_record */
    json_t *payload;  /* owned; what came in, stored apart from the record, or NULL */
    enum gw_state state;
    const void *raw; /* borrowed raw body kept with the event (malformed input), or NULL */
    size_t raw_len;
};

struct gw_batch {
    struct gw_new_event *ev;
    size_t n, cap;
};

/*
 * Build a new event record. connection may be "" (unknown realm); payload
 * (what came in) is consumed (a reference is stolen), may be NULL; batch_add
 * moves it out of the record, to be stored apart. reason and last_error may be
 * NULL. Returns a new reference.
 */
json_t *event_new_record(const char *connection, const char *source, const char *entity,
                         const char *entity_id, const char *operation, enum gw_state state,
                         int64_t received_ms, const char *occurred_at, const char *reason,
                         const char *last_error, json_t *payload);

/*
 * The key that orders an event among others of the same thing:
 * "connection|entity|entity_id". Events with one key run one at a time.
 */
void event_entity_key(json_t *rec, char *out, size_t outlen);

/*
 * Append entry (consumed) to the record's history, bounded: past 50 entries
 * the oldest after the first 10 go. The array is replaced by a copy first, so
 * a record that shares it with another (a shallow copy) leaves that one be.
 */
void event_history_append(json_t *rec, json_t *entry);

/* Append to the batch; consumes record and dedupe_key (a malloc'd string). */
int batch_add(struct gw_batch *b, char *dedupe_key, json_t *record, enum gw_state state);
void batch_free(struct gw_batch *b);
/* Note on every record who sent it (the client address as the logs give it). */
void batch_set_client(struct gw_batch *b, const char *client);

#endif
