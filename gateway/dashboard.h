/*
 * dashboard.h - the admin listener's page: queue depths, each connection's
 * health, the latest events, one event's activity and its replay. Plain HTML,
 * CSS and a little JavaScript (gateway/dashboard/), built into the daemon.
 * The files hold no data: the page reads the admin API with the admin token,
 * so they are served to anyone who reaches the admin listener.
 */
#ifndef GW_DASHBOARD_H
#define GW_DASHBOARD_H

#include <stddef.h>

struct dashboard_asset {
    const char *path; /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

/* Made at build time by cmake/embed.cmake; ends with a NULL path. */
extern const struct dashboard_asset dashboard_assets[];

/* The file a GET of path names ("/" is "/index.html"), or NULL. */
const struct dashboard_asset *dashboard_asset(const char *path);

/* The security headers every admin answer carries: what the page may load
 * (only its own files; no inline script or style, no frames). */
#define DASHBOARD_CSP                                                                              \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#endif
