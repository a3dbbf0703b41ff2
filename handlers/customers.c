/*
 * customers.c - the customers flow: Mplus relations and QuickBooks Customers
 * kept in step, both ways, through the data mapper.
 *
 *   relation changed (poll)  -> find the customer (id map, else e-mail)
 *                               -> create, or sparse-update what differs
 *   customer changed (webhook, CDC) -> find the relation (id map, else
 *                               extRelationId, else e-mail) -> create or update
 *
 * No ping-pong: after each write the flow keeps a fingerprint of what the
 * other side now holds, in the terms of the mapping back. When that change
 * comes back (a webhook, a CDC row, a poll) and maps to the same fingerprint,
 * the event ends skipped with reason "echo": one edit, one write.
 *
 * The way from a relation to its customer (id map, e-mail, create) is the
 * shared lookup of handlers/lookup.c, which the sales flow uses too; this
 * file adds what only this flow does: update what differs, and the way back.
 */
#include "clients.h"
#include "handler.h"
#include "log.h"
#include "map.h"
#include "mplus.h"
#include "qbo.h"
#include "sig.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- shared steps --------------------------------------------------------- */

struct cctx {
    struct task *t;
    json_t *source;   /* the changed relation or customer */
    json_t *existing; /* the other side's record, once found */
    json_t *target;   /* what the mapping made of source */
    int lookup;       /* which relation lookup is running: id map, extRelationId, e-mail */
};

static void ctx_end(struct cctx *x)
{
    json_decref(x->source);
    json_decref(x->existing);
    json_decref(x->target);
    free(x);
}

static void finish_done(struct cctx *x)
{
    task_done(x->t);
    ctx_end(x);
}

static void finish_skip(struct cctx *x, const char *reason)
{
    task_skip(x->t, reason);
    ctx_end(x);
}

static bool same_fp(json_t *map, const char *field, const char *fp)
{
    const char *have = json_string_value(json_object_get(map, field));
    return have != NULL && strcmp(have, fp) == 0;
}

/* ---- relation -> customer ---------------------------------------------------- */

/* Is have base + suffix? */
static bool named_with(const char *have, const char *base, const char *suffix)
{
    size_t n = strlen(base);
    return strncmp(have, base, n) == 0 && strcmp(have + n, suffix) == 0;
}

/*
 * Leave alone a name QuickBooks holds for a reason the relation does not
 * know: "Name (relationNumber)", made because Name was taken (sending Name
 * again meets the same 6240 on every later update), and "Name (deleted)",
 * QuickBooks's own rename of a customer made inactive (while it stays so).
 */
static void keep_qbo_name(json_t *target, json_t *customer, const char *number)
{
    const char *want = json_string_value(json_object_get(target, "DisplayName"));
    const char *have = json_string_value(json_object_get(customer, "DisplayName"));
    if (want == NULL || have == NULL)
        return;
    char renamed[600] = "";
    if (number != NULL)
        snprintf(renamed, sizeof renamed, "%.480s (%s)", want, number);
    bool inactive = json_is_false(json_object_get(target, "Active"));
    if ((renamed[0] && strcmp(have, renamed) == 0) ||
        (inactive && (named_with(have, want, " (deleted)") ||
                      (renamed[0] && named_with(have, renamed, " (deleted)")))))
        json_object_del(target, "DisplayName");
}

static void customer_updated(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "update Customer", res);
        return;
    }
    json_t *c = json_object_get(res->body, "Customer");
    task_note(r->t, "updated Customer %s", r->customer_id);
    lookup_record_pair(r->t, r->relation_number, r->customer_id, c, r->relation);
    run_next(r);
}

/* With the customer found (the lookup created it when there was none), write what differs. */
static void customer_update(struct run *r)
{
    struct task *t = r->t;
    if (r->customer_created) {
        run_next(r);
        return;
    }
    char err[512];
    json_t *target = NULL;
    if (map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, r->relation, r->customer,
                &target, err, sizeof err) != 0) {
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    lookup_drop_fields(target, t->conn->customer_create_only);
    keep_qbo_name(target, r->customer, r->relation_number);
    json_t *d = lookup_diff_fields(target, r->customer);
    json_decref(target);
    if (json_object_size(d) == 0) {
        json_decref(d);
        task_note(t, "Customer %s already holds this relation's data", r->customer_id);
        lookup_record_pair(t, r->relation_number, r->customer_id, r->customer, r->relation);
        run_next(r);
        return;
    }
    json_object_set(d, "Id", json_object_get(r->customer, "Id"));
    json_object_set(d, "SyncToken", json_object_get(r->customer, "SyncToken"));
    char rid[64];
    task_requestid(t, "customer-update", rid, sizeof rid);
    task_qbo_update(t, "Customer", d, rid, customer_updated, r);
    json_decref(d);
}

