/*
 * sales.c - the sales flow: Mplus receipts, invoices and orders booked in
 * QuickBooks Online once, exact to the cent.
 *
 *   receipt          -> SalesReceipt    credit receipt -> RefundReceipt
 *   invoice          -> Invoice         credit invoice -> CreditMemo
 *                       + a Payment per Mplus payment on it
 *   order (complete) -> Invoice, or a SalesReceipt when fully paid and
 *                       sales_order_as = receipt_when_paid
 *   order cancelled  -> its document voided
 *
 * Steps: what the document is and whether it is booked (id map) -> the
 * customer (the relation's, through the shared lookup, or the connection's
 * default customer) -> every article as an Item (shared lookup) -> on a
 * rerun, the document in QuickBooks itself -> the document, from the
 * sales-to-qbo mapping -> the payments of an invoice.
 *
 * Money: the flow computes every amount here in integer cents (money.h)
 * and hands the mapping decimal text; the QuickBooks client sends it as
 * JSON numbers digit for digit (qbo_exact_numbers). Line amounts are
 * Mplus's own excl. VAT line totals, the tax is Mplus's vatGroupList, and
 * whatever cent the lines and the tax do not add up to the Mplus total goes
 * on a line of the rounding item: the QuickBooks total is the Mplus total.
 *
 * One sale, one booking: a webshop order becomes a receipt when it is picked
 * up at the till, or an invoice (the receipt's or invoice's orderIds). The
 * first of the order and its receipt or invoice to be booked books the sale;
 * the other books nothing new: a receipt or invoice of a booked order adds
 * its payments to the order's Invoice ("part of sale"), an order booked by
 * its receipt or invoice is skipped. A hold on the sale (lookup_hold) keeps
 * two of them from booking it at once; the order's id map entry names its
 * owner.
 *
 * The id map, written with the outcome:
 *   idmap.<connection>.<receipt|invoice|order>.<mplus id> ->
 *       {entity, id, sync, version, customer, payments: [mplus payment ids booked],
 *        owner: "<kind> <id>" (an order booked by its receipt or invoice),
 *        part_of: <order id> (a receipt or invoice whose order's document books the sale)}
 *   idmap.<connection>.default_customer -> {customer}
 */
#include "clients.h"
#include "handler.h"
#include "map.h"
#include "money.h"
#include "mplus.h"
#include "qbo.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The Mplus documents, and the QuickBooks documents they become. */
struct kind {
    const char *name; /* the event's entity */
    unsigned bit;     /* enum gw_sales_kind */
    const char *type_field;
};
static const struct kind kinds[] = {
    {"receipt", GW_SALES_RECEIPTS, "receiptType"},
    {"invoice", GW_SALES_INVOICES, "invoiceType"},
    {"order", GW_SALES_ORDERS, "orderType"},
};
static const char *const entities[] = {"SalesReceipt", "RefundReceipt", "Invoice", "CreditMemo"};

struct totals {
    int64_t lines;    /* sum of line amounts, cents */
    int64_t tax;      /* Mplus's VAT */
    int64_t total;    /* Mplus's total incl. VAT */
    int64_t rounding; /* what the rounding line carries */
};

struct sale {
    const struct kind *k;
    const char *kind;     /* k->name */
    const char *mplus_id; /* receiptId, invoiceId, orderId */
    json_t *doc;          /* the Mplus document (borrowed payload, or own) */
    json_t *own;          /* the document with its order's prepayments, when it has them */
    const char *entity;   /* the QuickBooks document type */
    bool credit;          /* amounts are negated: refunds and credit memos are positive */
    char map_key[200];
    json_t *booked;  /* the id map entry, or NULL */
    json_t *written; /* the QuickBooks document once written */
    size_t payment_at;
    /* The sale the document belongs to: the order it is, or the order a
     * receipt or invoice was made from ("" for a sale of its own). */
    char sale[64];
    bool part;     /* a receipt or invoice of a sale another document books */
    bool verified; /* a backfill looked in QuickBooks for the booked document */
    /* The first open day, when QuickBooks' books are closed for the document's
     * date and closed_period = next_open: the document is dated it. */
    char open_date[16];
    /* What is booked, worked out before any lookup (sale_check): the lines
     * as the mapping gets them (their Items filled in by sale_write), the
     * totals, and for a VAT company one tax line per rate (sale_taxes). */
    json_t *lines;
    struct totals tot;
    json_t *tax_lines; /* [{rate, percent, net, amount}], or NULL */
    /* The VAT groups booked, in the document's sign: [{code, vat, net}],
     * Mplus's vatGroupList (a net it lacks is its lines'), or for a partly
     * cancelled order what its remaining lines make. */
    json_t *groups;
    const char *rounding_tax_code;
};

