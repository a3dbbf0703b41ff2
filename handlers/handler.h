/*
 * handler.h - the flows' entry points and the lookups they share.
 *
 * Each flow (handlers/<flow>.c) is a list of steps (task.h). The lookups
 * below are steps too, written once in handlers/lookup.c and put into the
 * step lists of every flow that needs them.
 */
#ifndef GW_HANDLER_H
#define GW_HANDLER_H

#include "task.h"

/* The flows' entry points (handlers/<flow>.c). */
void customers_from_mplus(struct task *t);
void customers_from_qbo(struct task *t);
void sales_from_mplus(struct task *t);

/* ---- shared lookups (lookup.c) -------------------------------------------- */

/*
 * The customer of r->relation_number (or of r->relation when it is already
 * known), in three steps that each go on at once when an earlier one found
 * it:
 *   lookup_customer_mapped  the id map; with r->want_customer the mapped
 *                           customer is read (a customer deleted in QBO is
 *                           looked for again)
 *   lookup_relation         the relation from Mplus, when r->relation is NULL
 *   lookup_customer_email   a QuickBooks customer with the relation's e-mail,
 *                           matched without regard to letter case
 * and lookup_customer_create makes it from the customers-to-qbo mapping when
 * none was found (DisplayName collisions resolved as "Name (number)"). Each
 * writes the id map with the task's outcome.
 */
void lookup_customer_mapped(struct run *r);
void lookup_relation(struct run *r);
void lookup_customer_email(struct run *r);
void lookup_customer_create(struct run *r);

/* Keep the pair relation <-> customer, and what each side now holds (for echo checks). */
void lookup_record_pair(struct task *t, const char *relation, const char *customer,
                        json_t *customer_now, json_t *relation_now);

/*
 * Records the daemon is making or has just made, by (what, id) - "relation"
 * 10002 -> Customer 58 - so concurrent events of one new relation or article
 * make it once (the table is struct gw_clients' made). lookup_claim: true
 * when r is to make it; false when another run is making it, and then resume
 * runs again once that one is done, when lookup_made_id answers.
 * lookup_release ends r's claim with what it made; a run that ends while it
 * holds a claim releases it with nothing, and the next waiter tries.
 */
struct lookup_cache;
struct lookup_cache *lookup_cache_new(void);
void lookup_cache_free(struct lookup_cache *lc);
bool lookup_claim(struct run *r, const char *what, const char *id, step_fn resume);
void lookup_release(struct run *r, const char *made);
const char *lookup_made_id(const struct task *t, const char *what, const char *id);

/* Fingerprint (hex SHA-256) of a record as the mapping toward the other side sees it. */
bool lookup_fingerprint(struct task *t, const char *mapping, json_t *record, char out[65]);

/* The id map's meta key of one record: idmap.<connection>.<side>.<id>. */
void lookup_idmap_key(const struct task *t, const char *side, const char *id, char *out,
                      size_t len);

/*
 * Every SKU in r->skus must exist as a QuickBooks Item: found in r->items
 * through the id map, else by one query on Sku for all that are left, else
 * created from the Mplus article when the connection lets the gateway create
 * items (products flow on, or sales_create_items). A missing item that may
 * not be created is a retry naming the SKUs; the event goes dead when its
 * attempts run out.
 */
void lookup_items(struct run *r);

#endif
