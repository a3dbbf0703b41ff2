/*
 * log.c - JSON-lines logger. jansson does the escaping so a hostile string in
 * a message (a path, a header value) cannot break the line structure.
 */
#include "log.h"
#include "jsonout.h"
#include "util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum gw_log_level min_level = GW_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log_set_level(enum gw_log_level level)
{
    min_level = level;
}

int gw_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void gw_log(enum gw_log_level level, const char *connection, uint64_t event_id, const char *fmt,
            ...)
{
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char ts[GW_TS_LEN];
    gw_ts_format(gw_now_ms(), ts, sizeof ts);
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_names[level]));
    /* json_stringn_nocheck would accept invalid UTF-8; keep the checked form and
     * fall back to a marker so a log line is never dropped silently. */
    json_t *m = json_string(msg);
    json_object_set_new(o, "msg", m ? m : json_string("(message not valid UTF-8)"));
    if (connection != NULL && connection[0] != '\0')
        json_object_set_new(o, "connection", json_string(connection));
    if (event_id != 0)
        json_object_set_new(o, "event_id", json_integer((json_int_t)event_id));
    char *line = gw_json_text(o, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    if (line != NULL) {
        fprintf(stderr, "%s\n", line);
        free(line);
    }
    json_decref(o);
}