static void sale_free(void *p)
{
    struct sale *s = p;
    json_decref(s->booked);
    json_decref(s->written);
    json_decref(s->own);
    json_decref(s->lines);
    json_decref(s->tax_lines);
    json_decref(s->groups);
    free(s);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static long doc_version(json_t *doc)
{
    return (long)json_integer_value(json_object_get(doc, "changeCounter")) * 100000 +
           (long)json_integer_value(json_object_get(doc, "versionNumber"));
}

static json_t *settings_of(struct run *r)
{
    return map_connection_settings(r->t->clients->mapper, r->t->conn);
}

static const char *tax_code(struct run *r, json_int_t code, char *why, size_t whylen);
static bool sale_check(struct run *r);
static void sale_void(struct run *r);

/* The entities entry named name (a stored id map entry's), or NULL. */
static const char *entity_named(const char *name)
{
    for (size_t i = 0; name && i < sizeof entities / sizeof entities[0]; i++)
        if (strcmp(entities[i], name) == 0)
            return entities[i];
    return NULL;
}

/* ---- one sale, one booking ----------------------------------------------------- */

/*
 * Mplus has no delivery cost of its own: a webshop puts it on the order as a
 * line of a delivery article. Lines of the articles in
 * sales_shipping_articles are booked on the Item of the document's delivery
 * method (sales_shipping_items, METHOD:ITEM, * for any other), so shipping
 * income shows per method; without an entry the line keeps its article's
 * own Item. The Item of a line of article sku, when it is such a line.
 */
static const char *shipping_item(struct run *r, json_t *doc, const char *sku)
{
    const char *list = r->t->conn->sales_shipping_articles;
    if (list == NULL || !gw_list_has(list, sku))
        return NULL;
    const char *method = gw_str(doc, "deliveryMethod");
    return (method ? lookup_table(r, "sales_shipping_items", method) : NULL)
               ?: lookup_table(r, "sales_shipping_items", "*");
}

/*
 * The Department of a sale (QuickBooks' location: its sales reports group
 * by it): by country, the first of the delivery address's, the invoice
 * address's, the document's VAT country and default_country that
 * sales_department_by_country names (turnover per country, as
 * income_account_by_country cannot give it: QuickBooks takes a line's
 * income account from its Item); else by financial branch
 * (sales_department_by_branch). NULL for none.
 */
static const char *department(struct run *r, json_t *doc, const char *branch)
{
    const char *countries[] = {
        gw_str(json_object_get(doc, "deliveryAddress"), "country"),
        gw_str(json_object_get(doc, "invoiceAddress"), "country"),
        gw_str(doc, "vatCountryIso3"),
        gw_str(json_array_get(json_object_get(doc, "vatGroupList"), 0), "countryIso3"),
        r->t->conn->default_country,
    };
    for (size_t i = 0; i < sizeof countries / sizeof countries[0]; i++) {
        const char *d =
            countries[i] ? lookup_table(r, "sales_department_by_country", countries[i]) : NULL;
        if (d != NULL)
            return d;
    }
    return lookup_table(r, "sales_department_by_branch", branch);
}

/* Whether invoices Mplus makes of an order are parts of the order's sale,
 * which the order books once, complete (sales_order_invoices = with_order),
 * rather than sales of their own lines (each). */
static bool invoices_with_order(struct run *r)
{
    return strcmp(r->t->conn->sales_order_invoices ?: "each", "with_order") == 0;
}

/* The payment ids of doc that the booking entry has booked already. */
static json_t *payments_booked_of(json_t *doc, json_t *entry)
{
    json_t *out = json_array();
    size_t i, j;
    json_t *p, *v;
    json_array_foreach(json_object_get(doc, "paymentList"), i, p)
    {
        const char *pid = gw_str(p, "paymentId");
        json_array_foreach(json_object_get(entry, "payments"), j, v)
        {
            if (pid != NULL && strcmp(json_string_value(v) ?: "", pid) == 0)
                json_array_append_new(out, json_string(pid));
        }
    }
    return out;
}

/* Whether an order is to be booked now (sales_order_state); why not, if not. */
static bool order_due(struct run *r, json_t *doc, const char **why)
{
    const char *when = r->t->conn->sales_order_state ?: "complete";
    bool complete = ends_with(gw_str(doc, "completeState") ?: "", "STATE-COMPLETE");
    if (complete || strcmp(when, "created") == 0)
        return true;
    if (strcmp(when, "paid") == 0) {
        *why = "order not paid";
        return json_is_true(json_object_get(doc, "fullyPaid"));
    }
    if (strcmp(when, "delivered") == 0) {
        *why = "order not delivered";
        return ends_with(gw_str(doc, "deliveryState") ?: "", "STATE-COMPLETE");
    }
    *why = "order not complete";
    return false;
}

static void sale_payments(struct run *r);
static void sale_begin(struct run *r);

/* The step the run goes on with (run_next runs the one after r->at). */
static void go_to(struct run *r, step_fn step)
{
    for (size_t i = 0; r->steps[i] != NULL; i++)
        if (r->steps[i] == step) {
            r->at = i - 1;
            run_next(r);
            return;
        }
}

/* What the hold on a sale ends with: "Entity id customer k", k the first
 * letter of the kind of document that booked it. */
static void booking_text(struct run *r, char *out, size_t len)
{
    struct sale *s = r->flow;
    snprintf(out, len, "%s %s %s %c", s->entity, gw_str(s->booked, "id") ?: "",
             r->customer_id[0] ? r->customer_id : "-", s->kind[0]);
}

/* The booking of the sale another document made, as {entity, id, customer,
 * owner}: what a hold just ended with, else (for a receipt or invoice) the
 * order's id map entry. NULL when nobody booked it. */
static json_t *sale_booked_elsewhere(struct run *r)
{
    struct sale *s = r->flow;
    const char *made = lookup_made_id(r->t, "sale", s->sale);
    char entity[32], id[40], customer[40], k;
    /* (An order's own booking, made by an attempt that did not end, is not
     * another's; a receipt or invoice has none while it holds the sale.) */
    if (made != NULL && sscanf(made, "%31s %39s %39s %c", entity, id, customer, &k) == 4 &&
        (k != 'o' || strcmp(s->kind, "order") != 0))
        return json_pack("{s:s, s:s, s:s, s:s}", "entity", entity, "id", id, "customer",
                         strcmp(customer, "-") == 0 ? "" : customer, "owner",
                         k == 'o'   ? "order"
                         : k == 'r' ? "receipt"
                                    : "invoice");
    if (strcmp(s->kind, "order") == 0)
        return NULL; /* its own entry is s->booked */
    char key[200];
    lookup_idmap_key(r->t, "order", s->sale, key, sizeof key);
    json_t *m = task_get_meta(r->t, key);
    if (gw_str(m, "id") == NULL || json_is_true(json_object_get(m, "voided"))) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The document books nothing new: another of its sale is the booking. */
static void skip_part(struct run *r)
{
    struct sale *s = r->flow;
    char why[100];
    snprintf(why, sizeof why, "part of sale %s", s->sale);
    run_skip(r, why);
}

/* A receipt or invoice of a sale another document booked: its payments that
 * document does not have yet, linked to it; nothing else. */
static void part_of_sale(struct run *r)
{
    struct sale *s = r->flow;
    s->part = true;
    s->entity = entity_named(gw_str(s->booked, "entity")) ?: "Invoice";
    gw_strlcpy(r->customer_id, gw_str(s->booked, "customer") ?: "", sizeof r->customer_id);
    task_note(r->t, "%s %s is part of sale %s, booked as %s %s", s->kind, s->mplus_id, s->sale,
              s->entity, gw_str(s->booked, "id") ?: "?");
    size_t paid = json_array_size(json_object_get(s->doc, "paymentList"));
    size_t done = json_array_size(json_object_get(s->booked, "payments"));
    if (paid > done && strcmp(s->entity, "Invoice") == 0 && r->customer_id[0]) {
        go_to(r, sale_payments);
        return;
    }
    if (paid > done)
        task_note(r->t, "its payments are not booked: the sale's %s takes no Payment", s->entity);
    skip_part(r);
}

/*
 * Whether the document is to be booked on its own (true), or the run went
 * on otherwise: part of a sale another document booked, or waiting for the
 * hold of a sale another event is booking.
 */
static bool one_booking(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    s->sale[0] = '\0';
    if (strcmp(s->kind, "order") == 0) {
        gw_strlcpy(s->sale, s->mplus_id, sizeof s->sale);
    } else if (!s->credit) {
        const char *order =
            json_string_value(json_array_get(json_object_get(s->doc, "orderIds"), 0));
        if (order != NULL && order[0])
            gw_strlcpy(s->sale, order, sizeof s->sale);
    }
    if (s->sale[0] == '\0')
        return true;
    if (s->booked != NULL) {
        const char *owner = gw_str(s->booked, "owner");
        if (owner != NULL) { /* an order its receipt or invoice booked */
            task_note(t, "order %s is booked as %s %s by %s", s->mplus_id,
                      gw_str(s->booked, "entity") ?: "?", gw_str(s->booked, "id") ?: "?", owner);
            skip_part(r);
            return false;
        }
        if (gw_str(s->booked, "part_of") != NULL) {
            part_of_sale(r);
            return false;
        }
        return true; /* booked on its own: payments and changes as ever */
    }
    const char *why = NULL;
    if (strcmp(s->kind, "order") == 0 && !order_due(r, s->doc, &why))
        return true; /* nothing to book yet (sale_begin says so) */
    if (!lookup_hold(r, "sale", s->sale, sale_begin))
        return false; /* another document of the sale is being booked */
    json_t *other = sale_booked_elsewhere(r);
    if (other == NULL && strcmp(s->kind, "invoice") == 0 && invoices_with_order(r)) {
        /* The order books the sale once it is complete, with this invoice's payments. */
        lookup_unhold(r, NULL);
        task_note(t, "invoice %s is part of order %s, which books the sale once complete",
                  s->mplus_id, s->sale);
        skip_part(r);
        return false;
    }
    if (other == NULL)
        return true; /* this document books the sale; the hold ends once it is written */
    const char *owner = gw_str(other, "owner");
    if (strcmp(s->kind, "order") != 0 && owner != NULL && strncmp(owner, "order", 5) != 0) {
        /* Another receipt or invoice of the order booked its own lines: Mplus
         * invoices a partly delivered order part by part, each invoice the
         * lines delivered, so this one books its own too (the order is not
         * booked once it has them). Only the order's own document holds
         * every line, and makes its receipts and invoices parts of it. */
        task_note(t, "%s %s is a further part of order %s (booked by %s): booked on its own",
                  s->kind, s->mplus_id, s->sale, owner);
        json_decref(other);
        return true;
    }
    lookup_unhold(r, NULL);
    char text[100] = "";
    if (strcmp(s->kind, "order") == 0)
        snprintf(text, sizeof text, "%s", owner ?: "its receipt or invoice");
    /* Payments of this document that the sale's booking carries already (an
     * order booked with its invoices' payments) are not booked again. */
    char okey[200];
    lookup_idmap_key(t, "order", s->sale, okey, sizeof okey);
    json_t *order_entry = strcmp(s->kind, "order") == 0 ? NULL : task_get_meta(t, okey);
    if (order_entry == NULL && strcmp(s->kind, "invoice") == 0 && invoices_with_order(r)) {
        /* Booked a moment ago, with payments of its invoices, and not yet in
         * the store: look again once it is, so none is booked twice. */
        json_decref(other);
        run_wait(r, 1000, "order being stored",
                 "order %s was just booked; its booking is being stored", s->sale);
        return false;
    }
    s->booked = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:o, s:s}", "entity", gw_str(other, "entity") ?: "Invoice", "id",
        gw_str(other, "id") ?: "", "sync", gw_str(other, "sync") ?: "0", "customer",
        gw_str(other, "customer") ?: "", "version", (json_int_t)doc_version(s->doc), "payments",
        payments_booked_of(s->doc, order_entry),
        strcmp(s->kind, "order") == 0 ? "owner" : "part_of",
        strcmp(s->kind, "order") == 0 ? text : s->sale);
    json_decref(order_entry);
    json_decref(other);
    task_put_meta(t, s->map_key, s->booked);
    if (strcmp(s->kind, "order") == 0) {
        task_note(t, "order %s is booked as %s %s by %s", s->mplus_id, gw_str(s->booked, "entity"),
                  gw_str(s->booked, "id"), text);
        skip_part(r);
        return false;
    }
    part_of_sale(r);
    return false;
}

