/*
 * lookup.c - steps that several flows share: the QuickBooks customer of an
 * Mplus relation, and the QuickBooks Items of Mplus articles.
 *
 * The id map lives in the store (meta), written with the event's outcome:
 *   idmap.<connection>.relation.<number> -> {customer, qbo_fp, mplus_fp}
 *   idmap.<connection>.customer.<id>     -> {relation}
 *   idmap.<connection>.article.<number>  -> {item, name}
 */
#include "clients.h"
#include "handler.h"
#include "jsonout.h"
#include "map.h"
#include "mplus.h"
#include "qbo.h"
#include "sig.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * What the daemon has made, and what it is making now. Events of different
 * documents run at once; two sales of one new relation (or of one new
 * article, or two anonymous sales) would each create the customer. The
 * first to need a record claims its key; the others wait for it and go on
 * with what it made. The id map in the store stays the truth: it is written
 * with the maker's outcome, a moment after the record exists, and this
 * table answers in between. Entries nobody holds are dropped after
 * MADE_KEEP_MS once the table has MADE_MAX of them; when that leaves most
 * (a catalogue made within minutes), the next look is at twice as many, so
 * a big first sync costs no scan of the table per record.
 */
#define MADE_BUCKETS 4096
#define MADE_MAX     8192
#define MADE_KEEP_MS (10 * 60 * 1000)

struct waiter {
    struct run *run;
    step_fn resume;
    struct waiter *next;
};

struct made {
    struct made *next;
    char id[64]; /* "" while being made */
    bool busy;
    int64_t at_ms; /* when it was made */
    struct waiter *waiters;
    char key[]; /* connection|what|id */
};

struct lookup_cache {
    struct made *buckets[MADE_BUCKETS];
    size_t n;
    size_t sweep_at; /* n at which made_sweep runs next */
    /* Per connection: {"at": ms, "skus": {SKU: {"id", "name"}}}, every Item
     * of the company with a SKU, read in pages (lookup_item_index). */
    json_t *indexes;
    /* Per connection: the company's tax codes (lookup_tax_table). */
    json_t *taxes;
};

struct lookup_cache *lookup_cache_new(void)
{
    struct lookup_cache *lc = calloc(1, sizeof(struct lookup_cache));
    if (lc == NULL)
        return NULL;
    lc->sweep_at = MADE_MAX;
    if ((lc->indexes = json_object()) == NULL || (lc->taxes = json_object()) == NULL) {
        json_decref(lc->indexes);
        free(lc);
        return NULL;
    }
    return lc;
}

void lookup_cache_free(struct lookup_cache *lc)
{
    if (lc == NULL)
        return;
    for (size_t i = 0; i < MADE_BUCKETS; i++) {
        for (struct made *m = lc->buckets[i], *next; m; m = next) {
            next = m->next;
            for (struct waiter *w = m->waiters, *wn; w; w = wn) {
                wn = w->next;
                free(w);
            }
            free(m);
        }
    }
    json_decref(lc->indexes);
    json_decref(lc->taxes);
    free(lc);
}

static struct made **made_slot(struct lookup_cache *lc, const char *key)
{
    unsigned h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return &lc->buckets[h % MADE_BUCKETS];
}

/* Drop what nobody holds or waits for and was made long enough ago. */
static void made_sweep(struct lookup_cache *lc)
{
    int64_t old = gw_now_ms() - MADE_KEEP_MS;
    for (size_t i = 0; i < MADE_BUCKETS; i++) {
        for (struct made **pp = &lc->buckets[i]; *pp;) {
            struct made *m = *pp;
            if (!m->busy && m->waiters == NULL && m->at_ms < old) {
                *pp = m->next;
                free(m);
                lc->n--;
            } else {
                pp = &m->next;
            }
        }
    }
}

static struct made *made_find(struct lookup_cache *lc, const char *key, bool create)
{
    struct made **slot = made_slot(lc, key);
    for (struct made *m = *slot; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    if (!create)
        return NULL;
    if (lc->n >= lc->sweep_at) {
        made_sweep(lc);
        lc->sweep_at = lc->n * 2 > MADE_MAX ? lc->n * 2 : MADE_MAX;
    }
    size_t len = strlen(key) + 1;
    struct made *m = calloc(1, sizeof *m + len);
    if (m == NULL)
        return NULL;
    memcpy(m->key, key, len);
    m->at_ms = gw_now_ms();
    m->next = *slot;
    *slot = m;
    lc->n++;
    return m;
}

static void made_key(const struct task *t, const char *what, const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s|%s|%s", t->conn->name, what, id);
}

const char *lookup_made_id(const struct task *t, const char *what, const char *id)
{
    char k[200];
    made_key(t, what, id, k, sizeof k);
    struct made *m = made_find(t->clients->made, k, false);
    return m && m->id[0] ? m->id : NULL;
}

void lookup_note_write(const struct task *t, const char *what, const char *id)
{
    char k[200];
    made_key(t, what, id, k, sizeof k);
    struct made *m = made_find(t->clients->made, k, true);
    if (m != NULL)
        m->at_ms = gw_now_ms();
}

int64_t lookup_written_at(const struct task *t, const char *what, const char *id)
{
    char k[200];
    made_key(t, what, id, k, sizeof k);
    struct made *m = made_find(t->clients->made, k, false);
    return m ? m->at_ms : 0;
}

/* The claim whose key is in slot (r->claim or r->hold) ends; made is what
 * was made (NULL: nothing). Waiters go on. */
static void slot_end(struct run *r, char *slot, const char *made)
{
    struct lookup_cache *lc = r->t->clients->made;
    struct made *m = slot[0] ? made_find(lc, slot, false) : NULL;
    slot[0] = '\0';
    if (m == NULL)
        return;
    if (made != NULL) {
        gw_strlcpy(m->id, made, sizeof m->id);
        m->at_ms = gw_now_ms();
    }
    m->busy = false;
    struct waiter *w = m->waiters;
    m->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        w->resume(w->run);
        free(w);
        w = next;
    }
}

