/*
 * clients.h - the API clients a handler may use, handed to it in its task.
 */
#ifndef GW_CLIENTS_H
#define GW_CLIENTS_H

struct gw_clients {
    struct qbo *qbo;
    struct mplus *mplus;
    struct mapper *mapper;
    struct lookup_cache *made; /* what the flows are making (handlers/lookup.c) */
    long body_max;             /* bytes of a body the activity log keeps (activity_body_max) */
};

#endif
