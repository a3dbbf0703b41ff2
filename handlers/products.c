/*
 * products.c - the products flow: Mplus articles as QuickBooks Items, and
 * Mplus article groups as Category items.
 *
 *   article changed (poll) -> the products mapping, which also filters
 *       -> the same as the gateway last wrote: skipped "unchanged", no request
 *       -> known (id map, else the company's Items by SKU): a sparse update
 *          of what changed in Mplus since the gateway last wrote it; fields
 *          set only on create are left to the accountant
 *       -> else created; a Name another Item holds becomes "Name (SKU)"
 *       (a variant, with products_variant_parent = category: its product's
 *       Category is made first, once)
 *   article group changed -> its Category item (parents first): created,
 *       renamed, moved, or made inactive when Mplus deletes the group
 *
 * The Item of one article is made by products_item, a step the sales flow's
 * "every article must exist as an Item" lookup uses too. The way back, Item
 * changes onto articles (products_direction = both), is articles.c.
 *
 * The id map (meta, written with the event's outcome):
 *   idmap.<connection>.article.<number> -> {item, name, sync, fp, sent}
 *   idmap.<connection>.group.<number>   -> {item, name, sync, parent}
 *   idmap.<connection>.product.<number> -> {item, name}   (its Category)
 * sent is what the gateway last wrote of the fields it keeps up to date (or
 * found there), fp its fingerprint.
 */
#include "clients.h"
#include "handler.h"
#include "map.h"
#include "mplus.h"
#include "qbo.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fields only a create sets, whatever products_create_only says: the stock
 * flow keeps QtyOnHand, and the start date and tracking are fixed then. */
#define ALWAYS_CREATE_ONLY "QtyOnHand, InvStartDate, TrackQtyOnHand"

/* An article whose group has no Category item yet waits this long, this many
 * times, for the group's own event; then it is booked without a category. */
#define GROUP_WAIT_MS       3000
#define GROUP_WAIT_ATTEMPTS 4

#define NAME_MAX_LEN 100

/* o (an Item) sits in the Category Item id. */
static void set_parent(json_t *o, const char *id)
{
    json_object_set_new(o, "SubItem", json_true());
    json_object_set_new(o, "ParentRef", json_pack("{s:s}", "value", id));
}

/* ---- one Item from one article ------------------------------------------------- */

static void item_step(struct run *r);
static bool in_product_category(struct run *r, char *number, size_t len);
static bool product_category_id(struct task *t, const char *number, char *id, size_t len);
static void product_category(struct run *r);

/* The target without what only a create sets: what updates keep in step.
 * Its members are the target's own (only top-level ones are dropped). */
static json_t *kept_fields(struct run *r)
{
    json_t *k = json_copy(r->item_target);
    lookup_drop_fields(k, ALWAYS_CREATE_ONLY);
    lookup_drop_fields(k, r->t->conn->products_create_only);
    return k;
}

/* The article's Item is id: note it in the run, the index and the id map;
 * with_sent: the Item holds the fields the flow keeps (not so for one left
 * alone by products_update_existing = false, whose values are its own). */
static void item_link(struct run *r, const char *id, const char *name, const char *sync,
                      bool with_sent)
{
    struct task *t = r->t;
    json_t *v = json_pack("{s:s, s:s, s:s, s:s}", "item", id, "name", name ?: "", "sync",
                          sync ?: "", "fp", r->item_fp);
    if (with_sent)
        json_object_set_new(v, "sent", kept_fields(r));
    char k[160];
    lookup_idmap_key(t, "article", r->item_sku, k, sizeof k);
    task_put_meta(t, k, v);
    json_decref(v);
    json_object_set_new(r->items, r->item_sku,
                        json_pack("{s:s, s:s}", "id", id, "name", name ?: ""));
    lookup_index_item(t, r->item_sku, id, name);
}

static void item_remember(struct run *r, const char *id, const char *name, const char *sync)
{
    item_link(r, id, name, sync, true);
}

/* A write of the article's Item goes out: the way back (articles.c) waits
 * for its outcome before it takes a change of that Item for an edit. */
static void item_writing(struct run *r)
{
    if (config_products_back(r->t->conn))
        lookup_note_write(r->t, "item-write", r->item_sku);
}

static void item_done(struct run *r)
{
    json_decref(r->item_target);
    json_decref(r->item_entry);
    json_decref(r->item_now);
    json_decref(r->article);
    r->item_target = r->item_entry = r->item_now = r->article = NULL;
    r->item_renames = 0;
    r->item_sku_asked = false;
    r->item_then(r);
}

