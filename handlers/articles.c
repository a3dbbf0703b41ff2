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

bool products_back(const struct gw_connection *c)
{
    return strcmp(c->products_direction, "both") == 0;
}

struct back {
    struct task *t;
    char sku[32];
    json_t *item;    /* the Item as QuickBooks holds it */
    json_t *entry;   /* the article's id map entry, or NULL */
    json_t *article; /* {article, product} as Mplus holds them */
    json_t *fields;  /* what goes to the article */
};

static void back_end(struct back *b)
{
    json_decref(b->item);
    json_decref(b->entry);
    json_decref(b->article);
    json_decref(b->fields);
    free(b);
}

static void back_skip(struct back *b, const char *reason)
{
    task_skip(b->t, reason);
    back_end(b);
}

/* The mapping of item (with the article, or without: NULL) into *out. */
static bool map_back(struct back *b, json_t *item, json_t *article, json_t **out)
{
    char err[512];
    if (map_run(b->t->clients->mapper, b->t->conn, MAP_PRODUCTS_TO_MPLUS, item, article, out, err,
                sizeof err) == 0)
        return true;
    task_fail(b->t, OUTCOME_DEAD, "mapping failed", "%s", err);
    back_end(b);
    return false;
}

/* What the gateway last wrote to the Item, in its mapped form (new), or NULL. */
static json_t *sent_of(struct back *b)
{
    return json_incref(json_object_get(b->entry, "sent"));
}

/* Whether putting the Item's value of field k (NULL: none) into sent
 * changes what sent maps to in one of the fields that went back. */