/* The document booked the sale (sale_written): the order's entry names it
 * as the owner, and the hold ends with the booking. */
static void sale_booked(struct run *r)
{
    struct sale *s = r->flow;
    if (r->hold[0] == '\0')
        return;
    if (strcmp(s->kind, "order") != 0) {
        char key[200], owner[120];
        lookup_idmap_key(r->t, "order", s->sale, key, sizeof key);
        snprintf(owner, sizeof owner, "%s %s", s->kind, s->mplus_id);
        json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:I, s:[], s:s}", "entity", s->entity, "id",
                              gw_str(s->booked, "id") ?: "", "sync",
                              gw_str(s->booked, "sync") ?: "0", "customer", r->customer_id,
                              "version", (json_int_t)0, "payments", "owner", owner);
        task_put_meta(r->t, key, v);
        json_decref(v);
    }
    char text[160];
    booking_text(r, text, sizeof text);
    lookup_unhold(r, text);
}

/* An order Mplus made a receipt (picked up at the till) or an invoice of is
 * booked by that document, which the gateway books too: the order waits for
 * nothing and books nothing. So a sale is booked by the same document in
 * whatever order the events come, also after a crash. */
static void defer_to(struct run *r, const char *kind, const char *id)
{
    struct sale *s = r->flow;
    task_note(r->t, "order %s became %s %s in Mplus, which books the sale", s->mplus_id, kind,
              id ?: "?");
    lookup_unhold(r, NULL);
    skip_part(r);
}

static void order_receipts(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != MPLUS_OK) { /* NOT-FOUND is an answer: no receipt */
        run_fail_mplus(r, "getReceiptsByOrder", res);
        return;
    }
    size_t i;
    json_t *rc;
    json_array_foreach(json_object_get(res->body, "receiptList"), i, rc)
    {
        if (strcmp(gw_str(rc, "receiptType") ?: "", "RECEIPT-TYPE-RECEIPT") == 0) {
            defer_to(r, "receipt", gw_str(rc, "receiptId"));
            return;
        }
    }
    run_next(r);
}

/* The document from now on: a copy of it with payments (taken) as its own. */
static void carry_payments(struct sale *s, json_t *payments)
{
    json_t *own = json_deep_copy(s->doc);
    json_object_set_new(own, "paymentList", payments);
    json_decref(s->own);
    s->own = own;
    s->doc = own;
}

/* An order booked with its invoices (with_order) carries their payments. */
static void order_invoices(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getInvoices", res);
        return;
    }
    json_t *pays = json_deep_copy(json_object_get(s->doc, "paymentList")) ?: json_array();
    size_t i, n = 0;
    json_t *inv;
    json_array_foreach(json_object_get(res->body, "invoiceList"), i, inv)
    {
        n++;
        json_array_extend(pays, json_object_get(inv, "paymentList"));
    }
    carry_payments(s, pays);
    task_note(r->t, "order %s is booked with its %zu invoice(s) and what was paid on them",
              s->mplus_id, n);
    run_next(r);
}

static void sale_order_made(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    if (strcmp(s->kind, "order") != 0 || s->booked != NULL) {
        run_next(r);
        return;
    }
    json_t *invoice_ids = json_object_get(s->doc, "invoiceIds");
    const char *invoice = json_string_value(json_array_get(invoice_ids, 0));
    if (invoice != NULL && (t->conn->sales_kinds & GW_SALES_INVOICES) != 0) {
        if (!invoices_with_order(r)) {
            defer_to(r, "invoice", invoice);
            return;
        }
        /* The order books its sale, with what was paid on its invoices. */
        json_t *req = json_pack("{s:O}", "invoiceIds", invoice_ids);
        task_mplus_call(t, "getInvoices", req, order_invoices, r);
        json_decref(req);
        return;
    }
    if ((t->conn->sales_kinds & GW_SALES_RECEIPTS) == 0) {
        run_next(r);
        return;
    }
    json_t *req = json_pack("{s:s}", "orderId", s->mplus_id);
    task_mplus_call(t, "getReceiptsByOrder", req, order_receipts, r);
    json_decref(req);
}

/* A receipt or invoice that books its order's sale carries the order's
 * prepayments too: the money the webshop took is part of the sale. */
static void order_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getOrders", res);
        return;
    }
    json_t *order = json_array_get(json_object_get(res->body, "orderList"), 0);
    json_t *prepaid = json_object_get(order, "paymentList");
    if (json_array_size(prepaid) > 0) {
        json_t *pays = json_deep_copy(prepaid);
        json_array_extend(pays, json_object_get(s->doc, "paymentList"));
        carry_payments(s, pays);
        task_note(r->t, "order %s was paid in advance: its %zu payment(s) are this sale's too",
                  s->sale, json_array_size(prepaid));
    }
    run_next(r);
}

static void sale_order_prepaid(struct run *r)
{
    struct sale *s = r->flow;
    if (s->sale[0] == '\0' || strcmp(s->kind, "order") == 0 || s->booked != NULL) {
        run_next(r);
        return;
    }
    json_t *req = json_pack("{s:[s]}", "orderIds", s->sale);
    task_mplus_call(r->t, "getOrders", req, order_read, r);
    json_decref(req);
}

/* ---- what the document is ------------------------------------------------------ */

/* The articles of the document's lines (but delivery costs) as r->skus,
 * with the text of each (r->item_texts): the Items the shared lookup finds
 * or makes. */
static void sale_skus(struct run *r)
{
    struct sale *s = r->flow;
    json_decref(r->skus);
    json_decref(r->item_texts);
    r->skus = json_array();
    r->item_texts = json_object();
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(s->doc, "lineList"), i, line)
    {
        json_t *n = json_object_get(line, "articleNumber");
        if (!json_is_integer(n))
            continue;
        char sku[32];
        snprintf(sku, sizeof sku, "%lld", (long long)json_integer_value(n));
        if (shipping_item(r, s->doc, sku) != NULL)
            continue; /* booked on its delivery method's Item */
        if (json_object_get(r->item_texts, sku) == NULL) {
            json_array_append_new(r->skus, json_string(sku));
            json_object_set_new(r->item_texts, sku, json_string(gw_str(line, "text") ?: ""));
        }
    }
}

/* ---- quantities on hand ---------------------------------------------------------- */

/* Whether booking a document moves stock the gateway keeps in step. */
static bool keeps_stock(struct run *r)
{
    return (r->t->conn->flows & GW_FLOW_STOCK) != 0 && r->t->conn->products_track_stock;
}

/* The refresh ran: the document's entry no longer waits for it. */
static void stock_cleared(struct run *r)
{
    struct sale *s = r->flow;
    if (json_is_true(json_object_get(s->booked, "stock_pending"))) {
        json_object_del(s->booked, "stock_pending");
        task_put_meta(r->t, s->map_key, s->booked);
    }
}

static void stock_then_next(struct run *r)
{
    stock_cleared(r);
    run_next(r);
}

static void stock_then_skip(struct run *r)
{
    stock_cleared(r);
    run_skip(r, "already booked");
}

static void stock_then_done(struct run *r)
{
    stock_cleared(r);
    run_done(r);
}

/* After the document is written: its articles' quantities are Mplus's
 * again (stock_after_sale). */
static void sale_stock(struct run *r)
{
    struct sale *s = r->flow;
    if (!json_is_true(json_object_get(s->booked, "stock_pending"))) {
        run_next(r);
        return;
    }
    stock_after_sale(r, r->skus, stock_then_next);
}

/* After a void, which gave the quantities back in QuickBooks. */
static void stock_void(struct run *r)
{
    stock_after_sale(r, r->skus, stock_then_done);
}

/* A booked document whose refresh did not run (its attempt failed after
 * the write): the refresh, then skipped as booked. */
static void stock_pending(struct run *r)
{
    stock_after_sale(r, r->skus, stock_then_skip);
}

static void sale_checked(struct run *r);

/* A backfill's look at the booked document: gone (deleted by hand), the
 * document is booked again; there, the run goes on as for any event. */
static void booked_checked(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind == QBO_FAULT && strcmp(res->code, "610") == 0) {
        task_note(r->t, "booked as %s %s, which QuickBooks no longer has: booking it again",
                  gw_str(s->booked, "entity"), gw_str(s->booked, "id"));
        json_decref(s->booked);
        s->booked = NULL;
        sale_checked(r);
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "read the booked document", res);
        return;
    }
    sale_checked(r);
}

/*
 * From sales_mode_since on, a till receipt is booked in its day's summary
 * (summary.c), which lists it: idmap.<c>.summary.<branch>/<day>/<receipt>
 * -> {number, total}. True when the run ended so.
 */