static void claim_end_with(struct run *r, const char *made)
{
    r->claim_end = NULL;
    slot_end(r, r->claim, made);
}

static void claim_end(struct run *r)
{
    claim_end_with(r, NULL);
}

static void hold_end(struct run *r)
{
    r->hold_end = NULL;
    slot_end(r, r->hold, NULL);
}

/* m is busy: r waits for it, or false (out of memory: it goes on at once). */
static bool made_wait(struct made *m, struct run *r, step_fn resume)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return false;
    w->run = r;
    w->resume = resume;
    w->next = m->waiters;
    m->waiters = w;
    /* The key is connection|what|id: name the thing, not the connection. */
    char thing[200];
    const char *what = strchr(m->key, '|');
    gw_strlcpy(thing, what ? what + 1 : m->key, sizeof thing);
    for (char *c = thing; *c; c++)
        if (*c == '|')
            *c = ' ';
    task_note(r->t, "waits for %s, which another event is making", thing);
    return true;
}

bool lookup_claim_wait(struct run *r, const char *what, const char *id, step_fn resume)
{
    char k[200];
    made_key(r->t, what, id, k, sizeof k);
    struct made *m = made_find(r->t->clients->made, k, false);
    return m != NULL && m->busy && made_wait(m, r, resume);
}

/* Take the claim of (what, id) into slot (r->claim or r->hold, ended by
 * ender), ending the one the slot held; false when another run holds it
 * and r goes on at resume once it ends. */
static bool slot_take(struct run *r, const char *what, const char *id, step_fn resume, char *slot,
                      void (**end)(struct run *), void (*ender)(struct run *))
{
    char k[200];
    made_key(r->t, what, id, k, sizeof k);
    bool mine = strcmp(slot, k) == 0;
    struct made *m = made_find(r->t->clients->made, k, true);
    if (m != NULL && m->busy && !mine && made_wait(m, r, resume))
        return false;
    if (*end && !mine)
        ender(r); /* one claim a slot */
    if (m != NULL) {
        m->busy = true;
        gw_strlcpy(slot, k, sizeof r->claim);
        *end = ender;
    }
    return true;
}

bool lookup_claim(struct run *r, const char *what, const char *id, step_fn resume)
{
    return slot_take(r, what, id, resume, r->claim, &r->claim_end, claim_end);
}

void lookup_release(struct run *r, const char *made)
{
    claim_end_with(r, made);
}

bool lookup_hold(struct run *r, const char *what, const char *id, step_fn resume)
{
    return slot_take(r, what, id, resume, r->hold, &r->hold_end, hold_end);
}

void lookup_unhold(struct run *r, const char *made)
{
    r->hold_end = NULL;
    slot_end(r, r->hold, made);
}

void lookup_idmap_key(const struct task *t, const char *side, const char *id, char *out, size_t len)
{
    snprintf(out, len, "idmap.%s.%s.%s", t->conn->name, side, id);
}

bool lookup_fp_of(json_t *value, char out[65])
{
    size_t len;
    char *text = gw_json_text(value, JSON_COMPACT | JSON_SORT_KEYS, &len);
    if (text == NULL)
        return false;
    unsigned char h[32];
    sig_sha256(text, len, h);
    free(text);
    gw_hex(h, sizeof h, out);
    return true;
}

bool lookup_fingerprint(struct task *t, const char *mapping, json_t *record, char out[65])
{
    json_t *mapped = NULL;
    char err[512];
    if (map_run(t->clients->mapper, t->conn, mapping, record, NULL, &mapped, err, sizeof err) != 0)
        return false;
    /* Ids and identity fields say which record, not what it holds. */
    json_object_del(mapped, "extRelationId");
    bool ok = lookup_fp_of(mapped, out);
    json_decref(mapped);
    return ok;
}