static const step_fn relation_steps[] = {
    lookup_customer_mapped, lookup_customer_email, lookup_customer_create, customer_update, NULL,
};

static void relation_to_customer(struct task *t)
{
    json_t *rel = task_payload(t);
    const char *number = json_string_value(json_object_get(t->rec, "entity_id"));
    const char *name = json_string_value(json_object_get(rel, "name"));
    const char *company = json_string_value(json_object_get(rel, "companyName"));
    const char *email = json_string_value(json_object_get(rel, "email"));
    if (!json_is_object(rel) || number == NULL) {
        task_fail(t, OUTCOME_DEAD, "malformed", "the polled relation has no relation number");
        return;
    }
    if ((name == NULL || !name[0]) && (company == NULL || !company[0]) &&
        (email == NULL || !email[0])) {
        task_fail(t, OUTCOME_DEAD, "incomplete relation",
                  "relation %s has no name, company name or e-mail: QuickBooks needs a name. "
                  "Fill one in Mplus; the change comes back by itself",
                  number);
        return;
    }
    char fp[65], k[160];
    if (!lookup_fingerprint(t, MAP_CUSTOMERS_TO_QBO, rel, fp)) {
        char err[512];
        json_t *out = NULL;
        map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, rel, NULL, &out, err,
                sizeof err);
        json_decref(out);
        task_fail(t, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    lookup_idmap_key(t, "relation", number, k, sizeof k);
    json_t *pair = task_get_meta(t, k);
    bool echo = same_fp(pair, "mplus_fp", fp);
    json_decref(pair);
    if (echo) {
        task_skip(t, "echo");
        return;
    }
    struct run *r = run_new(t, relation_steps, NULL, NULL);
    if (r == NULL)
        return;
    gw_strlcpy(r->relation_number, number, sizeof r->relation_number);
    r->relation = json_incref(rel);
    r->want_customer = true;
    run_begin(r);
}

/* ---- customer -> relation ---------------------------------------------------- */

static void relation_written(const struct mplus_result *r, void *arg);

/*
 * Does the relation already say all the customer holds? True when the
 * customer, after the update this relation's own mapping would make
 * (customers-to-qbo, create-only fields left alone), maps to the same
 * relation as it does now. This is the gateway's own write coming back
 * before its outcome and the id map are stored: QuickBooks may deliver the
 * webhook of a create (or update) before the gateway has handled the answer
 * to it, so the fingerprint check in customer_read cannot know it yet.
 */
static bool relation_holds_customer(struct cctx *x)
{
    struct task *t = x->t;
    json_t *image = NULL;
    char err[512];
    if (map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, x->existing, x->source, &image,
                err, sizeof err) != 0)
        return false;
    lookup_drop_fields(image, t->conn->customer_create_only);
    char nbuf[32];
    keep_qbo_name(image, x->source,
                  gw_num_text(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf));
    /* The customer as the relation would make it: the image, with what only
     * a create sets as the customer has it. Not the customer with the image
     * laid over it: a field the relation has not (a phone the accountant
     * added) must not come from the customer. */
    json_t *after = image;
    /* A name kept as QuickBooks holds it (keep_qbo_name) is the customer's. */
    if (json_object_get(after, "DisplayName") == NULL && json_object_get(x->source, "DisplayName"))
        json_object_set(after, "DisplayName", json_object_get(x->source, "DisplayName"));
    lookup_copy_fields(after, x->source, t->conn->customer_create_only);
    json_t *then = NULL, *now = NULL;
    bool same = map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_MPLUS, after, NULL, &then,
                        err, sizeof err) == 0 &&
                map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_MPLUS, x->source, NULL, &now,
                        err, sizeof err) == 0;
    /* Every field the customer holds, the relation holds too (the relation
     * may hold more: a field the customer lacks asks for no change). */
    const char *key;
    json_t *v;
    json_object_foreach(now, key, v)
    {
        if (same && strcmp(key, "extRelationId") != 0 && !json_equal(v, json_object_get(then, key)))
            same = false;
    }
    json_decref(then);
    json_decref(now);
    json_decref(after);
    return same;
}