static bool left_to_summary(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    const char *day = gw_str(s->doc, "financialDate");
    if (!t->conn->summary_receipts || day == NULL || strcmp(day, t->conn->sales_mode_since) < 0)
        return false;
    char branch[24], covered[160], total[MPLUS_NUM_LEN];
    snprintf(branch, sizeof branch, "%lld",
             (long long)json_integer_value(json_object_get(s->doc, "financialBranchNumber")));
    snprintf(covered, sizeof covered, "%s/%s/%s", branch, day, s->mplus_id);
    task_note(t, "receipt %s is booked in the daily summary of branch %s, financial day %s",
              s->mplus_id, branch, day);
    int64_t cents = 0;
    qbo_cents_of(json_object_get(s->doc, "totalInclAmount"), &cents);
    mplus_cents_format(cents, total, sizeof total);
    json_t *v = json_pack("{s:s, s:s}", "number", gw_str(s->doc, "transactionString") ?: "",
                          "total", total);
    char key[256];
    lookup_idmap_key(t, "summary", covered, key, sizeof key);
    task_put_meta(t, key, v);
    json_decref(v);
    run_skip(r, "in the daily summary");
    return true;
}

static void sale_begin(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    if ((t->conn->sales_kinds & s->k->bit) == 0) {
        run_skip(r, "kind not booked");
        return;
    }
    json_t *doc = s->doc;
    const char *type = gw_str(doc, s->k->type_field) ?: "";
    s->credit = strstr(type, "CREDIT") != NULL;
    if (strcmp(s->kind, "receipt") == 0) {
        if (strcmp(type, "RECEIPT-TYPE-RECEIPT") != 0 && !s->credit) {
            run_skip(r, "not a sale"); /* cash in/out, payment method transfers */
            return;
        }
        s->entity = s->credit ? "RefundReceipt" : "SalesReceipt";
        if (left_to_summary(r))
            return;
    } else if (strcmp(s->kind, "invoice") == 0) {
        s->entity = s->credit ? "CreditMemo" : "Invoice";
    } else {
        bool paid = json_is_true(json_object_get(doc, "fullyPaid"));
        s->entity = paid && strcmp(t->conn->sales_order_as, "receipt_when_paid") == 0
                        ? "SalesReceipt"
                        : "Invoice";
    }
    lookup_idmap_key(t, s->kind, s->mplus_id, s->map_key, sizeof s->map_key);
    json_decref(s->booked); /* sale_begin runs again after a hold it waited for */
    s->booked = task_get_meta(t, s->map_key);
    if (!one_booking(r))
        return;
    if (strcmp(s->kind, "order") == 0) {
        const char *cancel = gw_str(doc, "cancelState") ?: "";
        if (ends_with(cancel, "STATE-COMPLETE")) {
            if (s->booked == NULL || json_is_true(json_object_get(s->booked, "voided"))) {
                run_skip(r, s->booked ? "already voided" : "cancelled before booking");
                return;
            }
            sale_void(r); /* the void needs no customer or items */
            return;
        }
        const char *why = NULL;
        if (s->booked == NULL && !order_due(r, doc, &why)) {
            run_skip(r, why);
            return;
        }
    }
    if (s->booked != NULL && !s->verified && json_is_true(json_object_get(t->rec, "backfill")) &&
        gw_str(s->booked, "id") != NULL) {
        /* A backfill books what QuickBooks lacks: is the booked document still there? */
        s->verified = true;
        const char *entity = entity_named(gw_str(s->booked, "entity")) ?: s->entity;
        if (task_qbo_read(t, entity, gw_str(s->booked, "id"), booked_checked, r) != 0)
            run_fail(r, OUTCOME_RETRY, NULL, "read %s: could not start the request", entity);
        return;
    }
    sale_checked(r);
}

/* The document, its booking known: already booked (or its payments), or on to the lookups. */
static void sale_checked(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    json_t *doc = s->doc;
    if (s->booked != NULL) {
        s->entity = entity_named(gw_str(s->booked, "entity")) ?: s->entity;
        bool same = json_integer_value(json_object_get(s->booked, "version")) == doc_version(doc);
        size_t paid = json_array_size(json_object_get(doc, "paymentList"));
        size_t done = json_array_size(json_object_get(s->booked, "payments"));
        bool pays = strcmp(s->entity, "Invoice") == 0 && paid > done;
        if (same && !pays) {
            task_note(t, "%s %s is booked as %s %s", s->kind, s->mplus_id, s->entity,
                      gw_str(s->booked, "id") ?: "?");
            if (json_is_true(json_object_get(s->booked, "stock_pending"))) {
                sale_skus(r);
                lookup_item_index(r, stock_pending);
                return;
            }
            run_skip(r, "already booked");
            return;
        }
    }
    if (!sale_check(r))
        return;
    /* The shared lookups' input. */
    json_t *rel = json_object_get(doc, "relationNumber");
    if (json_is_integer(rel))
        snprintf(r->relation_number, sizeof r->relation_number, "%lld",
                 (long long)json_integer_value(rel));
    sale_skus(r);
    run_next(r);
}

/* ---- the customer ------------------------------------------------------------- */

static void default_written(const struct qbo_result *res, void *arg);

static void default_remember(struct run *r, json_t *c);

static void default_found(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find the default customer", res);
        return;
    }
    /* The query may have matched more than the name (qbo_where_equals). */
    json_t *list = qbo_rows(res->body, "Customer");
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "DisplayName"));
        if (name != NULL && strcmp(name, r->t->conn->sales_default_customer) == 0) {
            default_remember(r, c);
            return;
        }
    }
    json_t *obj = json_pack("{s:s}", "DisplayName", r->t->conn->sales_default_customer);
    char rid[64];
    task_requestid(r->t, "default-customer", rid, sizeof rid);
    task_qbo_create(r->t, "Customer", obj, rid, default_written, r);
    json_decref(obj);
}

static void default_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create the default customer", res);
        return;
    }
    default_remember(r, json_object_get(res->body, "Customer"));
}

/* c (found or made) is the default customer: note it in the id map, go on. */
static void default_remember(struct run *r, json_t *c)
{
    const char *id = gw_str(c, "Id");
    if (id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "QuickBooks answered without a Customer Id");
        return;
    }
    gw_strlcpy(r->customer_id, id, sizeof r->customer_id);
    lookup_release(r, id);
    char k[160];
    lookup_idmap_key(r->t, "default", "customer", k, sizeof k);
    json_t *v = json_pack("{s:s}", "customer", id);
    task_put_meta(r->t, k, v);
    json_decref(v);
    task_note(r->t, "default customer \"%s\" is Customer %s", r->t->conn->sales_default_customer,
              id);
    run_next(r);
}

/* A sale without a relation (anonymous till sale): the connection's default
 * customer, found by its name once, created if absent. */
static void sale_default_customer(struct run *r)
{
    if (r->relation_number[0] || r->customer_id[0]) {
        run_next(r);
        return;
    }
    const char *made = lookup_made_id(r->t, "default", "customer");
    if (made != NULL) {
        gw_strlcpy(r->customer_id, made, sizeof r->customer_id);
        run_next(r);
        return;
    }
    char k[160];
    lookup_idmap_key(r->t, "default", "customer", k, sizeof k);
    json_t *m = task_get_meta(r->t, k);
    const char *id = gw_str(m, "customer");
    if (id != NULL) {
        gw_strlcpy(r->customer_id, id, sizeof r->customer_id);
        json_decref(m);
        run_next(r);
        return;
    }
    json_decref(m);
    if (!lookup_claim(r, "default", "customer", sale_default_customer))
        return; /* another sale is finding or creating it */
    bool exact;
    char *cond = qbo_where_equals("DisplayName", r->t->conn->sales_default_customer, &exact);
    char query[1000];
    snprintf(query, sizeof query, "select * from Customer where %s", cond ? cond : "Id = '0'");
    free(cond);
    task_qbo_query(r->t, query, default_found, r);
}

/* ---- the document -------------------------------------------------------------- */

static void money_text(int64_t cents, char *out, size_t len)
{
    mplus_cents_format(cents, out, len);
}

/* Cents of a canonical money field; false when absent or not money. */
static bool cents_of(json_t *o, const char *k, int64_t *out)
{
    const char *v = gw_str(o, k);
    char err[128];
    return v != NULL && mplus_cents_parse(v, out, err, sizeof err) == 0;
}

static const char *vat_country(struct run *r, json_int_t code)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(((struct sale *)r->flow)->doc, "vatGroupList"), i, g)
    {
        if (json_integer_value(json_object_get(g, "vatCode")) == code && gw_str(g, "countryIso3"))
            return gw_str(g, "countryIso3");
    }
    return r->t->conn->default_country ?: "";
}