void lookup_record_pair(struct task *t, const char *relation, const char *customer,
                        json_t *customer_now, json_t *relation_now)
{
    char k[160];
    char qfp[65] = "", mfp[65] = "";
    if (customer_now)
        lookup_fingerprint(t, MAP_CUSTOMERS_TO_MPLUS, customer_now, qfp);
    if (relation_now)
        lookup_fingerprint(t, MAP_CUSTOMERS_TO_QBO, relation_now, mfp);
    lookup_idmap_key(t, "relation", relation, k, sizeof k);
    json_t *prev = task_get_meta(t, k);
    json_t *v = json_pack("{s:s, s:s, s:s}", "customer", customer, "qbo_fp",
                          qfp[0] ? qfp : json_string_value(json_object_get(prev, "qbo_fp")) ?: "",
                          "mplus_fp",
                          mfp[0] ? mfp : json_string_value(json_object_get(prev, "mplus_fp")) ?: "");
    json_decref(prev);
    task_put_meta(t, k, v);
    json_decref(v);
    lookup_idmap_key(t, "customer", customer, k, sizeof k);
    v = json_pack("{s:s}", "relation", relation);
    task_put_meta(t, k, v);
    json_decref(v);
}

void lookup_drop_fields(json_t *target, const char *list)
{
    lookup_copy_fields(target, NULL, list);
}

void lookup_copy_fields(json_t *target, json_t *from, const char *list)
{
    if (list == NULL)
        return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *f = strtok_r(buf, ", \t", &save); f; f = strtok_r(NULL, ", \t", &save)) {
        json_t *v = json_object_get(from, f);
        if (v != NULL)
            json_object_set(target, f, v);
        else if (from == NULL)
            json_object_del(target, f);
    }
}

/* A number as QuickBooks answers it and the decimal text a mapping gives
 * ("9.9" and "9.90") are the same amount: compare the digits, without
 * trailing zeros of the fraction. */
static bool same_number(json_t *a, json_t *b)
{
    char x[64], y[64];
    json_t *v[2] = {a, b};
    char *out[2] = {x, y};
    for (int i = 0; i < 2; i++) {
        if (json_is_string(v[i]))
            snprintf(out[i], 64, "%s", json_string_value(v[i]));
        else if (json_is_integer(v[i]))
            snprintf(out[i], 64, "%lld", (long long)json_integer_value(v[i]));
        else if (json_is_real(v[i]))
            snprintf(out[i], 64, "%.15g", json_real_value(v[i]));
        else
            return false;
        char *dot = strchr(out[i], '.');
        if (dot != NULL) {
            char *e = out[i] + strlen(out[i]);
            while (e > dot + 1 && e[-1] == '0')
                *--e = '\0';
            if (e == dot + 1)
                *dot = '\0';
        }
    }
    return strcmp(x, y) == 0;
}

static bool same_value(json_t *have, json_t *want)
{
    if (have == NULL)
        return false;
    if (json_equal(have, want))
        return true;
    bool numeric = json_is_number(have) || json_is_number(want);
    return numeric && same_number(have, want);
}

json_t *lookup_diff_fields(json_t *target, json_t *existing)
{
    json_t *d = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(target, k, v)
    {
        json_t *have = json_object_get(existing, k);
        if (json_is_object(v) && json_is_object(have)) {
            /* Compare only the members we set (QuickBooks adds name, Id, Lat...). */
            bool eq = true;
            const char *sk;
            json_t *sv;
            json_object_foreach(v, sk, sv)
            {
                if (!same_value(json_object_get(have, sk), sv))
                    eq = false;
            }
            if (eq)
                continue;
        } else if (same_value(have, v)) {
            continue;
        }
        json_object_set(d, k, v);
    }
    return d;
}

/* ---- the customer of a relation --------------------------------------------- */

static void mapped_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind == QBO_FAULT && strcmp(res->code, "610") == 0) {
        task_note(r->t, "mapped Customer %s no longer exists: looking again", r->customer_id);
        r->customer_id[0] = '\0';
        run_next(r);
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "read Customer", res);
        return;
    }
    r->customer = json_incref(json_object_get(res->body, "Customer"));
    run_next(r);
}

void lookup_customer_mapped(struct run *r)
{
    if (r->customer_id[0] || !r->relation_number[0]) {
        run_next(r);
        return;
    }
    char k[160];
    lookup_idmap_key(r->t, "relation", r->relation_number, k, sizeof k);
    json_t *pair = task_get_meta(r->t, k);
    gw_strlcpy(r->customer_id, json_string_value(json_object_get(pair, "customer")) ?: "",
               sizeof r->customer_id);
    json_decref(pair);
    if (r->customer_id[0] && r->want_customer)
        task_qbo_read(r->t, "Customer", r->customer_id, mapped_read, r);
    else
        run_next(r);
}

static void relation_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "find relation", res);
        return;
    }
    json_t *rel = json_object_get(res->body, "relation");
    if (strstr(res->code, "NOT-FOUND") != NULL || !json_is_object(rel)) {
        if (r->customer_id[0]) { /* only its details were wanted */
            run_next(r);
            return;
        }
        run_fail(r, OUTCOME_RETRY, NULL,
                 "relation %s is not in Mplus (yet): the document names it as its customer",
                 r->relation_number);
        return;
    }
    r->relation = json_incref(rel);
    run_next(r);
}

