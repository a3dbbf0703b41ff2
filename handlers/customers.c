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
 * The id map lives in the store (meta), written with the event's outcome:
 *   idmap.<connection>.relation.<number> -> {customer, qbo_fp, mplus_fp}
 *   idmap.<connection>.customer.<id>     -> {relation}
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
    json_t *source;     /* the changed relation or customer */
    json_t *existing;   /* the other side's record, once found */
    json_t *target;     /* what the mapping made of source */
    char key_other[96]; /* customer id or relation number on the other side */
    int renames;        /* DisplayName made unique once already */
    int lookup;         /* which relation lookup is running: id map, extRelationId, e-mail */
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

static void idmap_key(struct task *t, const char *side, const char *id, char *out, size_t len)
{
    snprintf(out, len, "idmap.%s.%s.%s", t->conn->name, side, id);
}

/* Fingerprint of a record as the mapping toward the other side sees it. */
static bool fingerprint(struct task *t, const char *mapping, json_t *record, char out[65])
{
    json_t *mapped = NULL;
    char err[512];
    if (map_run(t->clients->mapper, t->conn, mapping, record, NULL, &mapped, err, sizeof err) != 0)
        return false;
    /* Ids and identity fields say which record, not what it holds. */
    json_object_del(mapped, "extRelationId");
    char *text = json_dumps(mapped, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(mapped);
    if (text == NULL)
        return false;
    unsigned char h[32];
    sig_sha256(text, strlen(text), h);
    free(text);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
    return true;
}

static bool same_fp(json_t *map, const char *field, const char *fp)
{
    const char *have = json_string_value(json_object_get(map, field));
    return have != NULL && strcmp(have, fp) == 0;
}

/* Drop the fields set only on create (settings.*_create_only). */
static void drop_create_only(json_t *target, const char *list)
{
    if (list == NULL)
        return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *f = strtok_r(buf, ", \t", &save); f; f = strtok_r(NULL, ", \t", &save))
        json_object_del(target, f);
}

static const char *text_of(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
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

static void customer_written(const struct qbo_result *r, void *arg);
static void create_customer(struct cctx *x);

/* Remember the pair and what each side now holds. */
static void record_pair(struct cctx *x, const char *relation, const char *customer,
                        json_t *customer_now, json_t *relation_now)
{
    struct task *t = x->t;
    char k[160];
    char qfp[65] = "", mfp[65] = "";
    if (customer_now)
        fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, customer_now, qfp);
    if (relation_now)
        fingerprint(t, MAP_CUSTOMERS_TO_QBO, relation_now, mfp);
    idmap_key(t, "relation", relation, k, sizeof k);
    json_t *prev = task_get_meta(t, k);
    json_t *v = json_pack("{s:s, s:s, s:s}", "customer", customer, "qbo_fp",
                          qfp[0] ? qfp : json_string_value(json_object_get(prev, "qbo_fp")) ?: "",
                          "mplus_fp",
                          mfp[0] ? mfp : json_string_value(json_object_get(prev, "mplus_fp")) ?: "");
    json_decref(prev);
    task_put_meta(t, k, v);
    json_decref(v);
    idmap_key(t, "customer", customer, k, sizeof k);
    v = json_pack("{s:s}", "relation", relation);
    task_put_meta(t, k, v);
    json_decref(v);
}

/* The customer fields that differ from the existing one: a sparse update. */
static json_t *diff_fields(json_t *target, json_t *existing)
{
    json_t *d = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(target, k, v)
    {
        json_t *have = json_object_get(existing, k);
        json_t *cmp = v;
        if (json_is_object(v) && json_is_object(have)) {
            /* Compare only the members we set (QuickBooks adds Id, Lat...). */
            json_t *sub = json_object();
            const char *sk;
            json_t *sv;
            json_object_foreach(v, sk, sv)
            {
                json_t *hv = json_object_get(have, sk);
                if (hv != NULL)
                    json_object_set(sub, sk, hv);
            }
            bool eq = json_equal(sub, cmp);
            json_decref(sub);
            if (eq)
                continue;
        } else if (have != NULL && json_equal(have, cmp)) {
            continue;
        }
        json_object_set(d, k, v);
    }
    return d;
}

