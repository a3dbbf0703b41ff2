/*
 * articles.c - the products flow's way back (products_direction = both):
 * what the accountant changes on a QuickBooks Item goes onto its Mplus
 * article, its price and texts, through the mapping products-to-mplus.
 *
 *   Item changed (webhook, CDC) -> read it -> a Category, a SKU that is no
 *       Mplus article number, an Item the id map does not link to its
 *       article: skipped -> nothing the mapping reads differs from what the
 *       gateway last wrote: skipped "echo", no Mplus call -> the products
 *       flow wrote the Item moments ago: wait for that write's outcome
 *       -> the article (getProducts) -> the fields the Item changed since
 *       the gateway wrote it that the article does not hold yet
 *       -> updateProduct with those fields alone
 *
 * No ping-pong, and no old value over a new one: a field goes back only
 * when the Item's differs from what the gateway last wrote to it (the id
 * map's sent, mapped the same way). A price Mplus changed that the gateway
 * has not written to QuickBooks yet is not undone by an accountant's edit of
 * another field. After the write, sent takes the Item's values of the fields
 * that went back, and the fingerprint goes, so the article's change coming
 * back by the poll is compared with sent: no QuickBooks request for what
 * the Item holds already. Articles are only updated: an Item whose article
 * Mplus does not have ends skipped.
 *
 * Not serialised with the products flow: an article event of the same SKU
 * that stores its outcome between remember() reading the id map entry and
 * this event's outcome being stored loses its sent to this one's (a later
 * change of that article is then compared with an older image, and sends a
 * field or two more than needed).
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

/* A change of an Item the products flow wrote less than WRITE_SETTLE_MS ago
 * waits WRITE_WAIT_MS, at most WRITE_WAITS times, for that write's outcome:
 * until then the id map does not say what the gateway wrote, and the
 * webhook of its own write would look like the accountant's edit. */
#define WRITE_SETTLE_MS 5000
#define WRITE_WAIT_MS   2000
#define WRITE_WAITS     5

struct back {
    char sku[32];
    int64_t number;  /* the SKU as an article number */
    json_t *item;    /* the Item as QuickBooks holds it */
    json_t *sent;    /* what the gateway last wrote to it (the id map's) */
    json_t *article; /* {article, product} as Mplus holds them */
    json_t *fields;  /* what goes to the article */
};

static void back_free(void *p)
{
    struct back *b = p;
    json_decref(b->item);
    json_decref(b->sent);
    json_decref(b->article);
    json_decref(b->fields);
    free(b);
}

/* The mapping of item (with the article, or without: NULL), or NULL. */
static json_t *map_back(struct run *r, json_t *item, json_t *article, char *err, size_t errlen)
{
    json_t *out = NULL;
    if (map_run(r->t->clients->mapper, r->t->conn, MAP_PRODUCTS_TO_MPLUS, item, article, &out, err,
                errlen) != 0)
        return NULL;
    return out;
}

/* The fields of the Item, mapped with article (or NULL), that differ from
 * sent's: what the accountant changed since the gateway wrote it. NULL when
 * the mapping failed: the run has ended. */
static json_t *edits(struct run *r, json_t *article)
{
    struct back *b = r->flow;
    char err[512];
    json_t *now = map_back(r, b->item, article, err, sizeof err);
    json_t *then = now ? map_back(r, b->sent, article, err, sizeof err) : NULL;
    json_t *d = then ? lookup_diff_fields(now, then) : NULL;
    json_decref(now);
    json_decref(then);
    if (d == NULL)
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
    return d;
}

/* Whether putting the Item's value of field k (NULL: none) into sent
 * changes what sent maps to (then) in one of the fields that went back. */
static bool went_back(struct run *r, json_t *sent, json_t *then, const char *k, json_t *have)
{
    struct back *b = r->flow;
    json_t *probe = json_copy(sent);
    if (have != NULL)
        json_object_set(probe, k, have);
    else
        json_object_del(probe, k);
    char err[512];
    json_t *mapped = map_back(r, probe, b->article, err, sizeof err);
    json_t *moved = mapped ? lookup_diff_fields(mapped, then) : NULL;
    bool wrote = false;
    const char *f;
    json_t *v;
    json_object_foreach(moved, f, v)
    {
        if (json_object_get(b->fields, f) != NULL)
            wrote = true;
    }
    json_decref(moved);
    json_decref(mapped);
    json_decref(probe);
    return wrote;
}