static const char *tax_code(struct run *r, json_int_t code, char *why, size_t whylen)
{
    return lookup_tax_code(r, vat_country(r, code), code, why, whylen);
}

/* One line of the document as read, amounts in the document's sign. */
struct line_in {
    int64_t qty, excl, incl;
    int qp;
    bool has_excl;
    json_int_t vat;
};

static void add_cents(json_t *o, const char *k, int64_t v)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + v));
}

/* The entry of VAT code in groups, or NULL. */
static json_t *group_find(json_t *groups, json_int_t code)
{
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        if (json_integer_value(json_object_get(g, "code")) == code)
            return g;
    }
    return NULL;
}

/* The entry of VAT code in groups, added when absent. */
static json_t *group_of(json_t *groups, json_int_t code)
{
    json_t *g = group_find(groups, code);
    if (g == NULL) {
        g = json_pack("{s:I, s:I}", "code", code, "vat", (json_int_t)0);
        json_array_append_new(groups, g);
    }
    return g;
}

/* Mplus's VAT groups in the document's sign: [{code, vat, net (absent when
 * Mplus gives none)}]. */
static json_t *mplus_groups(json_t *doc, int sign)
{
    json_t *groups = json_array();
    size_t i;
    json_t *grp;
    json_array_foreach(json_object_get(doc, "vatGroupList"), i, grp)
    {
        int64_t vat = 0, net;
        json_t *g = group_of(groups, json_integer_value(json_object_get(grp, "vatCode")));
        (void)cents_of(grp, "vatAmount", &vat);
        add_cents(g, "vat", sign * vat);
        if (cents_of(grp, "exclAmount", &net))
            add_cents(g, "net", sign * net);
    }
    return groups;
}

/*
 * Lines without totalExclAmount (optional in Mplus's schema): their net
 * amounts are what their VAT group's net leaves after the lines that have
 * one, shared in proportion to their gross amounts, the last taking what
 * division leaves, so that every group's net is Mplus's to the cent.
 */
static bool derive_nets(json_t *groups, struct line_in *in, size_t n, char *why, size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        if (in[i].has_excl)
            continue;
        json_int_t code = in[i].vat;
        json_t *g = group_find(groups, code);
        int64_t known = 0, gross = 0;
        if (g == NULL) {
            snprintf(why, whylen,
                     "line %zu has no totalExclAmount and the document no VAT group %lld to "
                     "derive it from",
                     i + 1, (long long)code);
            return false;
        }
        size_t last = i;
        int64_t group_gross = 0;
        for (size_t j = 0; j < n; j++) {
            if (in[j].vat != code)
                continue;
            group_gross += in[j].incl;
            if (in[j].has_excl) {
                known += in[j].excl;
            } else {
                gross += in[j].incl;
                last = j;
            }
        }
        json_t *net = json_object_get(g, "net");
        int64_t target = json_is_integer(net)
                             ? json_integer_value(net)
                             : group_gross - json_integer_value(json_object_get(g, "vat"));
        int64_t rest = target - known, given = 0;
        for (size_t j = i; j <= last; j++) {
            if (in[j].vat != code || in[j].has_excl)
                continue;
            in[j].excl = j == last ? rest - given
                         : gross   ? (int64_t)((__int128)rest * in[j].incl / gross)
                                   : 0;
            given += in[j].excl;
            in[j].has_excl = true;
        }
    }
    return true;
}

/* v x part / whole, rounded half away from zero (whole != 0). */
static int64_t pro_rata(int64_t v, int64_t part, int64_t whole)
{
    __int128 p = (__int128)v * part;
    __int128 q = p / whole, r = p % whole;
    if (r != 0 && 2 * (r < 0 ? -r : r) >= (whole < 0 ? -whole : whole))
        q += (p < 0) == (whole < 0) ? 1 : -1;
    return (int64_t)q;
}

/*
 * A partly cancelled order: Mplus keeps each line as ordered and says in
 * cancelledQuantity (read-only, as deliveredQuantity) how much of it was
 * cancelled. What is booked is the rest: the remaining quantity, and the
 * line's net and gross in proportion (half away from zero); its VAT is then
 * gross less net, as Mplus has no VAT figures for a part.
 */
static bool remaining_part(json_t *list, struct line_in *in, size_t n, char *why, size_t whylen)
{
    for (size_t i = 0; i < n; i++) {
        json_t *data = json_object_get(json_array_get(list, i), "data");
        const char *c = gw_str(data, "cancelledQuantity");
        int64_t cq;
        int cp;
        char err[128];
        if (c == NULL || in[i].qty == 0)
            continue;
        if (mplus_quantity_parse(c, &cq, &cp, err, sizeof err) != 0 || cp > 9) {
            snprintf(why, whylen, "line %zu has a cancelledQuantity that is no quantity", i + 1);
            return false;
        }
        /* Both at the places of the one with more. */
        int64_t q = in[i].qty;
        int qp = in[i].qp;
        for (; qp < cp; qp++)
            q *= 10;
        for (; cp < qp; cp++)
            cq *= 10;
        if (cq < 0 || cq > (q < 0 ? -q : q)) {
            snprintf(why, whylen, "line %zu: %s cancelled of %s", i + 1, c,
                     gw_str(data, "quantity") ?: "?");
            return false;
        }
        int64_t rest = q < 0 ? q + cq : q - cq;
        in[i].excl = pro_rata(in[i].excl, rest, q);
        in[i].incl = pro_rata(in[i].incl, rest, q);
        in[i].qty = rest;
        in[i].qp = qp;
    }
    return true;
}

/* QuickBooks' limit on a line's Description, in characters. */
#define LINE_DESCRIPTION_MAX 4000
#define DOC_NUMBER_MAX       21 /* QuickBooks' DocNumber */

/* A line's text for the mapping: trimmed of white space as gw_nonempty
 * trims it, cut to QuickBooks' limit, or null when nothing is left. */
static json_t *line_text(json_t *line)
{
    return gw_json_trimmed(gw_str(line, "text"), LINE_DESCRIPTION_MAX);
}

/* The document's lines as the mapping gets them, every amount decimal text
 * (their "item" filled in once the Items are known). */
static json_t *sale_lines(struct run *r, struct totals *tot, char *why, size_t whylen)
{
    struct sale *s = r->flow;
    int sign = s->credit ? -1 : 1;
    bool drop_zero = strcmp(r->t->conn->sales_zero_lines, "drop") == 0;
    json_t *list = json_object_get(s->doc, "lineList");
    size_t n = json_array_size(list);
    struct line_in *in = calloc(n ? n : 1, sizeof *in);
    if (in == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    json_t *out = NULL;
    size_t i;
    json_t *line;
    json_array_foreach(list, i, line)
    {
        json_t *data = json_object_get(line, "data");
        char err[128];
        if (gw_str(data, "quantity") == NULL ||
            mplus_quantity_parse(gw_str(data, "quantity"), &in[i].qty, &in[i].qp, err,
                                 sizeof err) != 0 ||
            !cents_of(data, "totalInclAmount", &in[i].incl)) {
            snprintf(why, whylen, "line %zu (article %lld) has no quantity or totals", i + 1,
                     (long long)json_integer_value(json_object_get(line, "articleNumber")));
            goto out;
        }
        in[i].has_excl = cents_of(data, "totalExclAmount", &in[i].excl);
        in[i].qty *= sign;
        in[i].excl *= sign;
        in[i].incl *= sign;
        in[i].vat = json_integer_value(json_object_get(data, "vatCode"));
    }
    json_decref(s->groups);
    s->groups = mplus_groups(s->doc, sign);
    if (!derive_nets(s->groups, in, n, why, whylen))
        goto out;
    bool partial = strcmp(s->kind, "order") == 0 &&
                   ends_with(gw_str(s->doc, "cancelState") ?: "", "STATE-PARTIAL");
    if (partial && !remaining_part(list, in, n, why, whylen))
        goto out;
    out = json_array();
    json_array_foreach(list, i, line)
    {
        char sku[32];
        snprintf(sku, sizeof sku, "%lld",
                 (long long)json_integer_value(json_object_get(line, "articleNumber")));
        int64_t qty = in[i].qty, excl = in[i].excl;
        int qp = in[i].qp;
        if (qty == 0 || (excl == 0 && in[i].incl == 0 && drop_zero))
            continue;
        const char *tc = tax_code(r, in[i].vat, why, whylen);
        if (tc == NULL) {
            json_decref(out);
            out = NULL;
            goto out;
        }
        int64_t unit;
        int up;
        money_unit_price(excl, qty, qp, &unit, &up);
        int64_t amount = money_line_amount(qty, qp, unit, up);
        char a[MPLUS_NUM_LEN], q[MPLUS_NUM_LEN], u[MPLUS_NUM_LEN], g[MPLUS_NUM_LEN];
        money_text(amount, a, sizeof a);
        mplus_quantity_format(qty, qp, q, sizeof q);
        mplus_quantity_format(unit, up, u, sizeof u);
        money_text(in[i].incl, g, sizeof g);
        json_array_append_new(out,
                              json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:O}", "sku", sku,
                                        "tax_code", tc, "amount", a, "qty", q, "unit_price", u,
                                        "amount_incl", g, "description", line_text(line),
                                        "vat_code", (json_int_t)in[i].vat, "mplus", line));
        tot->lines += amount;
    }
    if (partial) { /* what the remaining lines make, per VAT code */
        json_decref(s->groups);
        s->groups = json_array();
        tot->total = 0;
        for (i = 0; i < n; i++) {
            json_t *g = group_of(s->groups, in[i].vat);
            add_cents(g, "net", in[i].excl);
            add_cents(g, "vat", in[i].incl - in[i].excl);
            tot->total += in[i].incl;
        }
    } else if (cents_of(s->doc, "totalInclAmount", &tot->total)) {
        tot->total *= sign;
    } else {
        snprintf(why, whylen, "the document has no totalInclAmount");
        json_decref(out);
        out = NULL;
        goto out;
    }
    json_t *g;
    json_array_foreach(s->groups, i, g)
    {
        tot->tax += json_integer_value(json_object_get(g, "vat"));
        if (json_object_get(g, "net") != NULL)
            continue;
        /* Mplus gave no net for the group: its lines' */
        json_int_t code = json_integer_value(json_object_get(g, "code"));
        size_t j;
        json_t *ln;
        json_array_foreach(out, j, ln)
        {
            int64_t a = 0;
            if (json_integer_value(json_object_get(ln, "vat_code")) == code &&
                cents_of(ln, "amount", &a))
                add_cents(g, "net", a);
        }
        if (json_object_get(g, "net") == NULL)
            add_cents(g, "net", 0);
    }
    tot->rounding = tot->total - tot->lines - tot->tax;