static void customer_written(const struct qbo_result *r, void *arg)
{
    struct cctx *x = arg;
    struct task *t = x->t;
    if (r->kind == QBO_FAULT && strcmp(r->code, "6240") == 0 && x->existing == NULL &&
        x->renames == 0) {
        /* DisplayName is unique across customers, vendors and employees:
         * make it unique with the relation number, and say so. */
        const char *name = json_string_value(json_object_get(x->target, "DisplayName")) ?: "";
        char renamed[600];
        snprintf(renamed, sizeof renamed, "%.480s (%s)", name,
                 json_string_value(json_object_get(t->rec, "entity_id")) ?: "");
        task_note(t, "DisplayName \"%s\" is taken in QuickBooks: created as \"%s\"", name, renamed);
        json_object_set_new(x->target, "DisplayName", json_string(renamed));
        x->renames++;
        create_customer(x);
        return;
    }
    if (r->kind != QBO_OK) {
        task_fail_qbo(t, x->existing ? "update Customer" : "create Customer", r);
        ctx_end(x);
        return;
    }
    json_t *c = json_object_get(r->body, "Customer");
    const char *id = json_string_value(json_object_get(c, "Id"));
    if (id == NULL) {
        task_fail(t, OUTCOME_RETRY, NULL, "QuickBooks answered without a Customer Id");
        ctx_end(x);
        return;
    }
    task_note(t, "%s Customer %s", x->existing ? "updated" : "created", id);
    record_pair(x, json_string_value(json_object_get(t->rec, "entity_id")), id, c, x->source);
    finish_done(x);
}

static void create_customer(struct cctx *x)
{
    char rid[64];
    task_requestid(x->t, x->renames ? "customer-renamed" : "customer", rid, sizeof rid);
    qbo_create(x->t->clients->qbo, x->t->conn, "Customer", x->target, rid, customer_written, x);
}

/* With the customer found (or not), write what differs. */
static void write_customer(struct cctx *x)
{
    struct task *t = x->t;
    char err[512];
    json_t *target = NULL;
    if (map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, x->source, x->existing, &target,
                err, sizeof err) != 0) {
        task_fail(t, OUTCOME_DEAD, "mapping failed", "%s", err);
        ctx_end(x);
        return;
    }
    json_decref(x->target);
    x->target = target;
    if (x->existing == NULL) {
        create_customer(x);
        return;
    }
    drop_create_only(target, t->conn->customer_create_only);
    keep_qbo_name(target, x->existing, json_string_value(json_object_get(t->rec, "entity_id")));
    json_t *d = diff_fields(target, x->existing);
    const char *id = json_string_value(json_object_get(x->existing, "Id"));
    if (json_object_size(d) == 0) {
        json_decref(d);
        task_note(t, "Customer %s already holds this relation's data", id);
        record_pair(x, json_string_value(json_object_get(t->rec, "entity_id")), id, x->existing,
                    x->source);
        finish_done(x);
        return;
    }
    json_object_set(d, "Id", json_object_get(x->existing, "Id"));
    json_object_set(d, "SyncToken", json_object_get(x->existing, "SyncToken"));
    char rid[64];
    task_requestid(t, "customer-update", rid, sizeof rid);
    qbo_update(t->clients->qbo, t->conn, "Customer", d, rid, customer_written, x);
    json_decref(d);
}

static void found_by_email(const struct qbo_result *r, void *arg)
{
    struct cctx *x = arg;
    if (r->kind != QBO_OK) {
        task_fail_qbo(x->t, "find Customer by e-mail", r);
        ctx_end(x);
        return;
    }
    json_t *list = json_object_get(json_object_get(r->body, "QueryResponse"), "Customer");
    if (json_array_size(list) > 1) {
        char ids[256] = "";
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c)
        {
            size_t n = strlen(ids);
            snprintf(ids + n, sizeof ids - n, "%s%s", n ? ", " : "",
                     json_string_value(json_object_get(c, "Id")) ?: "?");
        }
        task_fail(x->t, OUTCOME_DEAD, "ambiguous e-mail",
                  "the relation's e-mail matches %zu QuickBooks customers (%s): merge them, or "
                  "give the relation another e-mail, then replay",
                  json_array_size(list), ids);
        ctx_end(x);
        return;
    }
    if (json_array_size(list) == 1) {
        x->existing = json_incref(json_array_get(list, 0));
        task_note(x->t, "adopted Customer %s (same e-mail)",
                  json_string_value(json_object_get(x->existing, "Id")) ?: "?");
    }
    write_customer(x);
}

static void find_by_email(struct cctx *x)
{
    const char *email = json_string_value(json_object_get(x->source, "email"));
    if (email == NULL || email[0] == '\0') {
        write_customer(x);
        return;
    }
    char *q = qbo_quote(email);
    char query[600];
    snprintf(query, sizeof query, "select * from Customer where PrimaryEmailAddr = %s",
             q ? q : "''");
    free(q);
    qbo_query(x->t->clients->qbo, x->t->conn, query, found_by_email, x);
}

