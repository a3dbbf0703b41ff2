/*
 * ingest.h - new events on their way into the store: a batch of events (from
 * a webhook, a CDC sweep or a poll) made ready for store_txn_ingest, with the
 * records serialised and the keys hashed.
 */
#ifndef GW_INGEST_H
#define GW_INGEST_H

#include "event.h"
#include "store.h"

struct ingest_batch {
    struct gw_batch events; /* owned */
    struct store_put *puts; /* one per event, after ingest_prepare */
    char **texts;
    char **payloads;               /* serialised payloads */
    struct store_event_keys *keys; /* queue time and entity key, as every writer sees them */
};

/* Fill puts from events; 0, or -1 when memory ran out. */
int ingest_prepare(struct ingest_batch *b);
/* Stored new (not duplicate) pending events after a commit. */
size_t ingest_new_pending(const struct ingest_batch *b);
void ingest_batch_free(struct ingest_batch *b);

#endif
