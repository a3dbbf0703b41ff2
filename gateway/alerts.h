/*
 * alerts.h - conditions that need a person, logged, listed in `status` and
 * sent to a signed webhook (alerts.c).
 */
#ifndef GW_ALERTS_H
#define GW_ALERTS_H

#include "config.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>

struct alerts;
struct http_client;
struct store;

struct alerts *alerts_new(struct event_base *base, const struct gw_config *cfg,
                          struct http_client *http, struct store *st);
/* Call after http_client_free: messages not yet delivered are dropped. */
void alerts_free(struct alerts *a);
/* Look again: live is the daemon's view per connection (name -> object, as
 * `status` shows it: authorised, circuit, mplus_login_refused_until, ...);
 * inbox the webhooks waiting in the inbox. */
void alerts_update(struct alerts *a, json_t *live, uint64_t inbox);
/* New array of the open conditions: {connection, condition, since, detail}. */
json_t *alerts_open(struct alerts *a);

#endif
