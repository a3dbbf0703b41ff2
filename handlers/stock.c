/*
 * stock.c - the stock flow: Mplus stock changes as the QuickBooks Item's
 * quantity on hand.
 *
 *   stock changed (poll, per branch by stockId)
 *     -> booked a later change of this article already: skipped "superseded"
 *     -> the article's stock now, in every branch that counts (getStock)
 *     -> the quantity by stock_amount: free (amountFree - amountReserved),
 *        or free_incoming (that plus amountIncoming), summed over the
 *        branches of stock_branches (else the one of mplus_stock_branch)
 *     -> the article's Item (the sales flow's lookup: id map, the company's
 *        Items by SKU, or the products flow makes it); never a bare Item
 *     -> the Item's QtyOnHand by a sparse Item update, when QuickBooks
 *        tracks its quantity (else skipped, saying so)
 *
 * Why an Item update and not an InventoryAdjustment: the adjustment entity
 * exists only in US QuickBooks Plus and Advanced, and it takes a difference,
 * so a lost or repeated one would leave the quantity wrong for good. An
 * update sets the quantity Mplus has, so a repeat does no harm.
 *
 * A burst of changes of one article books the newest quantity once: the
 * first event reads the stock as it is now and keeps the highest stockId it
 * saw; the events of the changes it covered end "superseded". Events of one
 * article in different branches run one at a time (a claim).
 *
 * The id map: idmap.<connection>.stock.<article> -> {stock_id, qty}.
 */
#include "clients.h"
#include "handler.h"
#include "mplus.h"
#include "qbo.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLACES 9 /* decimal places kept; a sum of int64 stays exact below this */

struct stock {
    struct run *r;
    /* How a write (or a reason not to write) ends: the stock flow goes on,
     * an after-sale refresh takes its next article. */
    void (*end)(struct stock *s, const char *skipped);
    char article[32];
    char branch[32];
    int64_t stock_id; /* of the event */
    int64_t seen_id;  /* the highest stockId read with the quantity */
    int64_t qty;      /* the quantity, scaled by places */
    int places;
    char qty_text[MPLUS_NUM_LEN];
};

/* An after-sale refresh (stock_after_sale): the articles and where it is. */
struct refresh {
    struct stock s;
    json_t *skus;   /* articles of the sale, as text */
    json_t *answer; /* getStock's answer for all of them */
    size_t at;
    step_fn then;
};

static void stock_free(void *p)
{
    free(p);
}

static bool int_of(json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    return json_is_string(v) && gw_strtoi64(json_string_value(v), out);
}

static void meta_key(struct stock *s, char *k, size_t len)
{
    lookup_idmap_key(s->r->t, "stock", s->article, k, len);
}

/* Add the decimal text v (may be NULL: zero) times sign to s->qty. */
static bool add_amount(struct stock *s, const char *v, int sign)
{
    if (v == NULL)
        return true;
    int64_t n;
    int places;
    char err[128];
    if (mplus_quantity_parse(v, &n, &places, err, sizeof err) != 0 || places > MAX_PLACES)
        return false;
    while (s->places < places) {
        s->qty *= 10;
        s->places++;
    }
    while (places < s->places) {
        n *= 10;
        places++;
    }
    s->qty += sign * n;
    return true;
}

static bool counts_branch(const struct gw_connection *c, const char *branch)
{
    if (c->stock_branches == NULL || c->stock_branches[0] == '\0') {
        char own[32];
        snprintf(own, sizeof own, "%ld", c->mplus_stock_branch);
        return strcmp(own, branch) == 0;
    }
    char buf[1024];
    gw_strlcpy(buf, c->stock_branches, sizeof buf);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
        if (strcmp(t, branch) == 0)
            return true;
    return false;
}

