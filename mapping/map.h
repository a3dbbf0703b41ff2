/*
 * map.h - the data mapper. Mappings are jq programs, run in-process with
 * libjq (the only module that includes jq.h). A program receives
 * {source, existing, settings, connection} and returns the target record.
 * Every flow direction has a default program in this folder; a connection
 * may name its own file instead. Programs compile once at start: a syntax
 * error stops the start with file and line. A runtime error fails only the
 * event that met it, with a clear message.
 */
#ifndef GW_MAP_H
#define GW_MAP_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>

/* The mappings a flow direction can have, by name. */
#define MAP_CUSTOMERS_TO_QBO   "customers-to-qbo"
#define MAP_CUSTOMERS_TO_MPLUS "customers-to-mplus"
#define MAP_SALES_TO_QBO       "sales-to-qbo"
#define MAP_PRODUCTS_TO_QBO    "products-to-qbo"
#define MAP_PRODUCTS_TO_MPLUS  "products-to-mplus"
#define MAP_SUMMARY_TO_QBO     "summary-to-qbo"

struct mapper;

/* Whether name is one of the mappings above. */
bool map_known(const char *name);

/* The connection's own program for mapping name (map_<name> key), or NULL. */
const char *map_override(const struct gw_connection *c, const char *name);

/*
 * Compile the mappings of every connection's enabled flows: the connection's
 * own file (map_<name> key, '-' as '_') or dir/<name>.jq; dir also holds the
 * jq library gateway.jq every program includes. New mapper in *out.
 */
int map_open(const struct gw_config *cfg, const char *dir, struct mapper **out, char *err,
             size_t errlen);
void map_close(struct mapper *m);

/* How many programs m holds; whether they were compiled as one (a file that
 * imports modules of its own makes each be compiled alone, which takes
 * longer to start). */
size_t map_programs(const struct mapper *m, bool *together);

/*
 * Run mapping name of connection c. existing may be NULL. *out is a new
 * object, without the members the program left null (nor objects left
 * empty by that). Returns 0, or -1 with err saying what went wrong (for the event's
 * last_error).
 */
int map_run(struct mapper *m, const struct gw_connection *c, const char *name, json_t *source,
            json_t *existing, json_t **out, char *err, size_t errlen);

/* The same, as compact JSON text (*text malloc'd, *len its length): what
 * gw_json_text would write of map_run's *out, without building it. For a
 * result that goes to QuickBooks as it is. */
int map_run_text(struct mapper *m, const struct gw_connection *c, const char *name, json_t *source,
                 json_t *existing, char **text, size_t *len, char *err, size_t errlen);

/* The settings object a connection's programs see (its tables parsed). New object. */
json_t *map_settings(const struct gw_connection *c);

/* The same, kept by the mapper for a connection with a compiled program
 * (borrowed, valid until map_close), or NULL. */
json_t *map_connection_settings(struct mapper *m, const struct gw_connection *c);

/*
 * Compile the program in file (with the library in dir) and run it once on
 * input: for `gateway map`, a preview. *out new; -1 with err on failure.
 */
int map_preview(const char *dir, const char *file, json_t *input, json_t **out, char *err,
                size_t errlen);

#endif
