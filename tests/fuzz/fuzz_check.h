/* Checks the fuzz targets share: what a parser gave must be whole, and the
 * same again for the same input (a dedupe key that moved would let a
 * redelivered change be stored, and later booked, twice). */
#ifndef GW_FUZZ_CHECK_H
#define GW_FUZZ_CHECK_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

/* Every event has a key, a record that serialises, and one of the
 * connection names in conns (a NULL-terminated list); abort otherwise. */
static inline void check_batch(const struct gw_batch *b, const char *const *conns)
{
    for (size_t i = 0; i < b->n; i++) {
        char *s = json_dumps(b->ev[i].record, JSON_COMPACT | JSON_SORT_KEYS);
        if (s == NULL || b->ev[i].dedupe_key == NULL || b->ev[i].dedupe_key[0] == '\0')
            abort();
        free(s);
        const char *c = json_string_value(json_object_get(b->ev[i].record, "connection"));
        const char *const *k = conns;
        while (c != NULL && *k != NULL && strcmp(*k, c) != 0)
            k++;
        if (c == NULL || *k == NULL)
            abort();
    }
}

/* Two parses of one input: the same events, keys, states and records. */
static inline void check_same_batches(const struct gw_batch *a, const struct gw_batch *b)
{
    if (a->n != b->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->ev[i].dedupe_key, b->ev[i].dedupe_key) != 0 ||
            a->ev[i].state != b->ev[i].state || !json_equal(a->ev[i].record, b->ev[i].record) ||
            (a->ev[i].payload == NULL) != (b->ev[i].payload == NULL) ||
            (a->ev[i].payload && !json_equal(a->ev[i].payload, b->ev[i].payload)))
            abort();
    }
}

#endif