static void stock_begin(struct run *r)
{
    struct task *t = r->t;
    struct stock *s = r->flow;
    json_t *p = task_payload(t);
    int64_t n;
    if (!int_of(json_object_get(p, "articleNumber"), &n)) {
        run_fail(r, OUTCOME_DEAD, "malformed", "the polled stock change has no articleNumber");
        return;
    }
    snprintf(s->article, sizeof s->article, "%lld", (long long)n);
    if (int_of(json_object_get(p, "branchNumber"), &n))
        snprintf(s->branch, sizeof s->branch, "%lld", (long long)n);
    else
        snprintf(s->branch, sizeof s->branch, "%ld", t->conn->mplus_stock_branch);
    if (!int_of(json_object_get(p, "stockId"), &s->stock_id))
        s->stock_id = 0;
    if (!t->conn->products_track_stock) {
        run_skip(r, "QuickBooks does not keep stock (products_track_stock = false)");
        return;
    }
    if (!counts_branch(t->conn, s->branch)) {
        run_skip(r, "branch not counted (stock_branches)");
        return;
    }
    /* One article at a time, whichever branch changed. */
    if (!lookup_claim(r, "stock", s->article, stock_begin))
        return;
    char k[160];
    meta_key(s, k, sizeof k);
    json_t *m = task_get_meta(t, k);
    int64_t booked = 0;
    bool known = int_of(json_object_get(m, "stock_id"), &booked);
    json_decref(m);
    if (known && s->stock_id > 0 && s->stock_id <= booked) {
        run_skip(r, "superseded");
        return;
    }
    run_next(r);
}

/* The article's quantity in a getStock answer, by stock_amount over the
 * branches that count, into s->qty_text; false (with the run failed) when
 * an amount is no decimal. */
static bool quantity_of(struct stock *s, json_t *answer)
{
    struct run *r = s->r;
    bool incoming = strcmp(r->t->conn->stock_amount, "free_incoming") == 0;
    s->qty = 0;
    s->places = 0;
    s->seen_id = s->stock_id;
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(answer, "articleStocks"), i, a)
    {
        int64_t n;
        char b[32] = "";
        if (int_of(json_object_get(a, "articleNumber"), &n)) {
            char an[32];
            snprintf(an, sizeof an, "%lld", (long long)n);
            if (strcmp(an, s->article) != 0)
                continue;
        }
        if (int_of(json_object_get(a, "branchNumber"), &n))
            snprintf(b, sizeof b, "%lld", (long long)n);
        if (b[0] && !counts_branch(r->t->conn, b))
            continue;
        if (int_of(json_object_get(a, "stockId"), &n) && n > s->seen_id)
            s->seen_id = n;
        if (!add_amount(s, gw_str(a, "amountFree"), 1) ||
            !add_amount(s, gw_str(a, "amountReserved"), -1) ||
            (incoming && !add_amount(s, gw_str(a, "amountIncoming"), 1))) {
            run_fail(r, OUTCOME_DEAD, "malformed",
                     "getStock: article %s has an amount that is no decimal of at most %d places",
                     s->article, MAX_PLACES);
            return false;
        }
    }
    mplus_quantity_format(s->qty, s->places, s->qty_text, sizeof s->qty_text);
    task_note(r->t, "article %s: quantity %s (%s)", s->article, s->qty_text,
              incoming ? "free plus incoming" : "free");
    return true;
}

static void stock_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct stock *s = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getStock", res);
        return;
    }
    if (!quantity_of(s, res->body))
        return;
    /* The Item must exist; the lookup makes it only from the article. */
    json_decref(r->skus);
    r->skus = json_pack("[s]", s->article);
    r->items_from_article_only = true;
    run_next(r);
}