void lookup_relation(struct run *r)
{
    int64_t n;
    if ((r->customer_id[0] && !r->want_relation) || r->relation != NULL ||
        !gw_strtoi64(r->relation_number, &n)) {
        run_next(r);
        return;
    }
    json_t *q = json_pack("{s:I}", "relationNumber", (json_int_t)n);
    task_mplus_call(r->t, "findRelation", q, relation_read, r);
    json_decref(q);
}

static const char *relation_email(struct run *r)
{
    const char *e = json_string_value(json_object_get(r->relation, "email"));
    return e && e[0] ? e : NULL;
}

static void email_query(struct run *r, bool lower);

/*
 * QuickBooks may compare e-mail addresses with or without regard to case.
 * The query uses LIKE, which is = when QuickBooks minds case and ignores it
 * when QuickBooks does not; an address with capitals is asked for a second
 * time in lower case (the form shops and QuickBooks mostly keep). Only
 * answers equal to the relation's address, ignoring case, count.
 */
static void email_found(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find Customer by e-mail", res);
        return;
    }
    const char *email = relation_email(r);
    json_t *list = qbo_rows(res->body, "Customer");
    json_t *hits = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *have =
            json_string_value(json_object_get(json_object_get(c, "PrimaryEmailAddr"), "Address"));
        if (have != NULL && strcasecmp(have, email) == 0)
            json_array_append(hits, c);
    }
    if (json_array_size(hits) > 1) {
        char ids[256] = "";
        json_array_foreach(hits, i, c)
        {
            size_t n = strlen(ids);
            snprintf(ids + n, sizeof ids - n, "%s%s", n ? ", " : "",
                     json_string_value(json_object_get(c, "Id")) ?: "?");
        }
        size_t n = json_array_size(hits);
        json_decref(hits);
        run_fail(r, OUTCOME_DEAD, "ambiguous e-mail",
                 "the relation's e-mail matches %zu QuickBooks customers (%s): merge them, or "
                 "give the relation another e-mail, then replay",
                 n, ids);
        return;
    }
    if (json_array_size(hits) == 1) {
        r->customer = json_incref(json_array_get(hits, 0));
        gw_strlcpy(r->customer_id, json_string_value(json_object_get(r->customer, "Id")) ?: "",
                   sizeof r->customer_id);
        task_note(r->t, "adopted Customer %s (same e-mail)", r->customer_id);
        json_decref(hits);
        run_next(r);
        return;
    }
    json_decref(hits);
    bool capitals = false;
    for (const char *p = email; *p; p++)
        capitals |= *p >= 'A' && *p <= 'Z';
    if (!r->email_any_case && capitals) {
        email_query(r, true);
        return;
    }
    run_next(r);
}

static void email_query(struct run *r, bool lower)
{
    const char *email = relation_email(r);
    char buf[256];
    size_t n = 0;
    for (; email[n] && n + 1 < sizeof buf; n++)
        buf[n] = lower ? (char)tolower((unsigned char)email[n]) : email[n];
    buf[n] = '\0';
    char *q = qbo_quote(buf);
    char query[700];
    snprintf(query, sizeof query, "select * from Customer where PrimaryEmailAddr LIKE %s",
             q ? q : "''");
    free(q);
    r->email_any_case = lower;
    task_qbo_query(r->t, query, email_found, r);
}

void lookup_customer_email(struct run *r)
{
    const char *email = relation_email(r);
    if (r->customer_id[0] || email == NULL || strlen(email) > 200) {
        run_next(r);
        return;
    }
    email_query(r, false);
}

static void customer_create(struct run *r);

static void customer_created(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct task *t = r->t;
    if (res->kind == QBO_FAULT && strcmp(res->code, "6240") == 0 && r->renames == 0) {
        /* DisplayName is unique across customers, vendors and employees:
         * make it unique with the relation number, and say so. */
        const char *name =
            json_string_value(json_object_get(r->customer_target, "DisplayName")) ?: "";
        char renamed[600];
        snprintf(renamed, sizeof renamed, "%.480s (%s)", name, r->relation_number);
        task_note(t, "DisplayName \"%s\" is taken in QuickBooks: created as \"%s\"", name, renamed);
        json_object_set_new(r->customer_target, "DisplayName", json_string(renamed));
        r->renames++;
        customer_create(r);
        return;
    }
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create Customer", res);
        return;
    }
    json_t *c = json_object_get(res->body, "Customer");
    const char *id = json_string_value(json_object_get(c, "Id"));
    if (id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "QuickBooks answered without a Customer Id");
        return;
    }
    task_note(t, "created Customer %s", id);
    gw_strlcpy(r->customer_id, id, sizeof r->customer_id);
    json_decref(r->customer);
    r->customer = json_incref(c);
    r->customer_created = true;
    lookup_record_pair(t, r->relation_number, id, c, r->relation);
    lookup_release(r, id);
    run_next(r);
}