static void read_mapped_customer(const struct qbo_result *r, void *arg)
{
    struct cctx *x = arg;
    if (r->kind == QBO_FAULT && strcmp(r->code, "610") == 0) {
        task_note(x->t, "mapped Customer %s no longer exists: looking again", x->key_other);
        find_by_email(x);
        return;
    }
    if (r->kind != QBO_OK) {
        task_fail_qbo(x->t, "read Customer", r);
        ctx_end(x);
        return;
    }
    x->existing = json_incref(json_object_get(r->body, "Customer"));
    write_customer(x);
}

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
    if (!fingerprint(t, MAP_CUSTOMERS_TO_QBO, rel, fp)) {
        char err[512];
        json_t *out = NULL;
        map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, rel, NULL, &out, err,
                sizeof err);
        json_decref(out);
        task_fail(t, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    idmap_key(t, "relation", number, k, sizeof k);
    json_t *pair = task_get_meta(t, k);
    if (same_fp(pair, "mplus_fp", fp)) {
        json_decref(pair);
        task_skip(t, "echo");
        return;
    }
    struct cctx *x = calloc(1, sizeof *x);
    x->t = t;
    x->source = json_incref(rel);
    const char *customer = json_string_value(json_object_get(pair, "customer"));
    if (customer != NULL) {
        snprintf(x->key_other, sizeof x->key_other, "%s", customer);
        qbo_read(t->clients->qbo, t->conn, "Customer", customer, read_mapped_customer, x);
    } else {
        find_by_email(x);
    }
    json_decref(pair);
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
    char err[512], now_fp[65], then_fp[65];
    if (map_run(t->clients->mapper, t->conn, MAP_CUSTOMERS_TO_QBO, x->existing, x->source, &image,
                err, sizeof err) != 0)
        return false;
    drop_create_only(image, t->conn->customer_create_only);
    char nbuf[32];
    keep_qbo_name(image, x->source,
                  text_of(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf));
    json_t *after = json_deep_copy(x->source);
    json_object_update(after, image);
    json_decref(image);
    bool same = fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, after, then_fp) &&
                fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, x->source, now_fp) &&
                strcmp(then_fp, now_fp) == 0;
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
            text_of(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf);
        const char *customer = json_string_value(json_object_get(t->rec, "entity_id"));
        json_t *pair = NULL;
        if (number != NULL) {
            idmap_key(t, "relation", number, k, sizeof k);
            pair = task_get_meta(t, k);
        }
        const char *paired = json_string_value(json_object_get(pair, "customer"));
        /* Never take a relation over from another customer this way. */
        bool echo = number != NULL && customer != NULL &&
                    (paired == NULL || strcmp(paired, customer) == 0) && relation_holds_customer(x);
        json_decref(pair);
        if (echo) {
            task_note(t, "relation %s already holds this customer's data", number);
            record_pair(x, number, customer, x->source, x->existing);
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
        drop_create_only(target, t->conn->relation_create_only);
        json_t *merged = json_deep_copy(x->existing);
        json_object_del(merged, "syncMarker");
        json_object_update(merged, target);
        json_decref(target);
        target = merged;
    }
    x->target = target;
    mplus_call(t->clients->mplus, t->conn, x->existing ? "updateRelation" : "createRelation",
               target, relation_written, x);
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
        x->existing ? text_of(json_object_get(x->existing, "relationNumber"), nbuf, sizeof nbuf)
                    : text_of(json_object_get(r->body, "relationNumber"), nbuf, sizeof nbuf);
    if (number == NULL) {
        task_fail(t, OUTCOME_RETRY, NULL, "%s: Mplus answered without a relation number", what);
        ctx_end(x);
        return;
    }
    task_note(t, "%s relation %s", x->existing ? "updated" : "created", number);
    record_pair(x, number, json_string_value(json_object_get(t->rec, "entity_id")), x->source,
                x->target);
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
        idmap_key(t, "customer", json_string_value(json_object_get(t->rec, "entity_id")), k,
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
    mplus_call(t->clients->mplus, t->conn, "findRelation", q, relation_found, x);
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
    idmap_key(t, "customer", json_string_value(json_object_get(t->rec, "entity_id")), k, sizeof k);
    json_t *m = task_get_meta(t, k);
    const char *num = json_string_value(json_object_get(m, "relation"));
    if (num != NULL && fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, x->source, fp)) {
        idmap_key(t, "relation", num, k, sizeof k);
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
    struct cctx *x = calloc(1, sizeof *x);
    x->t = t;
    /* A delete makes the customer inactive in QuickBooks: read it all the same. */
    qbo_read(t->clients->qbo, t->conn, "Customer",
             json_string_value(json_object_get(t->rec, "entity_id")), customer_read, x);
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