out:
    free(in);
    return out;
}

/*
 * Everything the document books, worked out and checked before any lookup
 * or write, so that a document that cannot be booked has made nothing on
 * its way (no customer, no Item): its lines, their tax codes, and a
 * difference to its total that a rounding line may carry.
 */
static bool sale_check(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    char why[512] = "";
    memset(&s->tot, 0, sizeof s->tot);
    json_decref(s->lines);
    s->lines = sale_lines(r, &s->tot, why, sizeof why);
    if (s->lines == NULL) {
        run_fail(r, OUTCOME_DEAD, "cannot book", "%s %s: %s", s->kind, s->mplus_id, why);
        return false;
    }
    int64_t rounding = s->tot.rounding < 0 ? -s->tot.rounding : s->tot.rounding;
    size_t groups = json_array_size(json_object_get(s->doc, "vatGroupList"));
    int64_t bound = (int64_t)t->conn->sales_rounding_max_cents * (int64_t)(groups ? groups : 1);
    if (rounding > bound) {
        run_fail(r, OUTCOME_DEAD, "cannot book",
                 "%s %s: its lines and VAT add up to %lld cents, its total is %lld: the "
                 "difference of %lld cents is more than a rounding line may carry "
                 "(sales_rounding_max_cents = %d per VAT group, %zu group(s)); booking it would "
                 "book revenue Mplus does not show. Check the document's lines in Mplus",
                 s->kind, s->mplus_id, (long long)(s->tot.lines + s->tot.tax),
                 (long long)s->tot.total, (long long)s->tot.rounding,
                 t->conn->sales_rounding_max_cents, groups);
        return false;
    }
    const char *rounding_item = t->conn->sales_rounding_item;
    if (rounding != 0 && (rounding_item == NULL || !rounding_item[0])) {
        run_fail(r, OUTCOME_DEAD, "cannot book",
                 "%s %s: its lines and VAT add up to %lld cents less than its total; set "
                 "sales_rounding_item to the Item Id that books such differences, then replay",
                 s->kind, s->mplus_id, (long long)s->tot.rounding);
        return false;
    }
    return true;
}

/* ---- VAT per rate -------------------------------------------------------------- */

/* A tax code of the US kind: Automated Sales Tax works the tax out. */
static bool us_tax_code(const char *code)
{
    return strcmp(code, "TAX") == 0 || strcmp(code, "NON") == 0;
}

/* The tax line of rate, added to lines or found there. */
static json_t *tax_line_of(json_t *lines, const char *rate, const char *percent)
{
    size_t i;
    json_t *tl;
    json_array_foreach(lines, i, tl)
    {
        if (strcmp(gw_str(tl, "rate"), rate) == 0)
            return tl;
    }
    tl = json_pack("{s:s, s:s, s:I, s:I}", "rate", rate, "percent", percent, "net_c", (json_int_t)0,
                   "amount_c", (json_int_t)0);
    json_array_append_new(lines, tl);
    return tl;
}

/*
 * A VAT company (a TaxCode of the lines lists sales rates): one tax line per
 * rate, from Mplus's vatGroupList ("use these VAT amounts, do not calculate
 * them yourself"), net and VAT to the cent; QuickBooks keeps tax lines it is
 * given and would otherwise work the VAT out per line itself. The rounding
 * line gets a TaxCode without VAT.
 */
static void taxes_known(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    json_t *out = json_array();
    bool vat = false;
    size_t i;
    json_t *ln;
    json_array_foreach(s->lines, i, ln)
    {
        json_t *rates = lookup_tax_rates(t, gw_str(ln, "tax_code"));
        if (rates == NULL) {
            json_decref(out);
            /* Made since the table was read? The next attempt reads it again. */
            lookup_tax_forget(t);
            run_fail(r, OUTCOME_RETRY, NULL,
                     "TaxCode %s (sales_tax_codes, Mplus VAT code %lld) is not among the "
                     "company's tax codes",
                     gw_str(ln, "tax_code"),
                     (long long)json_integer_value(json_object_get(ln, "vat_code")));
            return;
        }
        if (json_array_size(rates) > 0)
            vat = true;
    }
    if (!vat) { /* tax codes without rates: QuickBooks takes TotalTax */
        json_decref(out);
        run_next(r);
        return;
    }
    json_t *g;
    json_array_foreach(s->groups, i, g)
    {
        json_int_t code = json_integer_value(json_object_get(g, "code"));
        char why[400];
        const char *tc = tax_code(r, code, why, sizeof why);
        int64_t amount = json_integer_value(json_object_get(g, "vat"));
        int64_t net = json_integer_value(json_object_get(g, "net"));
        json_t *rate = json_array_get(lookup_tax_rates(t, tc ?: ""), 0);
        if (rate == NULL) {
            if (amount == 0)
                continue; /* a code without VAT needs no tax line */
            json_decref(out);
            run_fail(r, OUTCOME_DEAD, "cannot book",
                     "%s %s: Mplus charged %lld cents of VAT under code %lld, and its TaxCode %s "
                     "has no sales rate in QuickBooks",
                     s->kind, s->mplus_id, (long long)amount, (long long)code, tc ?: "(none)");
            return;
        }
        json_t *tl = tax_line_of(out, gw_str(rate, "rate"), gw_str(rate, "percent"));
        add_cents(tl, "net_c", net);
        add_cents(tl, "amount_c", amount);
    }
    json_array_foreach(out, i, g)
    {
        char net[MPLUS_NUM_LEN], amount[MPLUS_NUM_LEN];
        money_text(json_integer_value(json_object_get(g, "net_c")), net, sizeof net);
        money_text(json_integer_value(json_object_get(g, "amount_c")), amount, sizeof amount);
        json_object_set_new(g, "net", json_string(net));
        json_object_set_new(g, "amount", json_string(amount));
        json_object_del(g, "net_c");
        json_object_del(g, "amount_c");
    }
    json_decref(s->tax_lines);
    s->tax_lines = out;
    if (s->tot.rounding != 0) {
        const char *set = t->conn->sales_rounding_tax_code;
        s->rounding_tax_code = set && set[0] ? set : lookup_tax_zero(t);
        if (s->rounding_tax_code == NULL) {
            run_fail(r, OUTCOME_DEAD, "cannot book",
                     "%s %s needs a rounding line of %lld cents, and the company has no TaxCode "
                     "without VAT for it: set sales_rounding_tax_code, then replay",
                     s->kind, s->mplus_id, (long long)s->tot.rounding);
            return;
        }
    }
    run_next(r);
}