static void customer_create(struct run *r)
{
    char rid[64];
    task_requestid(r->t, r->renames ? "customer-renamed" : "customer", rid, sizeof rid);
    task_qbo_create(r->t, "Customer", r->customer_target, rid, customer_created, r);
}

static void made_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "read Customer", res);
        return;
    }
    r->customer = json_incref(json_object_get(res->body, "Customer"));
    run_next(r);
}

void lookup_customer_create(struct run *r)
{
    const char *made = lookup_made_id(r->t, "relation", r->relation_number);
    if (!r->customer_id[0] && made != NULL) {
        /* Another event has just made it. */
        gw_strlcpy(r->customer_id, made, sizeof r->customer_id);
        if (r->want_customer) {
            task_qbo_read(r->t, "Customer", made, made_read, r);
            return;
        }
    }
    if (r->customer_id[0]) {
        run_next(r);
        return;
    }
    if (!lookup_claim(r, "relation", r->relation_number, lookup_customer_create))
        return; /* another event is creating this relation's customer */
    char err[512];
    json_t *target = NULL;
    if (map_run(r->t->clients->mapper, r->t->conn, MAP_CUSTOMERS_TO_QBO, r->relation, NULL, &target,
                err, sizeof err) != 0) {
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    json_decref(r->customer_target);
    r->customer_target = target;
    customer_create(r);
}

/* ---- the company's Items by SKU ------------------------------------------------ */

/*
 * A first sync of a catalogue would ask QuickBooks for each article's SKU
 * before making its Item: two requests an Item. Instead the company's Items
 * are read once, in pages of INDEX_PAGE, and kept by SKU in memory with what
 * the gateway makes after; the index is read again when an article is not in
 * it and it is older than INDEX_MAX_AGE_MS. A rerun (a later attempt, a
 * replay) asks QuickBooks itself: a person may have made the Item since.
 */
#define INDEX_PAGE       1000
#define INDEX_MAX_AGE_MS (15 * 60 * 1000)

struct index_load {
    struct run *r;
    json_t *skus;
    long start;
};

static json_t *index_of(const struct task *t)
{
    return json_object_get(t->clients->made->indexes, t->conn->name);
}

/* A company table read at most INDEX_MAX_AGE_MS ago. */
static bool table_fresh(json_t *table)
{
    return table != NULL &&
           gw_now_ms() - json_integer_value(json_object_get(table, "at")) <= INDEX_MAX_AGE_MS;
}

json_t *lookup_index_find(const struct task *t, const char *sku)
{
    return json_object_get(json_object_get(index_of(t), "skus"), sku);
}

void lookup_index_item(const struct task *t, const char *sku, const char *id, const char *name)
{
    json_t *skus = json_object_get(index_of(t), "skus");
    if (skus != NULL && id != NULL)
        json_object_set_new(skus, sku, json_pack("{s:s, s:s}", "id", id, "name", name ?: ""));
}

static void index_ask(struct index_load *l);

static void index_page(const struct qbo_result *res, void *arg)
{
    struct index_load *l = arg;
    struct run *r = l->r;
    if (res->kind != QBO_OK) {
        json_decref(l->skus);
        free(l);
        run_fail_qbo(r, "read the company's Items", res);
        return;
    }
    json_t *list = qbo_rows(res->body, "Item");
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *sku = json_string_value(json_object_get(item, "Sku"));
        const char *id = json_string_value(json_object_get(item, "Id"));
        const char *name = json_string_value(json_object_get(item, "Name"));
        if (sku != NULL && sku[0] != '\0' && id != NULL && json_object_get(l->skus, sku) == NULL)
            json_object_set_new(l->skus, sku,
                                json_pack("{s:s, s:s}", "id", id, "name", name ?: ""));
    }
    if (json_array_size(list) >= INDEX_PAGE) {
        l->start += INDEX_PAGE;
        index_ask(l);
        return;
    }
    task_note(r->t, "read the company's Items: %zu with a SKU", json_object_size(l->skus));
    json_object_set_new(r->t->clients->made->indexes, r->t->conn->name,
                        json_pack("{s:I, s:o}", "at", (json_int_t)gw_now_ms(), "skus", l->skus));
    free(l);
    lookup_release(r, "read");
    r->index_then(r);
}

static void index_ask(struct index_load *l)
{
    char q[160];
    snprintf(q, sizeof q,
             "select * from Item where Active in (true, false) STARTPOSITION %ld MAXRESULTS %d",
             l->start, INDEX_PAGE);
    task_qbo_query(l->r->t, q, index_page, l);
}

static void index_waited(struct run *r)
{
    lookup_item_index(r, r->index_then);
}

/*
 * Whether r is to read a company table now (it holds the claim): false when
 * the table is fresh (then(r) has run) or another run is reading it (r goes
 * on at waited once that one is done).
 */
