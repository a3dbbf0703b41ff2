/*
 * webhook.h - normalise: turn a verified webhook body into events. Pure
 * functions of (config, body, clock), no I/O, so they are unit tested on the
 * real fixtures and fuzzed.
 */
#ifndef GW_WEBHOOK_H
#define GW_WEBHOOK_H

#include "config.h"
#include "event.h"

#include <stdbool.h>

/*
 * QuickBooks: a legacy {"eventNotifications":[...]} object or a CloudEvents
 * array. Appends one event per entity change to out. A body that is not
 * JSON, or not one of the two shapes, becomes one dead event with reason
 * "malformed" holding the raw body; an entity missing its fields becomes a
 * dead "malformed" event holding that entity. An unknown realm gives a
 * skipped event. Returns 0, or -1 when memory ran out.
 */
int webhook_parse_qbo(const struct gw_config *cfg, const char *body, size_t len, int64_t now_ms,
                      struct gw_batch *out);

/*
 * The key of one QuickBooks change, whoever reports it (a webhook or a CDC
 * sweep): "qbo-change|realm|entity|id|time", time normalised to the second.
 * Webhooks record it; a CDC row whose key is recorded is not stored again.
 * New string.
 */
char *webhook_change_key(const char *realm, const char *entity, const char *id,
                         const char *occurred);

/* What the Mplus endpoint should answer after storing. */
enum mplus_verdict {
    MPLUS_STORED,    /* a sync-relevant event (completeSession, creditSession) */
    MPLUS_IGNORED,   /* a valid callback that carries nothing to sync: counted only */
    MPLUS_MALFORMED, /* not JSON or not an event: kept as a dead event, INVALID_JSON */
};

/*
 * Mplus till callback for connection conn and event name (from the URL path).
 * An error request (Mplus's wrapper with the original event in "original") is
 * unwrapped. Appends at most one event. Returns the verdict, or -1 on memory.
 */
int webhook_parse_mplus(const struct gw_connection *conn, const char *event_name, const char *body,
                        size_t len, int64_t now_ms, struct gw_batch *out);

#endif