/* Write what QuickBooks is to hold, remember the answer. */
static void item_answered(struct run *r, const char *what, const struct qbo_result *res)
{
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, what, res);
        return;
    }
    json_t *item = json_object_get(res->body, "Item");
    const char *id = gw_str(item, "Id");
    if (id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "%s: QuickBooks answered without an Item Id", what);
        return;
    }
    task_note(r->t, "%s %s for article %s", what, id, r->item_sku);
    r->item_written = true;
    item_remember(r, id, gw_str(item, "Name"), gw_str(item, "SyncToken"));
    lookup_release(r, id);
    item_done(r);
}

/* name and then suffix, at most NAME_MAX_LEN characters: name is cut (at a
 * character) to leave room. "Name (SKU)" is the name of an article whose
 * Name another Item holds; the same article always gets the same. */
static void name_with(const char *name, const char *suffix, char *out, size_t outlen)
{
    size_t n = gw_utf8_prefix(name, NAME_MAX_LEN - strlen(suffix));
    snprintf(out, outlen, "%.*s%s", (int)n, name, suffix);
}

static void unique_form(const char *name, const char *sku, char *out, size_t outlen)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, " (%s)", sku);
    name_with(name, suffix, out, outlen);
}

static void unique_name(struct run *r)
{
    const char *name = gw_str(r->item_target, "Name") ?: "";
    char out[NAME_MAX_LEN * 4 + 1];
    unique_form(name, r->item_sku, out, sizeof out);
    task_note(r->t, "Item Name \"%s\" is taken in QuickBooks: article %s is \"%s\"", name,
              r->item_sku, out);
    json_object_set_new(r->item_target, "Name", json_string(out));
    r->item_renames++;
}

/* An article the gateway once had to name "Name (SKU)" keeps that name while
 * Mplus keeps calling it Name: otherwise each change would ask for the taken
 * name again. */
static void keep_unique_name(struct run *r)
{
    const char *was = gw_str(r->item_entry, "name");
    const char *name = gw_str(r->item_target, "Name");
    if (was == NULL || name == NULL)
        return;
    char ours[NAME_MAX_LEN * 4 + 1];
    unique_form(name, r->item_sku, ours, sizeof ours);
    if (strcmp(was, ours) == 0)
        json_object_set_new(r->item_target, "Name", json_string(ours));
}

static void item_updated(const struct qbo_result *res, void *arg);

/* Send what differs from base (what QuickBooks holds, as far as known). */
static void item_update(struct run *r, json_t *base, const char *id, const char *sync)
{
    json_t *kept = kept_fields(r);
    json_t *d = lookup_diff_fields(kept, base);
    json_decref(kept);
    if (json_object_size(d) == 0) {
        json_decref(d);
        task_note(r->t, "Item %s already holds article %s", id, r->item_sku);
        /* Linking an Item the id map did not have yet is this event's work
         * (e.g. one made by a run a crash cut short): done, not unchanged. */
        const char *mapped = gw_str(r->item_entry, "item");
        if (mapped == NULL || strcmp(mapped, id) != 0)
            r->item_written = true;
        item_remember(r, id, gw_str(base, "Name") ?: gw_str(r->item_target, "Name"), sync);
        item_done(r);
        return;
    }
    json_object_set_new(d, "Id", json_string(id));
    json_object_set_new(d, "SyncToken", json_string(sync ?: "0"));
    json_object_set_new(d, "sparse", json_true());
    char step[64], rid[96];
    snprintf(step, sizeof step, "item-update%d-%s", r->item_renames, r->item_sku);
    task_requestid(r->t, step, rid, sizeof rid);
    item_writing(r);
    task_qbo_update(r->t, "Item", d, rid, item_updated, r);
    json_decref(d);
}

static void item_updated(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind == QBO_FAULT && strcmp(res->code, "6240") == 0 && r->item_renames == 0) {
        /* Mplus renamed the article to a Name another Item holds. */
        unique_name(r);
        if (r->item_now != NULL)
            item_update(r, r->item_now, gw_str(r->item_now, "Id"),
                        gw_str(r->item_now, "SyncToken"));
        else
            item_update(r, json_object_get(r->item_entry, "sent"), gw_str(r->item_entry, "item"),
                        gw_str(r->item_entry, "sync"));
        return;
    }
    item_answered(r, "updated Item", res);
}

static void item_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    json_t *item = json_object_get(res->body, "Item");
    if (res->kind != QBO_OK || gw_str(item, "Id") == NULL) {
        run_fail_qbo(r, "read Item", res);
        return;
    }
    json_decref(r->item_now);
    r->item_now = json_incref(item);
    item_update(r, item, gw_str(item, "Id"), gw_str(item, "SyncToken"));
}

