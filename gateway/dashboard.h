/*
 * dashboard.h - the admin listener's page (GET /): what happened to every
 * event at a glance - queue depths, each connection's health, the latest
 * events with their outcome. Plain server-rendered HTML, no scripts.
 */
#ifndef GW_DASHBOARD_H
#define GW_DASHBOARD_H

#include "config.h"
#include "store.h"

#include <stdio.h>

/* Write the page to out; 0, or -1 when the store could not be read. */
int dashboard_render(struct store *st, const struct gw_config *cfg, FILE *out);

#endif