/*
 * The id map after the write, as stored now (a run of the products flow may
 * have written it since this event read it). Each Item field that differs
 * from sent takes the Item's value when it went back (went_back); the other
 * fields the accountant changed keep what the gateway wrote, so the products
 * flow still sends them when Mplus changes them. The fingerprint goes: the
 * article's next change is compared with sent, not skipped as the one the
 * gateway last wrote. The sync token never goes back.
 */
static void remember(struct run *r)
{
    struct back *b = r->flow;
    char key[160], err[512];
    lookup_idmap_key(r->t, "article", b->sku, key, sizeof key);
    json_t *stored = task_get_meta(r->t, key);
    json_t *sent = json_object_get(stored, "sent");
    const char *mapped = gw_str(stored, "item");
    json_t *then =
        json_is_object(sent) && mapped != NULL && strcmp(mapped, gw_str(b->item, "Id")) == 0
            ? map_back(r, sent, b->article, err, sizeof err)
            : NULL;
    if (then == NULL) {
        json_decref(stored);
        run_next(r);
        return;
    }
    json_t *next = json_copy(sent);
    json_t *differ = lookup_diff_fields(sent, b->item);
    const char *k;
    json_t *v;
    json_object_foreach(b->item, k, v)
    {
        if (json_object_get(sent, k) == NULL)
            json_object_set(differ, k, v);
    }
    json_object_foreach(differ, k, v)
    {
        json_t *have = json_object_get(b->item, k);
        if (!went_back(r, sent, then, k, have))
            continue;
        if (have != NULL)
            json_object_set(next, k, have);
        else
            json_object_del(next, k);
    }
    json_decref(differ);
    json_decref(then);
    json_t *entry = json_copy(stored);
    json_object_set_new(entry, "sent", next);
    json_object_del(entry, "fp");
    uint64_t have_sync, item_sync;
    const char *sync = gw_str(b->item, "SyncToken");
    if (sync != NULL && gw_strtou64(sync, &item_sync) &&
        (!gw_strtou64(gw_str(entry, "sync") ?: "", &have_sync) || item_sync > have_sync))
        json_object_set_new(entry, "sync", json_string(sync));
    task_put_meta(r->t, key, entry);
    json_decref(entry);
    json_decref(stored);
    run_next(r);
}

static void article_updated(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct back *b = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "update article", res);
        return;
    }
    char names[256] = "";
    const char *k;
    json_t *v;
    json_object_foreach(b->fields, k, v)
    {
        gw_appendf(names, sizeof names, "%s%s", names[0] ? ", " : "", k);
    }
    task_note(r->t, "updated article %s: %s", b->sku, names);
    run_next(r);
}

/* updateProduct with the product's number and the article's number and
 * fields: Mplus keeps what the request does not name. */
static void article_write(struct run *r)
{
    struct back *b = r->flow;
    json_t *art = json_copy(b->fields);
    json_object_set(art, "articleNumber",
                    json_object_get(json_object_get(b->article, "article"), "articleNumber"));
    json_t *product = json_object_get(json_object_get(b->article, "product"), "productNumber");
    json_t *req = json_pack("{s:O, s:[o]}", "productNumber", product, "articleList", art);
    task_mplus_call(r->t, "updateProduct", req, article_updated, r);
    json_decref(req);
}

static void article_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct back *b = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getProducts", res);
        return;
    }
    json_t *product = NULL;
    json_t *a = products_article_in(res->body, b->sku, &product);
    if (a == NULL) {
        task_note(r->t, "Mplus has no article %s: the way back updates articles, it makes none",
                  b->sku);
        run_skip(r, "no such article");
        return;
    }
    b->article = json_pack("{s:O, s:o}", "article", a, "product", product);
    json_t *edited = edits(r, b->article);
    if (edited == NULL)
        return;
    b->fields = lookup_diff_fields(edited, a);
    bool echo = json_object_size(edited) == 0;
    json_decref(edited);
    if (json_object_size(b->fields) > 0) {
        run_next(r);
        return;
    }
    if (!echo)
        task_note(r->t, "article %s already holds what the Item says", b->sku);
    run_skip(r, echo ? "echo" : "unchanged");
}

static void article_find(struct run *r)
{
    struct back *b = r->flow;
    json_t *req = json_pack("{s:[I]}", "articleNumbers", (json_int_t)b->number);
    task_mplus_call(r->t, "getProducts", req, article_read, r);
    json_decref(req);
}