/* The article's Item exists (id): bring it up to date, if the connection says so. */
static void item_adopt(struct run *r, const char *id)
{
    if (!r->t->conn->products_update_existing) {
        task_note(r->t, "Item %s of article %s is left as it is (products_update_existing = false)",
                  id, r->item_sku);
        item_link(r, id, gw_str(r->item_entry, "name"), gw_str(r->item_entry, "sync"), false);
        lookup_release(r, id);
        item_done(r);
        return;
    }
    json_t *sent = json_object_get(r->item_entry, "sent");
    const char *mapped = gw_str(r->item_entry, "item");
    if (json_is_object(sent) && mapped && strcmp(mapped, id) == 0) {
        /* What changed in Mplus since the gateway wrote it; nothing else. */
        item_update(r, sent, id, gw_str(r->item_entry, "sync"));
        return;
    }
    task_qbo_read(r->t, "Item", id, item_read, r);
}

static void item_create(struct run *r);
static void item_find_by_sku(struct run *r);

static void item_created(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind == QBO_FAULT && strcmp(res->code, "6240") == 0 && r->item_renames == 0) {
        if (!r->item_sku_asked) {
            /* The Name may be taken by this article's own Item: made by a
             * create whose answer was lost (a batch shares no requestid with
             * its creates), and not found when the run looked. Ask once. */
            r->item_sku_asked = true;
            item_find_by_sku(r);
            return;
        }
        unique_name(r);
        item_create(r);
        return;
    }
    const char *made = gw_str(json_object_get(res->body, "Item"), "Id");
    if (res->kind == QBO_OK && made != NULL && config_products_back(r->t->conn))
        lookup_note_write(r->t, "item-made", made); /* its Create webhook is no edit */
    item_answered(r, "created Item", res);
}

static void item_create(struct run *r)
{
    /* The target goes as it is: the create writes it out at once, and it
     * changes (a new name) only after the answer. */
    char step[64], rid[96];
    snprintf(step, sizeof step, "item%d-%s", r->item_renames, r->item_sku);
    task_requestid(r->t, step, rid, sizeof rid);
    item_writing(r);
    task_qbo_create(r->t, "Item", r->item_target, rid, item_created, r);
}

/* No Item has the SKU: make it, once, however many events need it now. */
static void item_claim_create(struct run *r)
{
    if (!lookup_claim(r, "article", r->item_sku, item_step))
        return; /* another event is making it: start again when it is done */
    const char *made = lookup_made_id(r->t, "article", r->item_sku);
    if (made != NULL) {
        char id[40];
        gw_strlcpy(id, made, sizeof id);
        item_adopt(r, id);
        return;
    }
    item_create(r);
}

static void item_queried(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find Item by SKU", res);
        return;
    }
    json_t *list = qbo_rows(res->body, "Item");
    json_t *item = json_array_get(list, 0);
    if (gw_str(item, "Id") != NULL) {
        json_decref(r->item_now);
        r->item_now = json_incref(item);
        if (!r->t->conn->products_update_existing) {
            item_adopt(r, gw_str(item, "Id"));
            return;
        }
        item_update(r, item, gw_str(item, "Id"), gw_str(item, "SyncToken"));
        return;
    }
    item_claim_create(r);
}

static void item_from_index(struct run *r)
{
    json_t *hit = lookup_index_find(r->t, r->item_sku);
    if (hit != NULL) {
        char id[40];
        gw_strlcpy(id, gw_str(hit, "id") ?: "", sizeof id);
        item_adopt(r, id);
        return;
    }
    item_claim_create(r);
}

static void item_find_by_sku(struct run *r)
{
    char *q = qbo_quote(r->item_sku);
    char query[160];
    snprintf(query, sizeof query, "select * from Item where Sku = %s", q ? q : "''");
    free(q);
    task_qbo_query(r->t, query, item_queried, r);
}

/* Not in the id map: by SKU among the company's Items. A rerun asks
 * QuickBooks itself (someone may have made it since the index was read). */
static void item_find(struct run *r)
{
    if (!task_is_rerun(r->t)) {
        lookup_item_index(r, item_from_index);
        return;
    }
    item_find_by_sku(r);
}

