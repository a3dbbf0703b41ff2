/*
 * log.h - structured logging: one JSON object per line on stderr with ts,
 * level, msg and, where known, connection and event_id. Callers never pass
 * secrets or payload bodies; messages are plain text.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdint.h>

enum gw_log_level { GW_LOG_DEBUG, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };

void gw_log_set_level(enum gw_log_level level);
/* Parse "debug|info|warn|error"; returns -1 for anything else. */
int gw_log_level_parse(const char *s);
/* connection may be NULL, event_id 0 when not known. */
void gw_log(enum gw_log_level level, const char *connection, uint64_t event_id, const char *fmt,
            ...) __attribute__((format(printf, 4, 5)));

#define log_debug(...) gw_log(GW_LOG_DEBUG, NULL, 0, __VA_ARGS__)
#define log_info(...)  gw_log(GW_LOG_INFO, NULL, 0, __VA_ARGS__)
#define log_warn(...)  gw_log(GW_LOG_WARN, NULL, 0, __VA_ARGS__)
#define log_error(...) gw_log(GW_LOG_ERROR, NULL, 0, __VA_ARGS__)

#endif