/* Of the Item read: whose article it is, and whether it holds an edit. */
static void item_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct back *b = r->flow;
    struct task *t = r->t;
    json_t *item = json_object_get(res->body, "Item");
    const char *id = gw_str(item, "Id");
    if (res->kind != QBO_OK || id == NULL) {
        run_fail_qbo(r, "read Item", res);
        return;
    }
    b->item = json_incref(item);
    const char *type = gw_str(item, "Type"), *sku = gw_str(item, "Sku");
    if (type != NULL && strcmp(type, "Category") == 0) {
        run_skip(r, "category (article groups go from Mplus only)");
        return;
    }
    if (sku == NULL || sku[0] == '\0') {
        run_skip(r, "no SKU");
        return;
    }
    uint64_t number;
    if (!gw_strtou64_plain(sku, &number) || number == 0 || number > INT64_MAX ||
        strlen(sku) >= sizeof b->sku) {
        task_note(t, "SKU \"%.64s\" is no Mplus article number (those are numbers only)", sku);
        run_skip(r, "SKU not numeric");
        return;
    }
    b->number = (int64_t)number;
    gw_strlcpy(b->sku, sku, sizeof b->sku);
    char key[160];
    lookup_idmap_key(t, "article", b->sku, key, sizeof key);
    json_t *entry = task_get_meta(t, key);
    const char *mapped = gw_str(entry, "item");
    const char *made = lookup_made_id(t, "article", b->sku);
    json_t *sent = json_object_get(entry, "sent");
    const char *skip = NULL;
    if (mapped != NULL && strcmp(mapped, id) != 0) {
        task_note(t, "article %s is Item %s; Item %s only has its SKU", b->sku, mapped, id);
        skip = "not the article's Item";
    } else if (mapped == NULL && made != NULL && strcmp(made, id) == 0) {
        skip = "echo"; /* the gateway's own create, back before its outcome is stored */
    } else if (!json_is_object(sent)) {
        /* Without what the gateway wrote, an edit cannot be told from the
         * Item's old values: those would go over the article's newer ones. */
        task_note(t,
                  mapped == NULL ? "no Item is linked to article %s yet: the products flow "
                                   "links one at the article's next change"
                                 : "the gateway has not written the Item of article %s "
                                   "(products_update_existing = false): its values are "
                                   "QuickBooks' own",
                  b->sku);
        skip = "not linked";
    } else {
        b->sent = json_incref(sent);
    }
    json_decref(entry);
    if (skip != NULL) {
        run_skip(r, skip);
        return;
    }
    /* Nothing the mapping reads differs from what the gateway wrote: no
     * need to ask Mplus. */
    json_t *edited = edits(r, NULL);
    if (edited == NULL)
        return;
    bool echo = json_object_size(edited) == 0;
    json_decref(edited);
    if (echo) {
        run_skip(r, "echo");
        return;
    }
    int64_t wrote = lookup_written_at(t, "item-write", b->sku);
    if (wrote != 0 && gw_now_ms() - wrote < WRITE_SETTLE_MS && t->attempt <= WRITE_WAITS) {
        run_wait(r, WRITE_WAIT_MS, "waiting for the gateway's write",
                 "the products flow wrote Item %s moments ago: this change is looked at again "
                 "once that write is stored, so the gateway's own write is not taken for an edit",
                 id);
        return;
    }
    run_next(r);
}

static void item_begin(struct run *r)
{
    struct task *t = r->t;
    const char *id = json_string_value(json_object_get(t->rec, "entity_id"));
    const char *op = json_string_value(json_object_get(t->rec, "operation"));
    if (id != NULL && op != NULL && strcmp(op, "Create") == 0 &&
        lookup_written_at(t, "item-made", id) != 0) {
        /* The webhook of an Item the products flow made: nothing to read. */
        run_skip(r, "echo");
        return;
    }
    /* A delete makes the Item inactive in QuickBooks: read it all the same. */
    task_qbo_read(t, "Item", id, item_read, r);
}

static const step_fn back_steps[] = {item_begin, article_find, article_write, remember, NULL};

void products_from_qbo(struct task *t)
{
    struct back *b = run_state(t, sizeof *b);
    if (b != NULL)
        run_start(t, back_steps, b, back_free);
}