static bool table_claim(struct run *r, json_t *(*table_of)(const struct task *), const char *what,
                        step_fn then, step_fn waited)
{
    r->index_then = then;
    if (table_fresh(table_of(r->t))) {
        then(r);
        return false;
    }
    if (!lookup_claim(r, what, "all", waited))
        return false;
    if (table_fresh(table_of(r->t))) {
        lookup_release(r, "read");
        then(r);
        return false;
    }
    return true;
}

void lookup_item_index(struct run *r, step_fn then)
{
    if (!table_claim(r, index_of, "item-index", then, index_waited))
        return;
    struct index_load *l = calloc(1, sizeof *l);
    if (l == NULL || (l->skus = json_object()) == NULL) {
        free(l);
        run_fail(r, OUTCOME_RETRY, NULL, "out of memory");
        return;
    }
    l->r = r;
    l->start = 1;
    index_ask(l);
}

/* ---- every article must exist as an Item -------------------------------------- */

static void items_next_missing(struct run *r);

/* The SKUs of r->skus not yet in r->items. */
static json_t *missing_skus(struct run *r)
{
    json_t *left = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(r->skus, i, s)
    {
        if (json_object_get(r->items, json_string_value(s)) == NULL)
            json_array_append(left, s);
    }
    return left;
}

static void item_known(struct run *r, const char *sku, const char *id, const char *name,
                       bool remember)
{
    json_object_set_new(r->items, sku, json_pack("{s:s, s:s}", "id", id, "name", name ?: ""));
    if (remember) {
        char k[160];
        lookup_idmap_key(r->t, "article", sku, k, sizeof k);
        json_t *v = json_pack("{s:s, s:s}", "item", id, "name", name ?: "");
        task_put_meta(r->t, k, v);
        json_decref(v);
        lookup_index_item(r->t, sku, id, name);
    }
}

static void item_created(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create Item", res);
        return;
    }
    json_t *item = json_object_get(res->body, "Item");
    const char *sku = json_string_value(json_object_get(item, "Sku"));
    const char *id = json_string_value(json_object_get(item, "Id"));
    if (sku == NULL || id == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "QuickBooks answered an Item create without Sku or Id");
        return;
    }
    task_note(r->t, "created Item %s for article %s", id, sku);
    item_known(r, sku, id, json_string_value(json_object_get(item, "Name")), true);
    lookup_release(r, id);
    items_next_missing(r);
}

/* An article the products mapping leaves out has no Item to come. */
static void item_left_out(struct run *r, const char *reason)
{
    run_wait(r, 0, "unknown item",
             "article %s has no QuickBooks Item and the products flow leaves it out (%s); the "
             "event tries again",
             r->item_sku, reason);
}

/* A NonInventory Item named after the sale line (sales_create_items). */
static void item_from_line(struct run *r, const char *sku)
{
    const struct gw_connection *c = r->t->conn;
    json_t *texts = json_object_get(r->item_texts, sku);
    const char *text = json_string_value(texts) ?: "";
    char name[128];
    /* Names are unique in QuickBooks and at most 100 characters, no colon. */
    snprintf(name, sizeof name, "%.70s (%s)", text[0] ? text : "Article", sku);
    for (char *p = name; *p; p++)
        if (*p == ':' || *p == '\t' || *p == '\n' || *p == '"')
            *p = ' ';
    const char *account = c->sales_item_income_account;
    if (account == NULL || account[0] == '\0') {
        json_t *settings = map_connection_settings(r->t->clients->mapper, c);
        account = json_string_value(
            json_object_get(json_object_get(settings, "income_account_by_country"), "*"));
    }
    if (account == NULL || account[0] == '\0') {
        run_fail(r, OUTCOME_DEAD, "no income account",
                 "article %s has no QuickBooks Item and the gateway may create it, but neither "
                 "sales_item_income_account nor income_account_by_country (*) names an income "
                 "account",
                 sku);
        return;
    }
    json_t *item =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}", "Name", name, "Sku", sku, "Type", "NonInventory",
                  "Description", text, "IncomeAccountRef", "value", account);
    char step[64], rid[96];
    snprintf(step, sizeof step, "item-%s", sku);
    task_requestid(r->t, step, rid, sizeof rid);
    task_qbo_create(r->t, "Item", item, rid, item_created, r);
    json_decref(item);
}

/* Make the first missing Item: from its Mplus article when the products flow
 * is on (the products flow's own step), else from the sale line when
 * sales_create_items allows it, else wait for it. */
