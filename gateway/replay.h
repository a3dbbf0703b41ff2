/*
 * replay.h - put events back in the queue: one by id, or the dead ones that
 * match a filter. Attempts start again from zero; the history is kept, with
 * a line saying when the event was replayed. A running daemon picks them up
 * within a second.
 */
#ifndef GW_REPLAY_H
#define GW_REPLAY_H

#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct replay_filter {
    uint64_t event_id;          /* one event; 0 = dead events matching the rest */
    int64_t since_ms, until_ms; /* received_at window; 0 = open */
    const char *source, *entity, *connection;
    bool dry_run;
};

/* *ids becomes a new array of the ids re-queued (or that would be, in a dry run). */
int replay_run(struct store *st, const struct replay_filter *f, json_t **ids, char *err,
               size_t errlen);

#endif
