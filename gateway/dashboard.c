/*
 * dashboard.c - finding the dashboard's built-in files by URL path.
 */
#include "dashboard.h"

#include <string.h>

const struct dashboard_asset *dashboard_asset(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (const struct dashboard_asset *a = dashboard_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}