/* Map the article, then: unchanged, update, or find-or-create. */
static void item_step(struct run *r)
{
    struct task *t = r->t;
    json_t *target = NULL;
    char err[512];
    json_decref(r->item_target);
    r->item_target = NULL;
    if (map_run(t->clients->mapper, t->conn, MAP_PRODUCTS_TO_QBO, r->article, NULL, &target, err,
                sizeof err) != 0) {
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    const char *skip = gw_str(target, "gw_skip");
    if (skip != NULL) {
        char why[64];
        gw_strlcpy(why, skip, sizeof why);
        json_decref(target);
        r->item_skip(r, why);
        return;
    }
    if (gw_str(target, "Name") == NULL) {
        json_decref(target);
        run_fail(r, OUTCOME_DEAD, "mapping failed",
                 "the products mapping gave article %s no Item Name", r->item_sku);
        return;
    }
    char product[32], category[40];
    if (in_product_category(r, product, sizeof product)) {
        if (!product_category_id(t, product, category, sizeof category)) {
            json_decref(target);
            product_category(r);
            return;
        }
        set_parent(target, category);
    }
    const char *name = gw_str(target, "Name");
    size_t cut = gw_utf8_prefix(name, NAME_MAX_LEN);
    if (name[cut] != '\0') {
        char *shorter = strndup(name, cut);
        task_note(t, "Item Name of article %s cut to %d characters: \"%s\"", r->item_sku,
                  NAME_MAX_LEN, shorter ?: "");
        json_object_set_new(target, "Name", json_string(shorter ?: ""));
        free(shorter);
    }
    r->item_target = target;
    char k[160];
    lookup_idmap_key(t, "article", r->item_sku, k, sizeof k);
    json_decref(r->item_entry);
    r->item_entry = task_get_meta(t, k);
    keep_unique_name(r);
    json_t *kept = kept_fields(r);
    lookup_fp_of(kept, r->item_fp);
    json_decref(kept);

    const char *id = gw_str(r->item_entry, "item");
    const char *fp = gw_str(r->item_entry, "fp");
    if (id != NULL && fp != NULL && strcmp(fp, r->item_fp) == 0) {
        json_object_set_new(
            r->items, r->item_sku,
            json_pack("{s:s, s:s}", "id", id, "name", gw_str(r->item_entry, "name") ?: ""));
        item_done(r);
        return;
    }
    if (id == NULL)
        id = lookup_made_id(t, "article", r->item_sku);
    if (id != NULL) {
        char copy[40];
        gw_strlcpy(copy, id, sizeof copy);
        item_adopt(r, copy);
        return;
    }
    item_find(r);
}

/* v as the mapping's gw_clean makes a name of it (other than text as it is). */
static json_t *clean_name(json_t *v)
{
    if (!json_is_string(v))
        return v ? json_incref(v) : json_null();
    char *name = gw_clean_name(json_string_value(v));
    json_t *out = name ? json_string(name) : json_null();
    free(name);
    return out;
}

/* The names the mapping makes the Item's of, cleaned once here, and the
 * texts of its description, trimmed: in jq each costs more than the rest of
 * the article's way through the gateway. */
static void add_names(json_t *source)
{
    json_t *a = json_object_get(source, "article"), *p = json_object_get(source, "product");
    json_t *names = json_pack(
        "{s:o, s:o, s:o, s:o}", "product", clean_name(json_object_get(p, "description")), "article",
        clean_name(json_object_get(a, "description")), "colour",
        clean_name(json_object_get(a, "colour")), "size", clean_name(json_object_get(a, "size")));
    static const char *const texts[][2] = {
        {"extraText", "extra"}, {"invoiceText", "invoice"}, {"barcode", "barcode"}};
    for (size_t i = 0; names != NULL && i < sizeof texts / sizeof *texts; i++)
        json_object_set_new(names, texts[i][1], /* text: the reader makes these fields text */
                            gw_json_trimmed(gw_str(a, texts[i][0]), SIZE_MAX));
    json_object_set_new(source, "names", names);
}

void products_item(struct run *r)
{
    const char *number = NULL;
    char buf[32];
    number = gw_num_text(json_object_get(json_object_get(r->article, "article"), "articleNumber"),
                         buf, sizeof buf);
    if (number == NULL || strlen(number) >= sizeof r->item_sku) {
        run_fail(r, OUTCOME_DEAD, "malformed", "the article has no articleNumber");
        return;
    }
    gw_strlcpy(r->item_sku, number, sizeof r->item_sku);
    r->item_renames = 0;
    r->item_sku_asked = false;
    add_names(r->article);
    item_step(r);
}

static json_t *category_of(struct task *t, json_t *product, bool may_wait, char *group,
                           size_t grouplen);

/* A Category name QuickBooks accepts: no colon (it separates the levels of
 * a FullyQualifiedName), quote or line break, at most NAME_MAX_LEN
 * characters; "Kind number" when Mplus has none. */
static void category_name(const char *full, const char *kind, const char *number, char *out,
                          size_t outlen)
{
    full = full ?: "";
    snprintf(out, outlen, "%.*s", (int)gw_utf8_prefix(full, NAME_MAX_LEN), full);
    for (char *c = out; *c; c++)
        if (*c == ':' || *c == '"' || *c == '\t' || *c == '\n' || *c == '\r')
            *c = ' ';
    if (out[strspn(out, " ")] == '\0')
        snprintf(out, outlen, "%s %s", kind, number);
}

/* ---- a variant's product as a Category (products_variant_parent = category) ----- */

static bool is_variant(json_t *article)
{
    const char *colour = gw_str(article, "colour"), *size = gw_str(article, "size");
    return (colour != NULL && colour[strspn(colour, " ")] != '\0') ||
           (size != NULL && size[strspn(size, " ")] != '\0');
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether the article's Item goes in a Category of its product, and the
 * product's number in number. */
static bool in_product_category(struct run *r, char *number, size_t len)
{
    return strcmp(r->t->conn->products_variant_parent ?: "", "category") == 0 &&
           json_is_object(r->article) && is_variant(json_object_get(r->article, "article")) &&
           gw_num_text(json_object_get(json_object_get(r->article, "product"), "productNumber"),
                       number, len) != NULL;
}

/* The product's Category Id (id map, or just made), into id; false when none. */
static bool product_category_id(struct task *t, const char *number, char *id, size_t len)
{
    char k[160];
    lookup_idmap_key(t, "product", number, k, sizeof k);
    json_t *m = task_get_meta(t, k);
    gw_strlcpy(id, gw_str(m, "item") ?: lookup_made_id(t, "product", number) ?: "", len);
    json_decref(m);
    return id[0] != '\0';
}

static void product_category_create(struct run *r);

static void product_category_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    char number[32], suffix[48], renamed[NAME_MAX_LEN * 4 + 1];
    in_product_category(r, number, sizeof number);
    snprintf(suffix, sizeof suffix, " (product %s)", number);
    const char *name = gw_str(r->parent_body, "Name") ?: "";
    if (res->kind == QBO_FAULT && strcmp(res->code, "6240") == 0 && !ends_with(name, suffix)) {
        name_with(name, suffix, renamed, sizeof renamed);
        task_note(r->t, "Category Name \"%s\" is taken in QuickBooks: product %s is \"%s\"", name,
                  number, renamed);
        json_object_set_new(r->parent_body, "Name", json_string(renamed));
        product_category_create(r);
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create the product's Category", res);
        return;
    }
    json_t *item = json_object_get(res->body, "Item");
    const char *id = gw_str(item, "Id");
    if (id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "QuickBooks answered a Category create without an Id");
        return;
    }
    task_note(r->t, "created Category %s for product %s", id, number);
    char k[160];
    lookup_idmap_key(r->t, "product", number, k, sizeof k);
    json_t *v = json_pack("{s:s, s:s}", "item", id, "name", gw_str(item, "Name") ?: "");
    task_put_meta(r->t, k, v);
    json_decref(v);
    lookup_release(r, id);
    json_decref(r->parent_body);
    r->parent_body = NULL;
    r->item_written = true;
    item_step(r); /* now with the product's Category known */
}

