/*
 * cdc.h - QuickBooks change-data-capture sweeps: Intuit's remedy for missed
 * webhooks. For each connection whose enabled flows take QuickBooks changes,
 * a sweep asks for everything changed since the last checkpoint and stores
 * each change as an event through the same dedupe as webhooks (the change
 * key), so a change the webhook already brought is not processed twice. The
 * events and the new checkpoint are committed in one transaction.
 */
#ifndef GW_CDC_H
#define GW_CDC_H

#include "committer.h"
#include "config.h"
#include "store.h"

#include <event2/event.h>

struct cdc;
struct qbo;
struct dispatcher;
struct flow;

struct cdc *cdc_new(struct event_base *base, const struct gw_config *cfg, struct committer *cm,
                    struct qbo *qbo, struct store *st, struct dispatcher *d,
                    const struct flow *extra_flows);
void cdc_free(struct cdc *c);
/* Stop starting sweeps (a running one finishes); idle once none runs. */
void cdc_drain(struct cdc *c);
bool cdc_idle(const struct cdc *c);

/*
 * Turn a CDC response into events (source qbo-cdc) for connection conn; sets
 * *latest to the newest LastUpdatedTime seen (normalised), if any, and *rows
 * to the number of objects. Pure; unit tested.
 */
int cdc_parse(const struct gw_connection *conn, json_t *response, int64_t now_ms,
              struct gw_batch *out, char *latest, size_t latestlen, size_t *rows);

#endif
