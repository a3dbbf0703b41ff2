/*
 * dispatch.h - the dispatcher: drives every stored event to an outcome.
 *
 * It takes due events from the queue, runs the flow handler of each, and
 * turns the handler's outcome into the event's next state - the one place
 * where states change. Events of one entity (connection, type, id) run one
 * at a time, oldest first. Caps bound the work in flight, globally and per
 * connection; a per-connection circuit breaker stops spending attempts while
 * the other side is down; failed attempts come back after an exponential
 * backoff with full jitter until they give up as dead.
 */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include "committer.h"
#include "config.h"
#include "store.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>

struct flow;
struct gw_clients;
struct dispatcher;

struct dispatcher *dispatch_new(struct event_base *base, const struct gw_config *cfg,
                                struct store *st, struct committer *committer,
                                struct gw_clients *clients, const struct flow *extra_flows);
/* Look for due events soon (new events were stored). */
void dispatch_kick(struct dispatcher *d);
/*
 * A just-polled event as the poller made it: its payload and record as
 * parsed, and their texts as stored (references are taken; the texts too,
 * set to NULL, when the offer is kept). Its first run uses the parsed ones
 * instead of parsing the stored texts again, as long as the store holds those
 * very texts (a forget may rewrite them). Offers are kept up to
 * DISPATCH_OFFER_BYTES of stored text (parsed, a payload takes about seven
 * times its text), the oldest first (they run first); the others are parsed
 * from the store as usual.
 */
void dispatch_offer(struct dispatcher *d, uint64_t id, json_t *payload, char **payload_text,
                    size_t payload_len, json_t *record, char **record_text, size_t record_len);
#define DISPATCH_OFFER_BYTES (1u << 20)
/* Stored text of the payloads offered and not yet taken, in bytes. */
size_t dispatch_offered_bytes(const struct dispatcher *d);
/* Drop the payloads offered (a forget rewrote the store: their memory goes at once). */
void dispatch_drop_offers(struct dispatcher *d);
/* Stop taking new events; those running finish. */
void dispatch_drain(struct dispatcher *d);
/* Nothing running and nothing waiting for a commit. */
bool dispatch_idle(const struct dispatcher *d);
void dispatch_free(struct dispatcher *d);

/* Per-connection state for status (circuit, work in flight). New object. */
json_t *dispatch_status(struct dispatcher *d, const struct gw_connection *c);

/*
 * Delay before retry number attempt (1-based) under the policy: full jitter
 * over min(max_s, first_s * 2^(attempt-1)). rnd is a uniform draw in [0, 1).
 */
int64_t dispatch_backoff_ms(const struct gw_config *cfg, unsigned attempt, double rnd);

#endif