static void product_category_create(struct run *r)
{
    char number[32], suffix[48], step[64], rid[96];
    in_product_category(r, number, sizeof number);
    snprintf(suffix, sizeof suffix, " (product %s)", number);
    /* A request of its own for the renamed Category. */
    snprintf(step, sizeof step, "product-category%s",
             ends_with(gw_str(r->parent_body, "Name") ?: "", suffix) ? "-renamed" : "");
    task_requestid(r->t, step, rid, sizeof rid);
    task_qbo_create(r->t, "Item", r->parent_body, rid, product_category_written, r);
}

/* Make the Category of the variant's product, once however many of its
 * variants need it (a claim per product), under its group's Category; then
 * the article's Item again. The Category keeps the name it was made with. */
static void product_category(struct run *r)
{
    char number[32], id[40];
    in_product_category(r, number, sizeof number);
    if (product_category_id(r->t, number, id, sizeof id)) {
        item_step(r);
        return;
    }
    if (!lookup_claim(r, "product", number, item_step))
        return; /* another variant of the product is making it */
    char name[NAME_MAX_LEN * 4 + 1];
    category_name(gw_str(json_object_get(r->article, "product"), "description"), "Product", number,
                  name, sizeof name);
    json_decref(r->parent_body);
    r->parent_body = json_pack("{s:s, s:s, s:b}", "Name", name, "Type", "Category", "Active", true);
    const char *group = gw_str(r->article, "category");
    if (group != NULL) {
        set_parent(r->parent_body, group);
    }
    product_category_create(r);
}

/* ---- the sales flow's missing Items: from the Mplus article ---------------------- */