static void items_next_missing(struct run *r)
{
    json_t *left = missing_skus(r);
    if (json_array_size(left) == 0) {
        json_decref(left);
        run_next(r);
        return;
    }
    const struct gw_connection *c = r->t->conn;
    bool from_line = c->sales_create_items && !r->items_from_article_only;
    if ((c->flows & GW_FLOW_PRODUCTS) == 0 && !from_line) {
        char list[256] = "";
        size_t i;
        json_t *s;
        json_array_foreach(left, i, s)
        {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", json_string_value(s));
        }
        json_decref(left);
        run_wait(r, 0, "unknown item",
                 "no QuickBooks Item has SKU %s: sync the article (products flow) or create the "
                 "Item with that SKU; the event tries again",
                 list);
        return;
    }
    char sku[32];
    gw_strlcpy(sku, json_string_value(json_array_get(left, 0)), sizeof sku);
    json_decref(left);
    const char *made = lookup_made_id(r->t, "article", sku);
    if (made != NULL) {
        item_known(r, sku, made, "", false);
        items_next_missing(r);
        return;
    }
    if ((c->flows & GW_FLOW_PRODUCTS) != 0) {
        r->item_then = items_next_missing;
        r->item_skip = item_left_out;
        products_item_of_article(r, sku);
        return;
    }
    if (!lookup_claim(r, "article", sku, items_next_missing))
        return; /* another event is creating this Item */
    item_from_line(r, sku);
}

static void items_found(const struct qbo_result *res, void *arg);

/* Ask QuickBooks for the missing SKUs not asked for yet, ITEMS_PER_QUERY at a
 * time; then create what none of the answers had. */
#define ITEMS_PER_QUERY 50
static void items_query(struct run *r)
{
    char query[4096];
    size_t n = (size_t)snprintf(query, sizeof query, "select * from Item where Sku in (");
    int asked = 0;
    for (; r->items_asked < json_array_size(r->skus) && asked < ITEMS_PER_QUERY; r->items_asked++) {
        const char *sku = json_string_value(json_array_get(r->skus, r->items_asked));
        if (json_object_get(r->items, sku) != NULL)
            continue;
        char *q = qbo_quote(sku);
        if (q != NULL && n < sizeof query)
            n += (size_t)snprintf(query + n, sizeof query - n, "%s%s", asked ? ", " : "", q);
        free(q);
        asked++;
    }
    if (asked == 0) {
        items_next_missing(r);
        return;
    }
    if (n < sizeof query)
        snprintf(query + n, sizeof query - n, ")");
    task_qbo_query(r->t, query, items_found, r);
}

static void items_found(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "find Items by SKU", res);
        return;
    }
    json_t *list = qbo_rows(res->body, "Item");
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *sku = json_string_value(json_object_get(item, "Sku"));
        const char *id = json_string_value(json_object_get(item, "Id"));
        if (sku && id && json_object_get(r->items, sku) == NULL)
            item_known(r, sku, id, json_string_value(json_object_get(item, "Name")), true);
    }
    items_query(r);
}

static void items_from_index(struct run *r)
{
    size_t i;
    json_t *s;
    json_array_foreach(r->skus, i, s)
    {
        const char *sku = json_string_value(s);
        json_t *hit = json_object_get(r->items, sku) ? NULL : lookup_index_find(r->t, sku);
        if (hit != NULL)
            item_known(r, sku, json_string_value(json_object_get(hit, "id")) ?: "",
                       json_string_value(json_object_get(hit, "name")), true);
    }
    items_next_missing(r);
}

void lookup_items(struct run *r)
{
    /* The id map first: a known article costs no request. */
    size_t i;
    json_t *s;
    json_array_foreach(r->skus, i, s)
    {
        const char *sku = json_string_value(s);
        if (json_object_get(r->items, sku) != NULL)
            continue;
        char k[160];
        lookup_idmap_key(r->t, "article", sku, k, sizeof k);
        json_t *m = task_get_meta(r->t, k);
        const char *id = json_string_value(json_object_get(m, "item"));
        if (id == NULL)
            id = lookup_made_id(r->t, "article", sku);
        if (id != NULL)
            item_known(r, sku, id, json_string_value(json_object_get(m, "name")), false);
        json_decref(m);
    }
    json_t *left = missing_skus(r);
    size_t missing = json_array_size(left);
    json_decref(left);
    if (missing == 0) {
        run_next(r);
        return;
    }
    if (task_is_rerun(r->t)) {
        r->items_asked = 0;
        items_query(r);
        return;
    }
    lookup_item_index(r, items_from_index);
}

/* ---- the company's tax codes --------------------------------------------------- */

/*
 * A VAT company's documents carry one tax line per rate, and a tax line names
 * a TaxRate, which a TaxCode lists; the rounding line needs a TaxCode without
 * VAT. The company's TaxRates and TaxCodes are read once (two queries) and
 * kept like the Item index: {"at", "codes": {TaxCode Id: [{"rate": TaxRate
 * Id, "percent": "21"}]}, "zero": a TaxCode Id whose sales rates are all 0}.
 */
struct tax_load {
    struct run *r;
    json_t *rates; /* TaxRate Id -> RateValue as text */
};

static json_t *taxes_of(const struct task *t)
{
    return json_object_get(t->clients->made->taxes, t->conn->name);
}

json_t *lookup_tax_rates(const struct task *t, const char *tax_code)
{
    return json_object_get(json_object_get(taxes_of(t), "codes"), tax_code);
}

void lookup_tax_forget(const struct task *t)
{
    json_object_del(t->clients->made->taxes, t->conn->name);
}

const char *lookup_tax_zero(const struct task *t)
{
    return json_string_value(json_object_get(taxes_of(t), "zero"));
}

