/*
 * poller.h - MplusKASSA change polling. Mplus pushes no data-change
 * webhooks: every document, article, group, relation and stock change is
 * read by sync marker (stock: by stockId). Per connection and entity, a
 * poll asks from the stored marker + 1, a page at a time, and turns each
 * changed object into an event whose dedupe key holds its marker; the
 * marker advances in the same transaction that stores the page's events,
 * so a crash can neither skip nor repeat a change.
 */
#ifndef GW_POLLER_H
#define GW_POLLER_H

#include "committer.h"
#include "config.h"
#include "store.h"

#include <event2/event.h>
#include <jansson.h>

struct poller;
struct mplus;
struct dispatcher;

struct poller *poller_new(struct event_base *base, const struct gw_config *cfg,
                          struct committer *cm, struct store *st, struct mplus *mplus,
                          struct dispatcher *d);
void poller_free(struct poller *p);

/* Stop starting polls (the ones running finish); idle once none runs. */
void poller_drain(struct poller *p);
bool poller_idle(const struct poller *p);

/* A till sale completed on connection c: poll receipts and invoices now (debounced). */
void poller_nudge(struct poller *p, const struct gw_connection *c);

/* Per-entity marker, last poll and last error of a connection. New object. */
json_t *poller_status(struct poller *p, const struct gw_connection *c);

/*
 * Turn one page of a poll answer into events (pure; unit tested). kind is
 * the entity polled ("receipts", "relations", ...). *max_marker gets the
 * highest marker seen (unchanged when none); *objects the page's size.
 */
int poller_parse_page(const struct gw_connection *c, const char *kind, json_t *response,
                      int64_t now_ms, struct gw_batch *out, int64_t *max_marker, size_t *objects);

/* The meta key holding a connection's marker for kind. */
void poller_marker_key(const char *conn, const char *kind, char *out, size_t outlen);

#endif