static void relation_write(struct cctx *x)
{
    struct task *t = x->t;
    char err[512];
    json_t *target = NULL;
    if (x->existing != NULL) {
        char nbuf[32], k[160];
        const char *number =
            gw_num_text(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf);
        const char *customer = json_string_value(json_object_get(t->rec, "entity_id"));
        json_t *pair = NULL;
        if (number != NULL) {
            lookup_idmap_key(t, "relation", number, k, sizeof k);
            pair = task_get_meta(t, k);
        }
        const char *paired = json_string_value(json_object_get(pair, "customer"));
        /* Never take a relation over from another customer this way. */
        bool echo = number != NULL && customer != NULL &&
                    (paired == NULL || strcmp(paired, customer) == 0) && relation_holds_customer(x);
        json_decref(pair);
        if (echo) {
            task_note(t, "relation %s already holds this customer's data", number);
            lookup_record_pair(t, number, customer, x->source, x->existing);
            finish_skip(x, "echo");
            return;
        }
        if (number != NULL && x->lookup > 0 && t->attempt == 1) {
            /* The customer was linked to no relation when this began, and it
             * differs from the one it matches: this may be the gateway's own
             * create coming back before its outcome is stored, made from a
             * version of the relation that has changed since. Writing it
             * would put old data over the relation: look again once that
             * create has had time to land. */
            task_fail(t, OUTCOME_RETRY, NULL,
                      "customer %s is linked to no relation yet and matches relation %s by %s: "
                      "looking again shortly, in case the gateway is creating this customer "
                      "from it",
                      customer ? customer : "?", number,
                      x->lookup == 1 ? "extRelationId" : "e-mail");
            ctx_end(x);
            return;
        }
    }
    if (map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_MPLUS, x->source, x->existing,
                &target, err, sizeof err) != 0) {
        task_fail(t, OUTCOME_DEAD, "mapping failed", "%s", err);
        ctx_end(x);
        return;
    }
    json_decref(x->target);
    if (x->existing != NULL) {
        /* Mplus replaces the relation: start from what it holds. */
        lookup_drop_fields(target, t->conn->relation_create_only);
        json_t *merged = json_deep_copy(x->existing);
        json_object_del(merged, "syncMarker");
        json_object_update(merged, target);
        json_decref(target);
        target = merged;
    }
    x->target = target;
    task_mplus_call(t, x->existing ? "updateRelation" : "createRelation", target, relation_written,
                    x);
}

static void relation_written(const struct mplus_result *r, void *arg)
{
    struct cctx *x = arg;
    struct task *t = x->t;
    const char *what = x->existing ? "update relation" : "create relation";
    if (r->kind != MPLUS_OK) {
        task_fail_mplus(t, what, r);
        ctx_end(x);
        return;
    }
    char nbuf[32];
    const char *number =
        x->existing ? gw_num_text(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf)
                    : gw_num_text(json_object_get(r->body, "relationNumber"), nbuf, sizeof nbuf);
    if (number == NULL) {
        task_fail(t, OUTCOME_RETRY, NULL, "%s: Mplus answered without a relation number", what);
        ctx_end(x);
        return;
    }
    task_note(t, "%s relation %s", x->existing ? "updated" : "created", number);
    lookup_record_pair(t, number, json_string_value(json_object_get(t->rec, "entity_id")),
                       x->source, x->target);
    finish_done(x);
}

static void relation_found(const struct mplus_result *r, void *arg);

/* findRelation matches strings as parts ("an@x.nl" finds "jan@x.nl",
 * extRelationId "1" finds "12"): only the whole value is this customer. */
static bool whole_match(struct cctx *x, json_t *rel)
{
    if (x->lookup == 1) {
        const char *id = json_string_value(json_object_get(x->t->rec, "entity_id"));
        const char *have = json_string_value(json_object_get(rel, "extRelationId"));
        return id != NULL && have != NULL && strcmp(id, have) == 0;
    }
    json_t *addr = json_object_get(x->source, "PrimaryEmailAddr");
    const char *email = json_string_value(json_object_get(addr, "Address"));
    const char *have = json_string_value(json_object_get(rel, "email"));
    return email != NULL && have != NULL && strcasecmp(email, have) == 0;
}

/* Look in Mplus: by the id map, then extRelationId, then e-mail.
 * createRelation is not idempotent: always look first. */
