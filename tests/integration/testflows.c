/*
 * testflows.c - the gateway with three test flows, for driving the delivery
 * engine and the QuickBooks client against the simulator before the shop
 * flows exist. Everything but the flows is the real daemon (cli_main).
 *
 * All three are enabled by `flows = customers` on a connection:
 *   quickbooks Customer: read the customer; done.
 *   quickbooks Item:     read the item; unless its Description is "checked",
 *                        sparse-update it to "checked" (a 5010 re-reads once).
 *   mplus session:       create a Customer from session.customerName (when
 *                        given) and a SalesReceipt from session.lines, each
 *                        with a requestid fixed per event and step (a new
 *                        generation after a replay: task_requestid).
 */
#include "cli.h"
#include "config.h"
#include "handler.h"
#include "clients.h"
#include "qbo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *rec_str(struct task *t, const char *k)
{
    return json_string_value(json_object_get(t->rec, k));
}

/* ---- quickbooks Customer: read ---- */

static void customer_read(const struct qbo_result *r, void *arg)
{
    struct task *t = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "read Customer", r);
        return;
    }
    json_t *c = json_object_get(r->body, "Customer");
    task_note(t, "read Customer %s SyncToken %s", json_string_value(json_object_get(c, "Id")),
              json_string_value(json_object_get(c, "SyncToken")));
    task_done(t);
}

static void run_customer(struct task *t)
{
    const char *op = rec_str(t, "operation");
    if (op && (strcmp(op, "Delete") == 0 || strcmp(op, "Merge") == 0)) {
        task_note(t, "%s recorded", op);
        task_done(t);
        return;
    }
    qbo_read(t->clients->qbo, t->conn, "Customer", rec_str(t, "entity_id"), customer_read, t);
}

/* ---- quickbooks Item: read, then mark ---- */

static void item_updated(const struct qbo_result *r, void *arg)
{
    struct task *t = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "update Item", r);
        return;
    }
    json_t *i = json_object_get(r->body, "Item");
    task_note(t, "updated Item %s to SyncToken %s", json_string_value(json_object_get(i, "Id")),
              json_string_value(json_object_get(i, "SyncToken")));
    task_done(t);
}

static void item_read(const struct qbo_result *r, void *arg)
{
    struct task *t = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "read Item", r);
        return;
    }
    json_t *item = json_object_get(r->body, "Item");
    const char *desc = json_string_value(json_object_get(item, "Description"));
    if (desc && strcmp(desc, "checked") == 0) {
        task_skip(t, "echo");
        return;
    }
    json_t *upd = json_pack("{s:O, s:O, s:s}", "Id", json_object_get(item, "Id"), "SyncToken",
                            json_object_get(item, "SyncToken"), "Description", "checked");
    char rid[64];
    task_requestid(t, "item", rid, sizeof rid);
    qbo_update(t->clients->qbo, t->conn, "Item", upd, rid, item_updated, t);
    json_decref(upd);
}

static void run_item(struct task *t)
{
    qbo_read(t->clients->qbo, t->conn, "Item", rec_str(t, "entity_id"), item_read, t);
}

/* ---- mplus session: customer and receipt ---- */

static void receipt_created(const struct qbo_result *r, void *arg)
{
    struct task *t = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "create SalesReceipt", r);
        return;
    }
    json_t *sr = json_object_get(r->body, "SalesReceipt");
    task_note(t, "created SalesReceipt %s", json_string_value(json_object_get(sr, "Id")));
    task_done(t);
}

static void create_receipt(struct task *t, json_t *customer_ref)
{
    json_t *session = json_object_get(task_payload(t), "session");
    json_t *lines = json_array();
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(session, "lines"), i, l)
    {
        /* Amounts as the test sends them: decimal strings, exact. */
        json_array_append_new(lines, json_pack("{s:O, s:s, s:{s:O, s:O}}", "Amount",
                                               json_object_get(l, "amount"), "DetailType",
                                               "SalesItemLineDetail", "SalesItemLineDetail", "Qty",
                                               json_object_get(l, "quantity"), "UnitPrice",
                                               json_object_get(l, "price")));
    }
    json_t *receipt = json_pack("{s:o}", "Line", lines);
    if (customer_ref)
        json_object_set(receipt, "CustomerRef", customer_ref);
    char rid[64];
    task_requestid(t, "receipt", rid, sizeof rid);
    qbo_create(t->clients->qbo, t->conn, "SalesReceipt", receipt, rid, receipt_created, t);
    json_decref(receipt);
}

static void customer_created(const struct qbo_result *r, void *arg)
{
    struct task *t = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "create Customer", r);
        return;
    }
    json_t *c = json_object_get(r->body, "Customer");
    json_t *ref = json_pack("{s:O}", "value", json_object_get(c, "Id"));
    task_note(t, "created Customer %s", json_string_value(json_object_get(c, "Id")));
    create_receipt(t, ref);
    json_decref(ref);
}

static void run_session(struct task *t)
{
    json_t *session = json_object_get(task_payload(t), "session");
    const char *name = json_string_value(json_object_get(session, "customerName"));
    if (name == NULL) {
        create_receipt(t, NULL);
        return;
    }
    json_t *c = json_pack("{s:s}", "DisplayName", name);
    char rid[64];
    task_requestid(t, "customer", rid, sizeof rid);
    qbo_create(t->clients->qbo, t->conn, "Customer", c, rid, customer_created, t);
    json_decref(c);
}

static const struct flow test_flows[] = {
    {"test-customer-read", GW_FLOW_CUSTOMERS, "quickbooks", "Customer", run_customer, NULL},
    {"test-item-mark", GW_FLOW_CUSTOMERS, "quickbooks", "Item", run_item, NULL},
    {"test-session-receipt", GW_FLOW_CUSTOMERS, "mplus", "session", run_session, NULL},
    {NULL, 0, NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    cli_set_extra_flows(test_flows);
    return cli_main(argc, argv);
}