/* getStock of the articles (text) in the branches that count. */
static void ask_stock(struct run *r, json_t *articles, task_mplus_cb cb, void *arg)
{
    const struct gw_connection *c = r->t->conn;
    json_t *branches = json_array();
    if (c->stock_branches != NULL && c->stock_branches[0] != '\0') {
        char buf[1024];
        gw_strlcpy(buf, c->stock_branches, sizeof buf);
        char *save = NULL;
        int64_t n;
        for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
            if (gw_strtoi64(t, &n))
                json_array_append_new(branches, json_integer((json_int_t)n));
    }
    int64_t first = c->mplus_stock_branch;
    if (json_array_size(branches) > 0)
        first = json_integer_value(json_array_get(branches, 0));
    json_t *numbers = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(articles, i, a)
    {
        int64_t n;
        if (gw_strtoi64(json_string_value(a), &n))
            json_array_append_new(numbers, json_integer((json_int_t)n));
    }
    json_t *req =
        json_pack("{s:I, s:o}", "branchNumber", (json_int_t)first, "articleNumbers", numbers);
    if (json_array_size(branches) > 1)
        json_object_set_new(req, "branchNumbers", branches);
    else
        json_decref(branches);
    task_mplus_call(r->t, "getStock", req, cb, arg);
    json_decref(req);
}

static void stock_now(struct run *r)
{
    struct stock *s = r->flow;
    json_t *one = json_pack("[s]", s->article);
    ask_stock(r, one, stock_read, r);
    json_decref(one);
}

static void remember(struct stock *s)
{
    char k[160];
    meta_key(s, k, sizeof k);
    json_t *v = json_pack("{s:I, s:s}", "stock_id", (json_int_t)s->seen_id, "qty", s->qty_text);
    task_put_meta(s->r->t, k, v);
    json_decref(v);
}

static void qty_written(const struct qbo_result *res, void *arg)
{
    struct stock *s = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(s->r, "update Item QtyOnHand", res);
        return;
    }
    task_note(s->r->t, "Item %s: QtyOnHand %s",
              gw_str(json_object_get(res->body, "Item"), "Id") ?: "?", s->qty_text);
    remember(s);
    s->end(s, NULL);
}

static bool same_qty(json_t *have, const char *want)
{
    json_t *w = json_string(want);
    json_t *one = json_pack("{s:O}", "q", have ? have : json_null());
    json_t *two = json_pack("{s:o}", "q", w);
    json_t *d = lookup_diff_fields(two, one);
    bool same = json_object_size(d) == 0;
    json_decref(d);
    json_decref(one);
    json_decref(two);
    return same;
}

static void item_read(const struct qbo_result *res, void *arg)
{
    struct stock *s = arg;
    struct run *r = s->r;
    json_t *item = json_object_get(res->body, "Item");
    if (res->kind != QBO_OK || gw_str(item, "Id") == NULL) {
        run_fail_qbo(r, "read Item", res);
        return;
    }
    if (!json_is_true(json_object_get(item, "TrackQtyOnHand"))) {
        remember(s);
        s->end(s, "QuickBooks does not track this Item's quantity");
        return;
    }
    if (same_qty(json_object_get(item, "QtyOnHand"), s->qty_text)) {
        remember(s);
        s->end(s, "unchanged");
        return;
    }
    json_t *d =
        json_pack("{s:s, s:s, s:b, s:s}", "Id", gw_str(item, "Id"), "SyncToken",
                  gw_str(item, "SyncToken") ?: "0", "sparse", true, "QtyOnHand", s->qty_text);
    char step[96], rid[128];
    snprintf(step, sizeof step, "qty-%s-%lld", s->article, (long long)s->seen_id);
    task_requestid(r->t, step, rid, sizeof rid);
    task_qbo_update(r->t, "Item", d, rid, qty_written, s);
    json_decref(d);
}

/* Set the Item id's QtyOnHand to s->qty_text, unless it holds it already. */
static void put_quantity(struct stock *s, const char *id)
{
    task_qbo_read(s->r->t, "Item", id, item_read, s);
}

static void flow_end(struct stock *s, const char *skipped)
{
    if (skipped != NULL)
        run_skip(s->r, skipped);
    else
        run_next(s->r);
}

