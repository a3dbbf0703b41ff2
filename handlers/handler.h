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
void summary_from_mplus(struct task *t);
void products_from_mplus(struct task *t);
void products_from_qbo(struct task *t);
void stock_from_mplus(struct task *t);

/*
 * The Item of one article (products.c), a step of the products flow that
 * the sales flow uses for an article it sells and QuickBooks lacks: the
 * products mapping of r->article ({article, product, category}), then
 * unchanged / updated / found by SKU / created; then r->item_then(r), with
 * r->items holding the article's SKU. When the mapping leaves the article
 * out, r->item_skip(r, reason) instead.
 */
void products_item(struct run *r);
/* The same for the Mplus article with number sku, read from Mplus first. */
void products_item_of_article(struct run *r, const char *sku);
/* The article numbered number in a getProducts answer (borrowed), with its
 * product in *product (a new copy, without its articleList); or NULL. */
json_t *products_article_in(json_t *answer, const char *number, json_t **product);

/*
 * After the sales flow booked a document (stock.c): each of skus (article
 * numbers as text) that Mplus keeps stock of gets Mplus's quantity again as
 * its Item's QtyOnHand, as a stock event would, so QuickBooks' own
 * subtraction of the sale is not a second one. Only with the stock flow on
 * and products_track_stock; then then(r). The Items are r->items' or the
 * Item index's.
 */
void stock_after_sale(struct run *r, json_t *skus, step_fn then);

/* ---- shared lookups (lookup.c) -------------------------------------------- */

/*
 * The customer of r->relation_number (or of r->relation when it is already
 * known), in three steps that each go on at once when an earlier one found
 * it:
 *   lookup_customer_mapped  the id map; with r->want_customer the mapped
 *                           customer is read (a customer deleted in QBO is
 *                           looked for again)
 *   lookup_relation         the relation from Mplus, when r->relation is NULL
 *                           (with r->want_relation also when the customer is
 *                           known: its details are wanted, and a relation
 *                           Mplus no longer has is no failure then)
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
/* Another run holds the claim of (what, id): true, and r goes on at resume
 * once it ends (r takes no claim). False when nobody holds it. */
bool lookup_claim_wait(struct run *r, const char *what, const char *id, step_fn resume);
/* A write of (what, id) goes out now; when the last one did (ms, 0: none
 * these ten minutes). In the same table, for the way back: the webhook of a
 * write may come before the write's outcome, and what it wrote, is stored. */
void lookup_note_write(const struct task *t, const char *what, const char *id);
int64_t lookup_written_at(const struct task *t, const char *what, const char *id);
/* The same as lookup_claim and lookup_release, for a claim a run holds while
 * it takes and ends the claims of its lookups: the sale a document belongs
 * to (sales.c). One hold at a time. */
bool lookup_hold(struct run *r, const char *what, const char *id, step_fn resume);
void lookup_unhold(struct run *r, const char *made);

/* Drop the fields named in list (a create-only setting: "Description, PurchaseDesc"). */
void lookup_drop_fields(json_t *target, const char *list);
/* The fields named in list that from has, copied into target (from NULL:
 * dropped from target, as lookup_drop_fields). */
void lookup_copy_fields(json_t *target, json_t *from, const char *list);

/* The fields of target that existing does not hold (a sparse update; for
 * an object, only the members target sets count). New object. */
json_t *lookup_diff_fields(json_t *target, json_t *existing);

/* Fingerprint (hex SHA-256) of a value's canonical JSON. */
bool lookup_fp_of(json_t *value, char out[65]);

/* Fingerprint (hex SHA-256) of a record as the mapping toward the other side sees it. */
bool lookup_fingerprint(struct task *t, const char *mapping, json_t *record, char out[65]);

/* The id map's meta key of one record: idmap.<connection>.<side>.<id>. */
void lookup_idmap_key(const struct task *t, const char *side, const char *id, char *out,
                      size_t len);

/*
 * Every SKU in r->skus must exist as a QuickBooks Item: found in r->items
 * through the id map, else in the company's Items by SKU (a rerun asks
 * QuickBooks, 50 SKUs a query), else made: by the products flow's step from
 * the Mplus article when products is on, else from the sale line when
 * sales_create_items is true. A missing item that may not be made is a wait
 * naming the SKUs; the event goes dead when its attempts run out.
 */
void lookup_items(struct run *r);

/*
 * The company's Items by SKU, read once (in pages) and kept in memory with
 * what the gateway makes; read again when older than a quarter of an hour.
 * lookup_item_index makes sure it is there, then runs then(r).
 * lookup_index_find: the index's {"id", "name"} of sku (borrowed), or NULL.
 */
void lookup_item_index(struct run *r, step_fn then);
json_t *lookup_index_find(const struct task *t, const char *sku);
void lookup_index_item(const struct task *t, const char *sku, const char *id, const char *name);

/*
 * The company's TaxCodes and the sales TaxRates each lists, read once and
 * kept (read again after a quarter of an hour): lookup_tax_table makes sure
 * they are there, then runs then(r). lookup_tax_rates: the sales rates of a
 * TaxCode as [{"rate": TaxRate Id, "percent": text}] (borrowed; empty for a
 * code without rates, NULL for one the company lacks). lookup_tax_zero: a
 * TaxCode whose sales rates are all 0 %, or NULL.
 */
void lookup_tax_table(struct run *r, step_fn then);
json_t *lookup_tax_rates(const struct task *t, const char *tax_code);
const char *lookup_tax_zero(const struct task *t);
/* Read them again at the next lookup_tax_table (a TaxCode made since). */
void lookup_tax_forget(const struct task *t);

/* A value of one of the connection's tables ("sales_deposit_accounts", key)
 * (borrowed), or NULL. */
const char *lookup_table(struct run *r, const char *name, const char *key);

/* The QuickBooks TaxCode of an Mplus VAT code sold in country (ISO3, or ""):
 * sales_tax_codes' COUNTRY/CODE, then * /CODE, then CODE. NULL, with why
 * saying what to add, when the table has none. */
const char *lookup_tax_code(struct run *r, const char *country, json_int_t code, char *why,
                            size_t whylen);

#endif