static void sale_taxes(struct run *r)
{
    struct sale *s = r->flow;
    size_t i;
    json_t *ln;
    json_array_foreach(s->lines, i, ln)
    {
        if (!us_tax_code(gw_str(ln, "tax_code") ?: "")) {
            lookup_tax_table(r, taxes_known);
            return;
        }
    }
    run_next(r);
}

/* The deposit account of an Mplus payment method: its own, else the * entry. */
static const char *deposit_account(struct run *r, const char *method)
{
    return lookup_table(r, "sales_deposit_accounts", method)
               ?: lookup_table(r, "sales_deposit_accounts", "*");
}

/* The number of different payment methods the document was paid with. */
static size_t methods_paid(json_t *doc)
{
    json_t *pays = json_object_get(doc, "paymentList");
    size_t n = 0, i, j;
    json_t *p;
    json_array_foreach(pays, i, p)
    {
        const char *m = gw_str(p, "method") ?: "";
        for (j = 0; j < i; j++)
            if (strcmp(gw_str(json_array_get(pays, j), "method") ?: "", m) == 0)
                break;
        n += j == i;
    }
    return n;
}

/* The payment method and deposit account of a receipt. */
static void receipt_payment(struct run *r, json_t *input)
{
    struct sale *s = r->flow;
    json_t *pays = json_object_get(s->doc, "paymentList");
    const char *method = gw_str(json_array_get(pays, 0), "method");
    if (method == NULL)
        return;
    const char *pm = lookup_table(r, "sales_payment_methods", method);
    const char *acct = deposit_account(r, method);
    if (methods_paid(s->doc) > 1 && r->t->conn->sales_split_account &&
        r->t->conn->sales_split_account[0])
        acct = r->t->conn->sales_split_account; /* a clearing account for split payments */
    if (pm)
        json_object_set_new(input, "payment_method", json_string(pm));
    if (acct)
        json_object_set_new(input, "deposit_account", json_string(acct));
}

/*
 * A till receipt paid with more than one method (cash and card, gift card
 * and card) is booked, with sales_split_payments = invoice (the default), as
 * an Invoice with one Payment per Mplus payment, each to its method's
 * deposit account, so that every account holds what was paid with its
 * method. With clearing it stays a SalesReceipt deposited to
 * sales_split_account, which the accountant clears by hand.
 */
static void sale_split(struct run *r)
{
    struct sale *s = r->flow;
    if (s->booked == NULL && strcmp(s->entity, "SalesReceipt") == 0 &&
        strcmp(r->t->conn->sales_split_payments, "invoice") == 0 && methods_paid(s->doc) > 1) {
        s->entity = "Invoice";
        task_note(r->t, "%s %s was paid with %zu methods: an Invoice with a Payment per method",
                  s->kind, s->mplus_id, methods_paid(s->doc));
    }
    /* The relation's payment terms (sales_terms by paymentWithinDays) go on
     * every Invoice of it: the lookup reads the relation also when its
     * customer is mapped. */
    r->want_relation = strcmp(s->entity, "Invoice") == 0 &&
                       json_object_size(json_object_get(settings_of(r), "sales_terms")) > 0;
    run_next(r);
}

static void sale_written(const struct qbo_result *res, void *arg);

static void sale_write(struct run *r)
{
    struct task *t = r->t;
    struct sale *s = r->flow;
    size_t i;
    json_t *ln;
    json_array_foreach(s->lines, i, ln)
    {
        const char *ship = shipping_item(r, s->doc, gw_str(ln, "sku") ?: "");
        json_t *item = json_object_get(r->items, gw_str(ln, "sku") ?: "");
        json_object_set_new(ln, "item", json_string(ship ?: gw_str(item, "id") ?: ""));
    }
    const char *rounding_item = t->conn->sales_rounding_item;
    char tax[MPLUS_NUM_LEN], total[MPLUS_NUM_LEN], rnd[MPLUS_NUM_LEN];
    money_text(s->tot.tax, tax, sizeof tax);
    money_text(s->tot.total, total, sizeof total);
    money_text(s->tot.rounding, rnd, sizeof rnd);
    char note[200];
    snprintf(note, sizeof note, "Mplus %s %s", s->kind, s->mplus_id);
    if (s->open_date[0])
        gw_appendf(note, sizeof note, " (financial date %s; its period is closed)",
                   gw_str(s->doc, "financialDate") ?: "?");
    char branch[16];
    snprintf(branch, sizeof branch, "%lld",
             (long long)json_integer_value(json_object_get(s->doc, "financialBranchNumber")));
    /* The lines travel once, in lines[].mplus: the mapper's input is text. */
    json_t *head = json_copy(s->doc);
    json_object_del(head, "lineList");
    /* The number and the date as the mapping writes them, done once here. */
    json_t *input =
        json_pack("{s:s, s:s, s:o, s:s, s:o, s:o, s:s, s:s, s:O, s:s, s:s, s:s, s:b, s:s*, "
                  "s:s*, s:s*, s:O*, s:s*}",
                  "entity", s->entity, "kind", s->kind, "document", head, "customer",
                  r->customer_id, "doc_number",
                  gw_json_trimmed(gw_str(s->doc, "transactionString"), DOC_NUMBER_MAX), "txn_date",
                  s->open_date[0] ? json_string(s->open_date)
                                  : gw_json_trimmed(gw_str(s->doc, "financialDate"), SIZE_MAX),
                  "private_note", note, "mplus_id", s->mplus_id, "lines", s->lines, "tax_total",
                  tax, "total", total, "rounding", rnd, "credit", s->credit, "rounding_item",
                  rounding_item, "class", lookup_table(r, "sales_class_by_branch", branch),
                  "department", department(r, s->doc, branch), "tax_lines", s->tax_lines,
                  "rounding_tax_code", s->rounding_tax_code);
    receipt_payment(r, input);
    json_t *days = json_object_get(r->relation, "paymentWithinDays");
    if (json_is_integer(days)) {
        char d[24];
        snprintf(d, sizeof d, "%lld", (long long)json_integer_value(days));
        const char *term = lookup_table(r, "sales_terms", d);
        if (term)
            json_object_set_new(input, "term", json_string(term));
    }
    /* A new document goes as the mapping wrote it; a change gets Id and
     * SyncToken added. */
    json_t *target = NULL;
    char *text = NULL, err[512];
    int rc = s->booked != NULL ? map_run(t->clients->mapper, t->conn, MAP_SALES_TO_QBO, input,
                                         s->booked, &target, err, sizeof err)
                               : map_run_text(t->clients->mapper, t->conn, MAP_SALES_TO_QBO, input,
                                              NULL, &text, NULL, err, sizeof err);
    json_decref(input);
    if (rc != 0) {
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    char rid[96], step[48];
    if (s->booked != NULL) {
        /* A change to a booked document: replace its lines and totals. */
        json_object_set_new(target, "Id", json_string(gw_str(s->booked, "id") ?: ""));
        json_object_set_new(target, "SyncToken", json_string(gw_str(s->booked, "sync") ?: "0"));
        snprintf(step, sizeof step, "%s-v%ld", s->kind, doc_version(s->doc));
        task_requestid(t, step, rid, sizeof rid);
        task_qbo_update(t, s->entity, target, rid, sale_written, r);
        json_decref(target);
    } else {
        snprintf(step, sizeof step, "%s%s", s->kind, s->open_date[0] ? "-open" : "");
        task_requestid(t, step, rid, sizeof rid);
        task_qbo_create_text(t, s->entity, text, rid, sale_written, r);
    }
}

static void remember(struct run *r, json_t *written, bool voided)
{
    struct sale *s = r->flow;
    json_t *pays = json_object_get(s->booked, "payments");
    json_t *v = json_pack("{s:s, s:s, s:s, s:I, s:o, s:b, s:s}", "entity", s->entity, "id",
                          gw_str(written, "Id") ?: gw_str(s->booked, "id") ?: "", "sync",
                          gw_str(written, "SyncToken") ?: gw_str(s->booked, "sync") ?: "0", "version",
                          (json_int_t)doc_version(s->doc), "payments",
                          pays ? json_incref(pays) : json_array(), "voided", voided, "customer",
                          r->customer_id[0] ? r->customer_id : gw_str(s->booked, "customer") ?: "");
    if (keeps_stock(r))
        json_object_set_new(v, "stock_pending", json_true());
    json_decref(s->booked);
    s->booked = v;
    task_put_meta(r->t, s->map_key, v);
}

/* QuickBooks' closing date: the document is dated the day after it. */
static void closing_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "query Preferences", res);
        return;
    }
    json_t *prefs = json_array_get(qbo_rows(res->body, "Preferences"), 0);
    const char *closed = gw_str(json_object_get(prefs, "AccountingInfoPrefs"), "BookCloseDate");
    int64_t day = gw_day_parse(closed);
    if (day < 0) {
        run_fail(r, OUTCOME_DEAD, "closed period",
                 "QuickBooks refused the date as closed but names no closing date "
                 "(Preferences.AccountingInfoPrefs.BookCloseDate); reopen the period, then replay");
        return;
    }
    gw_day_text(gw_day_add(day, 1), s->open_date);
    task_note(r->t, "QuickBooks' books are closed through %s: %s %s is booked on %s", closed,
              s->kind, s->mplus_id, s->open_date);
    sale_write(r);
}