static void stock_write(struct run *r)
{
    struct stock *s = r->flow;
    const char *id = gw_str(json_object_get(r->items, s->article), "id");
    if (id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "article %s: no Item after the lookup", s->article);
        return;
    }
    put_quantity(s, id);
}

static const step_fn stock_steps[] = {stock_begin, stock_now, lookup_items, stock_write, NULL};

void stock_from_mplus(struct task *t)
{
    struct stock *s = run_state(t, sizeof *s);
    if (s == NULL)
        return;
    s->end = flow_end;
    struct run *r = run_new(t, stock_steps, s, stock_free);
    if (r == NULL)
        return;
    s->r = r;
    run_begin(r);
}

/* ---- after a sale ---------------------------------------------------------------- */

/*
 * QuickBooks lowers a tracked Item's quantity on hand by what a sales
 * document sells (and raises it for a refund), and the stock flow sets it
 * to Mplus's quantity, which already counts the sale. Whichever comes last
 * must be Mplus's figure, or the sale is subtracted twice: so after the
 * sales flow books a document, each of its stock articles gets Mplus's
 * quantity again, under the article's stock claim, as a stock event would.
 */
static void refresh_next(struct refresh *f);

static void refresh_end(struct stock *s, const char *skipped)
{
    struct refresh *f = (struct refresh *)s;
    if (skipped != NULL)
        task_note(s->r->t, "article %s: QtyOnHand left alone (%s)", s->article, skipped);
    lookup_release(s->r, NULL);
    f->at++;
    refresh_next(f);
}

static void refresh_free(void *p)
{
    struct refresh *f = p;
    json_decref(f->skus);
    json_decref(f->answer);
    free(f);
}

static void refresh_resume(struct run *r)
{
    refresh_next(r->side);
}

static void refresh_next(struct refresh *f)
{
    struct run *r = f->s.r;
    for (; f->at < json_array_size(f->skus); f->at++) {
        const char *sku = json_string_value(json_array_get(f->skus, f->at));
        const char *id = gw_str(json_object_get(r->items, sku), "id")
                             ?: gw_str(lookup_index_find(r->t, sku), "id");
        bool stocked = false;
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(f->answer, "articleStocks"), i, a)
        {
            int64_t n;
            char an[32];
            if (int_of(json_object_get(a, "articleNumber"), &n) &&
                snprintf(an, sizeof an, "%lld", (long long)n) > 0 && strcmp(an, sku) == 0)
                stocked = true;
        }
        if (id == NULL || !stocked)
            continue; /* no stock article: QuickBooks keeps no quantity of it */
        if (!lookup_claim(r, "stock", sku, refresh_resume))
            return; /* a stock event of the article is running: after it */
        gw_strlcpy(f->s.article, sku, sizeof f->s.article);
        f->s.stock_id = 0;
        if (!quantity_of(&f->s, f->answer))
            return;
        put_quantity(&f->s, id);
        return;
    }
    step_fn then = f->then;
    r->side = NULL;
    r->side_free = NULL;
    refresh_free(f);
    then(r);
}

static void refresh_read(const struct mplus_result *res, void *arg)
{
    struct refresh *f = arg;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(f->s.r, "getStock", res); /* frees f with the run */
        return;
    }
    f->answer = json_incref(res->body);
    refresh_next(f);
}

void stock_after_sale(struct run *r, json_t *skus, step_fn then)
{
    const struct gw_connection *c = r->t->conn;
    if ((c->flows & GW_FLOW_STOCK) == 0 || !c->products_track_stock || json_array_size(skus) == 0) {
        then(r);
        return;
    }
    struct refresh *f = calloc(1, sizeof *f);
    if (f == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "out of memory");
        return;
    }
    f->s.r = r;
    f->s.end = refresh_end;
    f->skus = json_incref(skus);
    f->then = then;
    r->side = f;
    r->side_free = refresh_free;
    ask_stock(r, skus, refresh_read, f);
}
