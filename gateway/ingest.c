/*
 * ingest.c - prepare new events for the store.
 */
#include "ingest.h"
#include "jsonout.h"

#include <stdlib.h>
#include <string.h>

int ingest_prepare(struct ingest_batch *b)
{
    size_t n = b->events.n;
    b->puts = calloc(n ? n : 1, sizeof *b->puts);
    b->texts = calloc(n ? n : 1, sizeof *b->texts);
    b->keys = calloc(n ? n : 1, sizeof *b->keys);
    b->payloads = calloc(n ? n : 1, sizeof *b->payloads);
    if (b->puts == NULL || b->texts == NULL || b->keys == NULL || b->payloads == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct gw_new_event *e = &b->events.ev[i];
        struct store_put *p = &b->puts[i];
        b->texts[i] = gw_json_text(e->record, JSON_COMPACT | JSON_PRESERVE_ORDER, &p->rec_len);
        if (b->texts[i] == NULL)
            return -1;
        const char *occurred = json_string_value(json_object_get(e->record, "occurred_at"));
        store_dedupe_hash(e->dedupe_key, occurred, p->key);
        p->rec = b->texts[i];
        if (e->payload != NULL) {
            b->payloads[i] =
                gw_json_text(e->payload, JSON_COMPACT | JSON_PRESERVE_ORDER, &p->payload_len);
            if (b->payloads[i] == NULL)
                return -1;
            p->payload = b->payloads[i];
        } else {
            p->payload = e->raw;
            p->payload_len = e->raw_len;
        }
        store_event_keys(e->record, &b->keys[i]);
        p->state = b->keys[i].state;
        p->due_ms = b->keys[i].due_ms;
        p->entity_key = b->keys[i].ekey;
        const char *change = json_string_value(json_object_get(e->record, "change_key"));
        if (change != NULL) {
            store_dedupe_hash(change, occurred, p->key2);
            p->has_key2 = true;
            /* Two webhooks may name one second: only CDC rows are deduped by it. */
            const char *source = json_string_value(json_object_get(e->record, "source"));
            p->key2_dedupes = source != NULL && strcmp(source, GW_SRC_QBO_CDC) == 0;
        }
    }
    return 0;
}

size_t ingest_new_pending(const struct ingest_batch *b)
{
    size_t n = 0;
    for (size_t i = 0; b->puts && i < b->events.n; i++)
        n += !b->puts[i].duplicate && b->puts[i].state == GW_PENDING;
    return n;
}

void ingest_batch_free(struct ingest_batch *b)
{
    for (size_t i = 0; i < b->events.n; i++) {
        if (b->texts != NULL)
            free(b->texts[i]);
        if (b->payloads != NULL)
            free(b->payloads[i]);
    }
    free(b->texts);
    free(b->payloads);
    b->payloads = NULL;
    free(b->keys);
    free(b->puts);
    batch_free(&b->events);
    b->texts = NULL;
    b->keys = NULL;
    b->puts = NULL;
}
