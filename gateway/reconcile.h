/*
 * reconcile.h - Mplus's day figures next to what QuickBooks holds
 * (reconcile.c): for `gateway reconcile` and GET /api/reconcile.
 */
#ifndef GW_RECONCILE_H
#define GW_RECONCILE_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>

struct gw_clients;

/*
 * The report ({connection, from, to, ok, days: [{date, ok, mplus, quickbooks,
 * difference, missing, twice, differs, unknown}]}, borrowed) or, when a call
 * failed, NULL and the error.
 */
typedef void (*reconcile_cb)(json_t *report, const char *error, void *arg);

/* Reconcile the financial days from through to (YYYY-MM-DD) of connection c;
 * cb is called once, later, from the loop. -1 (no call) when out of memory. */
int reconcile_start(struct gw_clients *clients, const struct gw_connection *c, const char *from,
                    const char *to, reconcile_cb cb, void *arg);

/*
 * Backfill: the Mplus receipts and invoices of the range that QuickBooks
 * lacks (as reconcile finds them) become events again, read in full, and
 * each day of the daily summary an event of its day; the flows book what
 * is missing through the same id map and holds, so a rerun books nothing
 * twice. cb gets {connection, from, to, dry_run, documents, queued,
 * missing: [...]}; with dry_run nothing is queued. progress, when set, gets
 * a line per step.
 */
struct committer;
struct dispatcher;
struct backfill_env {
    struct committer *cm;
    struct dispatcher *d;
    void (*progress)(const char *line, void *arg);
};
int backfill_start(struct gw_clients *clients, const struct backfill_env *env,
                   const struct gw_connection *c, const char *from, const char *to, bool dry_run,
                   reconcile_cb cb, void *arg);

/*
 * Unpost: what the gateway booked for the financial days from through to
 * (its documents, their payments, the daily summaries) is deleted in
 * QuickBooks, and its id map entry cleared, so the next event of it books
 * it again (a backfill of the days). Deleted rather than voided: a voided
 * document keeps its DocNumber, and the one booked again would be refused
 * as a duplicate number; QuickBooks' audit log keeps what was deleted. A
 * document QuickBooks changed since it was booked (another SyncToken) is
 * refused unless force, and one the id map does not name (entered by hand)
 * is left alone. With only_id (and only_entity) set, only that document.
 * cb gets {connection, from, to, dry_run, unposted: [...], refused: [...]}.
 */
struct store;
struct unpost_env {
    struct committer *cm;
    struct store *st;
    bool force;
    char only_entity[32], only_id[32]; /* from "": read this document alone */
    char only_prefix[48];              /* a DocNumber prefix (one day's summary) */
    void (*progress)(const char *line, void *arg);
};
int unpost_start(struct gw_clients *clients, const struct unpost_env *env,
                 const struct gw_connection *c, const char *from, const char *to, bool dry_run,
                 reconcile_cb cb, void *arg);

#endif
