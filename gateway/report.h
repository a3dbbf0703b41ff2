/*
 * report.h - what operators read: the event list, one event in full, and the
 * status summary, as JSON. The CLI prints them; the admin API serves them.
 */
#ifndef GW_REPORT_H
#define GW_REPORT_H

#include "config.h"
#include "store.h"

#include <jansson.h>
#include <stdint.h>

struct event_filter {
    int state; /* -1 = any */
    const char *source, *connection, *entity;
    long limit;      /* 0 = all */
    uint64_t before; /* only events older than this id (paging); 0 = from the newest */
};

/* New array of event summaries, newest first; NULL with err on failure. */
json_t *report_events(struct store *st, const struct event_filter *f, char *err, size_t errlen);
/*
 * New object: the events received per minute over the last minutes (up to
 * now_ms), oldest first, every minute listed: {minutes: [{at, received,
 * <state>: n ...}]} with each event counted under its state now.
 */
json_t *report_activity(struct store *st, int minutes, int64_t now_ms, char *err, size_t errlen);
/* New object: the event in full, with its raw body when one was kept. */
json_t *report_event(struct store *st, uint64_t id, int *rc, char *err, size_t errlen);
/* New object: queue depths by state and per-connection settings. inbox: the
 * webhooks waiting in the inbox, as the daemon knows them, or -1 to count
 * them from its files (another process; this reads the newest file). */
json_t *report_status(struct store *st, const struct gw_config *cfg, int64_t inbox, char *err,
                      size_t errlen);

#endif
