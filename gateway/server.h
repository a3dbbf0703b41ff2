/*
 * server.h - `gateway serve`: the ingress. evhttp listeners for webhooks and
 * the admin API on one libevent loop, signature checks, and the group-commit
 * pipeline that acknowledges a webhook only after its events are durable.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "config.h"
#include "store.h"

struct flow;

/*
 * Run until SIGTERM/SIGINT, then drain and return 0; -1 when it cannot start.
 * extra_flows (NULL in the product) adds flows ahead of the shipped ones.
 */
int server_run(const struct gw_config *cfg, struct store *st, const struct flow *extra_flows);

#endif
