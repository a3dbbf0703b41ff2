/*
 * admin.h - the admin API (admin.c): what server.c's admin listener hands
 * each request to.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include "config.h"

#include <event2/http.h>
#include <jansson.h>

struct store;
struct gw_clients;
struct dispatcher;
struct committer;
struct inbox;
struct alerts;

/* What the API reaches in the daemon. The last three are the server's own
 * fields, read at each request: they are made (or replaced) after the API. */
struct admin_deps {
    const struct gw_config *cfg;
    struct store *st;
    struct gw_clients *clients;
    struct dispatcher *dispatcher;
    struct committer *committer;
    struct inbox *const *inbox;
    struct alerts *const *alerts;
    json_t *const *live; /* each connection's live view, for /metrics */
};

struct admin;
struct admin *admin_new(const struct admin_deps *d);
void admin_free(struct admin *a);

/* Answer one request of the admin listener (now, or later from the loop). */
void admin_handle(struct admin *a, struct evhttp_request *req);

#endif