json_t *products_article_in(json_t *answer, const char *number, json_t **product)
{
    size_t i, j;
    json_t *p, *a;
    json_array_foreach(json_object_get(answer, "productList"), i, p)
    {
        json_array_foreach(json_object_get(p, "articleList"), j, a)
        {
            char buf[32];
            const char *n = gw_num_text(json_object_get(a, "articleNumber"), buf, sizeof buf);
            if (n == NULL || strcmp(n, number) != 0)
                continue;
            *product = json_deep_copy(p);
            json_object_del(*product, "articleList");
            return a;
        }
    }
    return NULL;
}

static void article_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getProducts", res);
        return;
    }
    json_t *product = NULL;
    json_t *a = products_article_in(res->body, r->item_sku, &product);
    if (a != NULL) {
        char buf[32];
        json_decref(r->article);
        r->article = json_pack("{s:O, s:o, s:o}", "article", a, "product", product, "category",
                               category_of(r->t, product, false, buf, sizeof buf));
        products_item(r);
        return;
    }
    run_wait(r, 0, "unknown item",
             "Mplus has no article %s, and no QuickBooks Item has it as SKU; the event tries again",
             r->item_sku);
}

void products_item_of_article(struct run *r, const char *sku)
{
    gw_strlcpy(r->item_sku, sku, sizeof r->item_sku);
    int64_t n;
    if (!gw_strtoi64(sku, &n)) {
        run_wait(r, 0, "unknown item",
                 "no QuickBooks Item has SKU %s, and it is no Mplus article number; the event "
                 "tries again",
                 sku);
        return;
    }
    json_t *req = json_pack("{s:[I]}", "articleNumbers", (json_int_t)n);
    task_mplus_call(r->t, "getProducts", req, article_read, r);
    json_decref(req);
}

/* ---- the article flow ------------------------------------------------------------- */

static void article_skip(struct run *r, const char *reason)
{
    run_skip(r, reason);
}

static void article_end(struct run *r)
{
    if (r->item_written)
        run_done(r);
    else
        run_skip(r, "unchanged");
}

/*
 * The Category item of the product's first article group (its number in
 * group): a new string, or json_null() when there is none (none asked for,
 * no group, a deleted one, or not synced yet and the article may not wait);
 * NULL when it is to wait.
 */
static json_t *category_of(struct task *t, json_t *product, bool may_wait, char *group,
                           size_t grouplen)
{
    const char *g =
        gw_num_text(json_array_get(json_object_get(product, "groupNumbers"), 0), group, grouplen);
    if (!t->conn->products_categories || g == NULL || strcmp(g, "0") == 0)
        return json_null();
    char k[160];
    lookup_idmap_key(t, "group", g, k, sizeof k);
    json_t *m = task_get_meta(t, k);
    const char *id = gw_str(m, "item");
    const char *made = m == NULL ? lookup_made_id(t, "group", g) : NULL;
    json_t *category = json_null();
    if (id != NULL && id[0] && !json_is_true(json_object_get(m, "deleted")))
        category = json_string(id);
    else if (made != NULL) /* just made; its id map entry comes with that event's outcome */
        category = json_string(made);
    else if (m == NULL && may_wait && t->attempt < GROUP_WAIT_ATTEMPTS)
        category = NULL;
    else if (m == NULL)
        task_note(t, "article group %s has no QuickBooks Category: the Item has none", g);
    json_decref(m);
    return category;
}

/* The article and its product, and the Category item of its first group. */
static void article_begin(struct run *r)
{
    struct task *t = r->t;
    json_t *p = task_payload(t);
    json_t *article = json_object_get(p, "article");
    json_t *product = json_object_get(p, "product");
    if (!json_is_object(article)) {
        run_fail(r, OUTCOME_DEAD, "malformed", "the polled change holds no article");
        return;
    }
    char group[32];
    json_t *category = category_of(t, product, true, group, sizeof group);
    if (category == NULL) {
        if (lookup_claim_wait(r, "group", group, article_begin))
            return; /* the group's event is making its Category: go on once it is done */
        run_wait(r, GROUP_WAIT_MS, "waiting for article group",
                 "the article's group has no QuickBooks Category yet; the article waits for it");
        return;
    }
    r->article =
        json_pack("{s:O, s:O*, s:o}", "article", article, "product", product, "category", category);
    r->item_then = article_end;
    r->item_skip = article_skip;
    products_item(r);
}

static const step_fn article_steps[] = {article_begin, NULL};

/* ---- the article group flow ----------------------------------------------------- */

struct group {
    char number[32];
    char parent[40]; /* the parent's Category item, or "" */
    json_t *entry;   /* the id map entry, or NULL */
    json_t *body;    /* what the Category item is to hold */
    int renames;
};