static void find_relation(struct cctx *x, int step)
{
    struct task *t = x->t;
    json_t *q = NULL;
    if (step == 0) {
        char k[160];
        lookup_idmap_key(t, "customer", json_string_value(json_object_get(t->rec, "entity_id")), k,
                         sizeof k);
        json_t *m = task_get_meta(t, k);
        const char *num = json_string_value(json_object_get(m, "relation"));
        if (num != NULL) {
            int64_t n;
            if (gw_strtoi64(num, &n))
                q = json_pack("{s:I}", "relationNumber", (json_int_t)n);
        }
        json_decref(m);
        if (q == NULL)
            step = 1;
    }
    if (step == 1)
        q = json_pack("{s:s}", "extRelationId",
                      json_string_value(json_object_get(t->rec, "entity_id")));
    if (step == 2) {
        const char *email = json_string_value(
            json_object_get(json_object_get(x->source, "PrimaryEmailAddr"), "Address"));
        if (email == NULL || email[0] == '\0') {
            relation_write(x);
            return;
        }
        q = json_pack("{s:s}", "email", email);
    }
    x->lookup = step;
    task_mplus_call(t, "findRelation", q, relation_found, x);
    json_decref(q);
}

static void relation_found(const struct mplus_result *r, void *arg)
{
    struct cctx *x = arg;
    if (r->kind != MPLUS_OK) {
        task_fail_mplus(x->t, "find relation", r);
        ctx_end(x);
        return;
    }
    json_t *rel = json_object_get(r->body, "relation");
    if (r->code[0] != '\0' && strstr(r->code, "NOT-FOUND") != NULL)
        rel = NULL;
    if (json_is_object(rel) && x->lookup > 0 && !whole_match(x, rel))
        rel = NULL;
    if (json_is_object(rel)) {
        x->existing = json_incref(rel);
        relation_write(x);
    } else if (x->lookup < 2) {
        find_relation(x, x->lookup + 1);
    } else {
        relation_write(x);
    }
}

static void customer_read(const struct qbo_result *r, void *arg)
{
    struct cctx *x = arg;
    struct task *t = x->t;
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, "read Customer", r);
        ctx_end(x);
        return;
    }
    x->source = json_incref(json_object_get(r->body, "Customer"));
    /* Echo: the relation's pair says the customer holds what we wrote. */
    char fp[65], k[160];
    lookup_idmap_key(t, "customer", json_string_value(json_object_get(t->rec, "entity_id")), k,
                     sizeof k);
    json_t *m = task_get_meta(t, k);
    const char *num = json_string_value(json_object_get(m, "relation"));
    if (num != NULL && lookup_fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, x->source, fp)) {
        lookup_idmap_key(t, "relation", num, k, sizeof k);
        json_t *pair = task_get_meta(t, k);
        bool echo = same_fp(pair, "qbo_fp", fp);
        json_decref(pair);
        if (echo) {
            json_decref(m);
            finish_skip(x, "echo");
            return;
        }
    }
    json_decref(m);
    find_relation(x, 0);
}

static void customer_to_relation(struct task *t)
{
    const char *op = json_string_value(json_object_get(t->rec, "operation")) ?: "";
    if (strcmp(op, "Merge") == 0) {
        task_note(t, "merge recorded: the surviving customer's change follows on its own");
        task_done(t);
        return;
    }
    /* The sales flow's customer of anonymous till sales is no relation. */
    char k[160];
    lookup_idmap_key(t, "default", "customer", k, sizeof k);
    json_t *d = task_get_meta(t, k);
    const char *id = json_string_value(json_object_get(t->rec, "entity_id"));
    const char *def = json_string_value(json_object_get(d, "customer"))
                          ?: lookup_made_id(t, "default", "customer"); /* made, not yet stored */
    bool is_default = id != NULL && def != NULL && strcmp(def, id) == 0;
    json_decref(d);
    if (is_default) {
        task_skip(t, "the default customer of anonymous sales (sales_default_customer)");
        return;
    }
    struct cctx *x = calloc(1, sizeof *x);
    x->t = t;
    /* A delete makes the customer inactive in QuickBooks: read it all the same. */
    task_qbo_read(t, "Customer", json_string_value(json_object_get(t->rec, "entity_id")),
                  customer_read, x);
}

/* ---- entry points ------------------------------------------------------------ */

void customers_from_mplus(struct task *t)
{
    if (strcmp(t->conn->customers_direction, "to_mplus") == 0) {
        task_skip(t, "direction");
        return;
    }
    relation_to_customer(t);
}

void customers_from_qbo(struct task *t)
{
    if (strcmp(t->conn->customers_direction, "to_qbo") == 0) {
        task_skip(t, "direction");
        return;
    }
    customer_to_relation(t);
}