/* A RateValue (a JSON number, exact) as text, "0" when absent. */
static json_t *rate_text(json_t *v)
{
    if (json_is_string(v))
        return json_incref(v);
    if (json_is_integer(v))
        return json_sprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.6g", json_real_value(v)); /* a percentage, not money */
        return json_string(buf);
    }
    return json_string("0");
}

static void tax_codes_read(const struct qbo_result *res, void *arg)
{
    struct tax_load *l = arg;
    struct run *r = l->r;
    if (res->kind != QBO_OK) {
        json_decref(l->rates);
        free(l);
        run_fail_qbo(r, "read the company's tax codes", res);
        return;
    }
    json_t *codes = json_object();
    const char *zero = NULL;
    size_t i, j;
    json_t *code, *d;
    json_array_foreach(qbo_rows(res->body, "TaxCode"), i, code)
    {
        const char *id = json_string_value(json_object_get(code, "Id"));
        if (id == NULL)
            continue;
        json_t *rates = json_array();
        bool all_zero = true;
        json_array_foreach(
            json_object_get(json_object_get(code, "SalesTaxRateList"), "TaxRateDetail"), j, d)
        {
            const char *rid =
                json_string_value(json_object_get(json_object_get(d, "TaxRateRef"), "value"));
            const char *pct = json_string_value(json_object_get(l->rates, rid ?: ""));
            if (rid == NULL)
                continue;
            json_array_append_new(rates,
                                  json_pack("{s:s, s:s}", "rate", rid, "percent", pct ?: "0"));
            if (pct != NULL && strspn(pct, "0.") != strlen(pct))
                all_zero = false;
        }
        if (zero == NULL && all_zero && json_array_size(rates) > 0 &&
            !json_is_false(json_object_get(code, "Active")))
            zero = id;
        json_object_set_new(codes, id, rates);
    }
    task_note(r->t, "read the company's tax codes: %zu, %zu rates", json_object_size(codes),
              json_object_size(l->rates));
    json_t *table = json_pack("{s:I, s:o}", "at", (json_int_t)gw_now_ms(), "codes", codes);
    if (zero != NULL)
        json_object_set_new(table, "zero", json_string(zero));
    json_object_set_new(r->t->clients->made->taxes, r->t->conn->name, table);
    json_decref(l->rates);
    free(l);
    lookup_release(r, "read");
    r->index_then(r);
}

static void tax_rates_read(const struct qbo_result *res, void *arg)
{
    struct tax_load *l = arg;
    if (res->kind != QBO_OK) {
        struct run *r = l->r;
        json_decref(l->rates);
        free(l);
        run_fail_qbo(r, "read the company's tax rates", res);
        return;
    }
    size_t i;
    json_t *rate;
    json_array_foreach(qbo_rows(res->body, "TaxRate"), i, rate)
    {
        const char *id = json_string_value(json_object_get(rate, "Id"));
        if (id != NULL)
            json_object_set_new(l->rates, id, rate_text(json_object_get(rate, "RateValue")));
    }
    task_qbo_query(l->r->t, "select * from TaxCode MAXRESULTS 1000", tax_codes_read, l);
}

static void taxes_waited(struct run *r)
{
    lookup_tax_table(r, r->index_then);
}

void lookup_tax_table(struct run *r, step_fn then)
{
    if (!table_claim(r, taxes_of, "tax-table", then, taxes_waited))
        return;
    struct tax_load *l = calloc(1, sizeof *l);
    if (l == NULL || (l->rates = json_object()) == NULL) {
        free(l);
        run_fail(r, OUTCOME_RETRY, NULL, "out of memory");
        return;
    }
    l->r = r;
    task_qbo_query(r->t, "select * from TaxRate MAXRESULTS 1000", tax_rates_read, l);
}

/* ---- the connection's tables -------------------------------------------------- */

const char *lookup_table(struct run *r, const char *name, const char *key)
{
    json_t *settings = map_connection_settings(r->t->clients->mapper, r->t->conn);
    return json_string_value(json_object_get(json_object_get(settings, name), key));
}

const char *lookup_tax_code(struct run *r, const char *country, json_int_t code, char *why,
                            size_t whylen)
{
    char key[64];
    snprintf(key, sizeof key, "%s/%lld", country, (long long)code);
    const char *v = lookup_table(r, "sales_tax_codes", key);
    if (v == NULL) {
        snprintf(key, sizeof key, "*/%lld", (long long)code);
        v = lookup_table(r, "sales_tax_codes", key);
    }
    if (v == NULL) {
        snprintf(key, sizeof key, "%lld", (long long)code);
        v = lookup_table(r, "sales_tax_codes", key);
    }
    if (v == NULL)
        snprintf(
            why, whylen,
            "no QuickBooks tax code for Mplus VAT code %lld in country %s: add %s/%lld:<TaxCode "
            "Id> to sales_tax_codes, then replay",
            (long long)code, country[0] ? country : "(none)", country[0] ? country : "*",
            (long long)code);
    return v;
}