static void group_free(void *p)
{
    struct group *g = p;
    json_decref(g->entry);
    json_decref(g->body);
    free(g);
}

/* "Name (group N)": the name of a group whose Name another Item holds. */
static void group_unique_form(const char *name, const char *number, char *out, size_t outlen)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, " (group %s)", number);
    name_with(name, suffix, out, outlen);
}

/* Why the filters leave article group number out, or NULL: the same
 * settings that keep its articles out (products_groups,
 * products_exclude_groups), so no Category is made for a group none of
 * whose articles arrive. */
static const char *group_filtered(const struct gw_connection *c, const char *number)
{
    if (gw_list_has(c->products_exclude_groups, number))
        return "article group in products_exclude_groups";
    if (c->products_groups != NULL && c->products_groups[strspn(c->products_groups, ", \t")] &&
        !gw_list_has(c->products_groups, number))
        return "article group not in products_groups";
    return NULL;
}

static void group_remember(struct run *r, json_t *item, bool deleted)
{
    struct group *g = r->flow;
    char k[160];
    lookup_idmap_key(r->t, "group", g->number, k, sizeof k);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:b}", "item", gw_str(item, "Id") ?: "", "name",
                          gw_str(item, "Name") ?: "", "sync", gw_str(item, "SyncToken") ?: "0",
                          "parent", g->parent, "deleted", deleted);
    task_put_meta(r->t, k, v);
    json_decref(v);
    /* Subgroups and articles waiting for this Category go on at once. */
    lookup_release(r, deleted ? NULL : gw_str(item, "Id"));
}

static void group_write(struct run *r);

static void group_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct group *g = r->flow;
    if (res->kind == QBO_FAULT && strcmp(res->code, "6240") == 0 && g->renames == 0) {
        const char *name = gw_str(g->body, "Name") ?: "";
        char renamed[NAME_MAX_LEN * 4 + 1];
        group_unique_form(name, g->number, renamed, sizeof renamed);
        task_note(r->t, "Category Name \"%s\" is taken in QuickBooks: group %s is \"%s\"", name,
                  g->number, renamed);
        json_object_set_new(g->body, "Name", json_string(renamed));
        g->renames++;
        group_write(r);
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, g->entry ? "update Category" : "create Category", res);
        return;
    }
    json_t *item = json_object_get(res->body, "Item");
    task_note(r->t, "%s Category %s for article group %s", g->entry ? "updated" : "created",
              gw_str(item, "Id") ?: "?", g->number);
    group_remember(r, item, json_is_false(json_object_get(g->body, "Active")));
    run_next(r);
}

static void group_write(struct run *r)
{
    struct group *g = r->flow;
    char step[64], rid[96];
    snprintf(step, sizeof step, "category%d", g->renames);
    task_requestid(r->t, step, rid, sizeof rid);
    if (g->entry != NULL) {
        json_t *d = json_deep_copy(g->body);
        json_object_set_new(d, "Id", json_string(gw_str(g->entry, "item") ?: ""));
        json_object_set_new(d, "SyncToken", json_string(gw_str(g->entry, "sync") ?: "0"));
        json_object_set_new(d, "sparse", json_true());
        task_qbo_update(r->t, "Item", d, rid, group_written, r);
        json_decref(d);
        return;
    }
    task_qbo_create(r->t, "Item", g->body, rid, group_written, r);
}

static void group_found(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct group *g = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find Category by name", res);
        return;
    }
    json_t *list = qbo_rows(res->body, "Item");
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *parent = gw_str(json_object_get(item, "ParentRef"), "value") ?: "";
        if (strcmp(parent, g->parent) == 0 &&
            strcmp(gw_str(item, "Name") ?: "", gw_str(g->body, "Name")) == 0) {
            /* A Category of this name and place: the group's (made before the
             * id map knew, or by hand). */
            task_note(r->t, "Category %s already is article group %s", gw_str(item, "Id") ?: "?",
                      g->number);
            group_remember(r, item, false);
            run_next(r);
            return;
        }
    }
    group_write(r);
}