static void sale_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    char what[64];
    snprintf(what, sizeof what, "%s %s", s->booked ? "update" : "create", s->entity);
    if (qbo_period_closed(res) && s->booked == NULL && !s->open_date[0] &&
        strcmp(r->t->conn->closed_period, "next_open") == 0) {
        /* Booked in the first open period, with a note naming the date. */
        if (task_qbo_query(r->t, "select * from Preferences", closing_read, r) != 0)
            run_fail(r, OUTCOME_RETRY, NULL, "query Preferences: could not start the request");
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, what, res);
        return;
    }
    json_t *doc = json_object_get(res->body, s->entity);
    if (gw_str(doc, "Id") == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "%s: QuickBooks answered without an Id", what);
        return;
    }
    task_note(r->t, "%s %s %s for %s %s", s->booked ? "updated" : "created", s->entity,
              gw_str(doc, "Id"), s->kind, s->mplus_id);
    remember(r, doc, false);
    sale_booked(r);
    run_next(r);
}

/* ---- looking in QuickBooks before a create, on a rerun -------------------------- */

static void existing_found(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find the document in QuickBooks", res);
        return;
    }
    char note[200];
    snprintf(note, sizeof note, "Mplus %s %s", s->kind, s->mplus_id);
    size_t i;
    json_t *d;
    json_array_foreach(qbo_rows(res->body, s->entity), i, d)
    {
        const char *pn = gw_str(d, "PrivateNote") ?: "";
        if (strstr(pn, note) == NULL)
            continue;
        task_note(r->t, "%s %s already holds %s %s: adopted", s->entity, gw_str(d, "Id"), s->kind,
                  s->mplus_id);
        remember(r, d, false);
        sale_booked(r);
        /* Booked before from this version: nothing to write but payments. */
        r->at++; /* past sale_write */
        run_next(r);
        return;
    }
    run_next(r);
}

static void sale_existing(struct run *r)
{
    struct sale *s = r->flow;
    const char *docnum = gw_str(s->doc, "transactionString");
    if (s->booked != NULL || !task_is_rerun(r->t) || docnum == NULL) {
        run_next(r);
        return;
    }
    char *q = qbo_quote(docnum);
    char query[300];
    snprintf(query, sizeof query, "select * from %s where DocNumber = %s", s->entity, q ? q : "''");
    free(q);
    task_qbo_query(r->t, query, existing_found, r);
}

/* ---- payments on an invoice, and voids ----------------------------------------- */

static void pay_next(struct run *r);

/* What the id map keeps of a booked Mplus payment: its paymentId, or its place. */
static const char *payment_key(json_t *p, size_t at, char *buf, size_t len)
{
    const char *pid = gw_str(p, "paymentId");
    if (pid != NULL && pid[0])
        return pid;
    snprintf(buf, len, "#%zu", at);
    return buf;
}

static void payment_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create Payment", res);
        return;
    }
    json_t *p = json_array_get(json_object_get(s->doc, "paymentList"), s->payment_at);
    char buf[32];
    const char *pid = payment_key(p, s->payment_at, buf, sizeof buf);
    json_array_append_new(json_object_get(s->booked, "payments"), json_string(pid));
    task_put_meta(r->t, s->map_key, s->booked);
    task_note(r->t, "created Payment %s for %s",
              gw_str(json_object_get(res->body, "Payment"), "Id"), pid);
    s->payment_at++;
    pay_next(r);
}

static bool payment_booked(json_t *done, const char *pid)
{
    size_t i;
    json_t *v;
    json_array_foreach(done, i, v)
    {
        if (strcmp(json_string_value(v) ?: "", pid) == 0)
            return true;
    }
    return false;
}

static void pay_next(struct run *r)
{
    struct sale *s = r->flow;
    json_t *pays = json_object_get(s->doc, "paymentList");
    json_t *done = json_object_get(s->booked, "payments");
    for (; s->payment_at < json_array_size(pays); s->payment_at++) {
        json_t *p = json_array_get(pays, s->payment_at);
        char buf[32];
        const char *pid = payment_key(p, s->payment_at, buf, sizeof buf);
        int64_t cents;
        if (payment_booked(done, pid))
            continue;
        if (!cents_of(p, "amount", &cents) || cents == 0) {
            json_array_append_new(done, json_string(pid)); /* nothing to book */
            task_put_meta(r->t, s->map_key, s->booked);
            continue;
        }
        char amount[MPLUS_NUM_LEN];
        money_text(cents, amount, sizeof amount);
        json_t *pay =
            json_pack("{s:{s:s}, s:s, s:[{s:s, s:[{s:s, s:s}]}]}", "CustomerRef", "value",
                      r->customer_id, "TotalAmt", amount, "Line", "Amount", amount, "LinkedTxn",
                      "TxnId", gw_str(s->booked, "id") ?: "", "TxnType", "Invoice");
        const char *method = gw_str(p, "method");
        const char *pm = method ? lookup_table(r, "sales_payment_methods", method) : NULL;
        const char *acct = method ? deposit_account(r, method) : NULL;
        if (pm)
            json_object_set_new(pay, "PaymentMethodRef", json_pack("{s:s}", "value", pm));
        if (acct)
            json_object_set_new(pay, "DepositToAccountRef", json_pack("{s:s}", "value", acct));
        if (gw_str(p, "financialDate"))
            json_object_set_new(pay, "TxnDate", json_string(gw_str(p, "financialDate")));
        json_object_set_new(pay, "PrivateNote", json_sprintf("Mplus payment %s", pid));
        char step[96], rid[128];
        snprintf(step, sizeof step, "payment-%.60s", pid);
        task_requestid(r->t, step, rid, sizeof rid);
        task_qbo_create(r->t, "Payment", pay, rid, payment_written, r);
        json_decref(pay);
        return;
    }
    run_next(r);
}

static void sale_payments(struct run *r)
{
    struct sale *s = r->flow;
    if (s->booked == NULL || strcmp(s->entity, "Invoice") != 0) {
        run_next(r);
        return;
    }
    s->payment_at = 0;
    pay_next(r);
}

static void voided(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct sale *s = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "void the document", res);
        return;
    }
    task_note(r->t, "voided %s %s: the order was cancelled", s->entity, gw_str(s->booked, "id"));
    remember(r, json_object_get(res->body, s->entity), true);
    if (!keeps_stock(r)) {
        run_done(r);
        return;
    }
    sale_skus(r); /* the void gave the quantities back in QuickBooks */
    lookup_item_index(r, stock_void);
}

/* An order cancelled after it was booked: void its document, and end. */
static void sale_void(struct run *r)
{
    struct sale *s = r->flow;
    char rid[64];
    task_requestid(r->t, "void", rid, sizeof rid);
    task_qbo_void(r->t, s->entity, gw_str(s->booked, "id") ?: "", gw_str(s->booked, "sync") ?: "0",
                  rid, voided, r);
}

/* ---- the flow ------------------------------------------------------------------ */

static const step_fn sale_steps[] = {
    sale_begin,
    sale_order_made,
    sale_order_prepaid,
    sale_split,
    sale_taxes,
    sale_default_customer,
    lookup_customer_mapped,
    lookup_relation,
    lookup_customer_email,
    lookup_customer_create,
    lookup_items,
    sale_existing,
    sale_write,
    sale_payments,
    sale_stock,
    NULL,
};

void sales_from_mplus(struct task *t)
{
    json_t *doc = task_payload(t);
    const char *kind = json_string_value(json_object_get(t->rec, "entity"));
    const char *id = json_string_value(json_object_get(t->rec, "entity_id"));
    const struct kind *k = NULL;
    for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, kind) == 0)
            k = &kinds[i];
    if (!json_is_object(doc) || k == NULL || id == NULL) {
        task_fail(t, OUTCOME_DEAD, "malformed", "the polled document has no id");
        return;
    }
    struct sale *s = run_state(t, sizeof *s);
    if (s == NULL)
        return;
    s->k = k;
    s->kind = k->name;
    s->mplus_id = id;
    s->doc = doc;
    run_start(t, sale_steps, s, sale_free);
}