static bool went_back(struct back *b, json_t *sent, json_t *then, const char *k, json_t *have)
{
    json_t *probe = json_copy(sent), *mapped = NULL;
    if (have != NULL)
        json_object_set(probe, k, have);
    else
        json_object_del(probe, k);
    char err[512];
    bool wrote = false;
    if (map_run(b->t->clients->mapper, b->t->conn, MAP_PRODUCTS_TO_MPLUS, probe, b->article,
                &mapped, err, sizeof err) == 0) {
        json_t *moved = lookup_diff_fields(mapped, then);
        const char *f;
        json_t *v;
        json_object_foreach(moved, f, v)
        {
            if (json_object_get(b->fields, f) != NULL)
                wrote = true;
        }
        json_decref(moved);
    }
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
static void remember(struct back *b)
{
    char key[160];
    lookup_idmap_key(b->t, "article", b->sku, key, sizeof key);
    json_t *stored = task_get_meta(b->t, key);
    json_t *sent = json_object_get(stored, "sent"), *then = NULL;
    char err[512];
    const char *mapped = gw_str(stored, "item");
    if (!json_is_object(sent) || mapped == NULL ||
        strcmp(mapped, gw_str(b->item, "Id") ?: "") != 0 ||
        map_run(b->t->clients->mapper, b->t->conn, MAP_PRODUCTS_TO_MPLUS, sent, b->article, &then,
                err, sizeof err) != 0) {
        json_decref(stored);
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
        if (!went_back(b, sent, then, k, have))
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
    task_put_meta(b->t, key, entry);
    json_decref(entry);
    json_decref(stored);
}

static void article_updated(const struct mplus_result *r, void *arg)
{
    struct back *b = arg;
    struct task *t = b->t;
    if (r->kind != MPLUS_OK) {
        task_fail_mplus(t, "update article", r);
        back_end(b);
        return;
    }
    char names[256] = "";
    const char *k;
    json_t *v;
    json_object_foreach(b->fields, k, v)
    {
        gw_appendf(names, sizeof names, "%s%s", names[0] ? ", " : "", k);
    }
    task_note(t, "updated article %s: %s", b->sku, names);
    remember(b);
    task_done(t);
    back_end(b);
}

/* updateProduct with the product's number and the article's number and
 * fields: Mplus keeps what the request does not name. */
static void write_article(struct back *b)
{
    json_t *a = json_object_get(b->article, "article");
    json_t *art = json_copy(b->fields);
    json_object_set(art, "articleNumber", json_object_get(a, "articleNumber"));
    json_t *product = json_object_get(json_object_get(b->article, "product"), "productNumber");
    json_t *req =
        json_pack("{s:{s:O, s:[o]}}", "product", "productNumber", product, "articleList", art);
    task_mplus_call(b->t, "updateProduct", json_object_get(req, "product"), article_updated, b);
    json_decref(req);
}

static void article_read(const struct mplus_result *r, void *arg)
{
    struct back *b = arg;
    struct task *t = b->t;
    if (r->kind != MPLUS_OK) {
        task_fail_mplus(t, "getProducts", r);
        back_end(b);
        return;
    }
    json_t *product = NULL;
    json_t *a = products_article_in(r->body, b->sku, &product);
    if (a == NULL) {
        task_note(t, "Mplus has no article %s: the way back updates articles, it makes none",
                  b->sku);
        back_skip(b, "no such article");
        return;
    }
    b->article = json_pack("{s:O, s:o}", "article", a, "product", product);
    json_t *now = NULL, *then = NULL, *sent = sent_of(b);
    if (!map_back(b, b->item, b->article, &now) || !map_back(b, sent, b->article, &then)) {
        json_decref(now);
        json_decref(sent);
        return;
    }
    json_t *edited = lookup_diff_fields(now, then);
    b->fields = lookup_diff_fields(edited, a);
    json_decref(now);
    json_decref(then);
    json_decref(sent);
    if (json_object_size(b->fields) == 0) {
        bool echo = json_object_size(edited) == 0;
        json_decref(edited);
        if (!echo)
            task_note(t, "article %s already holds what the Item says", b->sku);
        back_skip(b, echo ? "echo" : "unchanged");
        return;
    }
    json_decref(edited);
    write_article(b);
}

static void item_read(const struct qbo_result *r, void *arg)
{
    struct back *b = arg;
    struct task *t = b->t;
    json_t *item = json_object_get(r->body, "Item");
    if (r->kind != QBO_OK || gw_str(item, "Id") == NULL) {
        task_fail_qbo(t, "read Item", r);
        back_end(b);
        return;
    }
    b->item = json_incref(item);
    const char *type = gw_str(item, "Type");
    if (type != NULL && strcmp(type, "Category") == 0) {
        back_skip(b, "category (article groups go from Mplus only)");
        return;
    }
    const char *sku = gw_str(item, "Sku");
    int64_t n;
    if (sku == NULL || sku[0] == '\0') {
        back_skip(b, "no SKU");
        return;
    }
    if (!gw_strtoi64(sku, &n) || n <= 0 || sku[0] == '0' || strlen(sku) >= sizeof b->sku) {
        task_note(t, "SKU \"%.64s\" is no Mplus article number (those are numbers only)", sku);
        back_skip(b, "SKU not numeric");
        return;
    }
    gw_strlcpy(b->sku, sku, sizeof b->sku);
    char key[160];
    lookup_idmap_key(t, "article", b->sku, key, sizeof key);
    b->entry = task_get_meta(t, key);
    const char *mapped = gw_str(b->entry, "item");
    const char *id = gw_str(item, "Id");
    if (mapped != NULL && strcmp(mapped, id) != 0) {
        task_note(t, "article %s is Item %s; Item %s only has its SKU", b->sku, mapped, id);
        back_skip(b, "not the article's Item");
        return;
    }
    const char *made = lookup_made_id(t, "article", b->sku);
    if (mapped == NULL && made != NULL && strcmp(made, id) == 0) {
        /* The gateway's own create, back before its outcome is stored. */
        back_skip(b, "echo");
        return;
    }
    /* Without what the gateway wrote, an edit cannot be told from the
     * Item's old values: those would go over the article's newer ones. */
    json_t *sent = sent_of(b);
    if (!json_is_object(sent)) {
        json_decref(sent);
        if (mapped == NULL)
            task_note(t,
                      "no Item is linked to article %s yet: the products flow links one at "
                      "the article's next change",
                      b->sku);
        else
            task_note(t,
                      "the gateway has not written Item %s (products_update_existing = "
                      "false): its values are QuickBooks' own",
                      id);
        back_skip(b, "not linked");
        return;
    }
    /* Nothing the mapping reads differs from what the gateway wrote: no
     * need to ask Mplus. */
    json_t *now = NULL, *then = NULL;
    if (!map_back(b, item, NULL, &now) || !map_back(b, sent, NULL, &then)) {
        json_decref(now);
        json_decref(sent);
        return;
    }
    json_t *edited = lookup_diff_fields(now, then);
    bool echo = json_object_size(edited) == 0;
    json_decref(edited);
    json_decref(now);
    json_decref(then);
    json_decref(sent);
    if (echo) {
        back_skip(b, "echo");
        return;
    }
    int64_t wrote = lookup_written_at(t, "item-write", b->sku);
    if (wrote != 0 && gw_now_ms() - wrote < WRITE_SETTLE_MS && t->attempt <= WRITE_WAITS) {
        struct outcome o = {.kind = OUTCOME_WAIT, .not_before_ms = gw_now_ms() + WRITE_WAIT_MS};
        snprintf(o.reason, sizeof o.reason, "waiting for the gateway's write");
        snprintf(o.error, sizeof o.error,
                 "the products flow wrote Item %s moments ago: this change is looked at again "
                 "once that write is stored, so the gateway's own write is not taken for an edit",
                 id);
        task_finish(t, &o);
        back_end(b);
        return;
    }
    json_t *req = json_pack("{s:[I]}", "articleNumbers", (json_int_t)n);
    task_mplus_call(t, "getProducts", req, article_read, b);
    json_decref(req);
}

void products_from_qbo(struct task *t)
{
    struct back *b = calloc(1, sizeof *b);
    if (b == NULL) {
        task_fail(t, OUTCOME_RETRY, NULL, "out of memory");
        return;
    }
    b->t = t;
    const char *id = json_string_value(json_object_get(t->rec, "entity_id"));
    const char *op = json_string_value(json_object_get(t->rec, "operation"));
    if (id != NULL && op != NULL && strcmp(op, "Create") == 0 &&
        lookup_written_at(t, "item-made", id) != 0) {
        /* The webhook of an Item the products flow made: nothing to read. */
        back_skip(b, "echo");
        return;
    }
    /* A delete makes the Item inactive in QuickBooks: read it all the same. */
    task_qbo_read(t, "Item", id, item_read, b);
}