static void group_begin(struct run *r)
{
    struct task *t = r->t;
    struct group *g = r->flow;
    json_t *grp = task_payload(t);
    if (!t->conn->products_categories) {
        run_skip(r, "article groups are not synced (products_categories = false)");
        return;
    }
    char buf[32];
    const char *number = gw_num_text(json_object_get(grp, "groupNumber"), buf, sizeof buf);
    if (number == NULL || strlen(number) >= sizeof g->number) {
        run_fail(r, OUTCOME_DEAD, "malformed", "the polled article group has no groupNumber");
        return;
    }
    gw_strlcpy(g->number, number, sizeof g->number);
    const char *filtered = group_filtered(t->conn, g->number);
    if (filtered != NULL) {
        run_skip(r, filtered);
        return;
    }
    char k[160];
    lookup_idmap_key(t, "group", g->number, k, sizeof k);
    json_decref(g->entry); /* a run that waited for its parent starts here again */
    g->entry = task_get_meta(t, k);
    if (gw_str(g->entry, "item") == NULL || gw_str(g->entry, "item")[0] == '\0') {
        json_decref(g->entry);
        g->entry = NULL;
    }
    bool deleted = json_is_true(json_object_get(grp, "isDeleted"));
    if (deleted) {
        if (g->entry == NULL) {
            run_skip(r, "deleted before it was synced");
            return;
        }
        if (json_is_true(json_object_get(g->entry, "deleted"))) {
            run_skip(r, "unchanged");
            return;
        }
        gw_strlcpy(g->parent, gw_str(g->entry, "parent") ?: "", sizeof g->parent);
        g->body = json_pack("{s:b}", "Active", false);
        group_write(r);
        return;
    }
    const char *parent = gw_num_text(json_object_get(grp, "parentGroupNumber"), buf, sizeof buf);
    if (parent != NULL && strcmp(parent, "0") != 0 && group_filtered(t->conn, parent) != NULL) {
        task_note(t, "parent article group %s is filtered out: group %s is a top Category", parent,
                  g->number);
        parent = NULL;
    }
    if (parent != NULL && strcmp(parent, "0") != 0) {
        lookup_idmap_key(t, "group", parent, k, sizeof k);
        json_t *m = task_get_meta(t, k);
        const char *id = gw_str(m, "item");
        if ((id == NULL || id[0] == '\0') && m == NULL)
            id = lookup_made_id(t, "group", parent);
        if (id == NULL || id[0] == '\0') {
            json_decref(m);
            if (lookup_claim_wait(r, "group", parent, group_begin))
                return; /* the parent's event is making it: go on once it is done */
            run_wait(r, GROUP_WAIT_MS, "waiting for article group",
                     "parent article group %s has no QuickBooks Category yet; group %s waits "
                     "for it",
                     parent, g->number);
            return;
        }
        gw_strlcpy(g->parent, id, sizeof g->parent);
        json_decref(m);
    }
    /* Held until the Category is written (group_remember), so that subgroups
     * and articles of this group wait for it rather than for a retry. */
    if (!lookup_claim(r, "group", g->number, group_begin))
        return;
    char name[NAME_MAX_LEN * 4 + 1];
    category_name(gw_str(grp, "name"), "Group", g->number, name, sizeof name);
    g->body = json_pack("{s:s, s:s, s:b}", "Name", name, "Type", "Category", "Active", true);
    if (g->parent[0]) {
        set_parent(g->body, g->parent);
    } else if (g->entry != NULL && gw_str(g->entry, "parent") && gw_str(g->entry, "parent")[0]) {
        json_object_set_new(g->body, "SubItem", json_false()); /* moved to the top */
    }
    if (g->entry != NULL) {
        const char *was = gw_str(g->entry, "name") ?: "";
        const char *was_parent = gw_str(g->entry, "parent") ?: "";
        bool was_deleted = json_is_true(json_object_get(g->entry, "deleted"));
        char ours[NAME_MAX_LEN * 4 + 1];
        group_unique_form(name, g->number, ours, sizeof ours);
        bool renamed_by_us = strcmp(was, ours) == 0;
        if ((strcmp(was, name) == 0 || renamed_by_us) && strcmp(was_parent, g->parent) == 0 &&
            !was_deleted) {
            run_skip(r, "unchanged");
            return;
        }
        if (renamed_by_us)
            json_object_del(g->body, "Name");
        group_write(r);
        return;
    }
    bool exact;
    char *cond = qbo_where_equals("Name", name, &exact);
    char query[1000];
    snprintf(query, sizeof query, "select * from Item where Type = 'Category' and %s",
             cond ? cond : "Name = ''");
    free(cond);
    task_qbo_query(t, query, group_found, r);
}

static const step_fn group_steps[] = {group_begin, NULL};

void products_from_mplus(struct task *t)
{
    const char *entity = json_string_value(json_object_get(t->rec, "entity"));
    if (entity != NULL && strcmp(entity, "article_group") == 0) {
        struct group *g = run_state(t, sizeof *g);
        if (g != NULL)
            run_start(t, group_steps, g, group_free);
        return;
    }
    run_start(t, article_steps, NULL, NULL);
}
