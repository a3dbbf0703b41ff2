/*
 * poller.c - sync-marker polling of MplusKASSA, one state machine per
 * (connection, entity): idle -> asking -> storing -> (next page | idle).
 */
#include "poller.h"
#include "dispatch.h"
#include "ingest.h"
#include "jsonout.h"
#include "log.h"
#include "mplus.h"
#include "sig.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NUDGE_DELAY_MS      300 /* a till sale: poll soon, once for a burst */
#define FAULT_BACKOFF_MAX_S 900
/* A backfill pages at the dispatcher's pace: the next page waits while the
 * dispatcher has more than a quarter of its room for parsed payloads
 * (dispatch_offer, DISPATCH_OFFER_BYTES) still untaken, so it runs each event on the page as
 * parsed instead of parsing its stored text again; never longer than this. */
#define READ_AHEAD_WAIT_MS 1000
#define READ_AHEAD_TICK_MS 20

/* What is polled, per entity. */
struct kind {
    const char *name;    /* as in status and marker keys */
    unsigned flow;       /* polled when this flow is enabled */
    const char *op;      /* SOAP operation */
    const char *list;    /* list in the answer */
    const char *entity;  /* event entity */
    const char *id;      /* the object's id field */
    const char *marker;  /* the object's marker field (and the request's) */
    const char *current; /* field of getCurrentSyncMarkers */
    bool paged;          /* takes syncMarkerLimit */
    bool document;       /* sales documents: pages of mplus_document_page_size */
};

static const struct kind kinds[] = {
    {"receipts", GW_FLOW_SALES, "getReceipts", "receiptList", "receipt", "receiptId", "syncMarker",
     "receiptSyncMarker", true, true},
    {"invoices", GW_FLOW_SALES, "getInvoices", "invoiceList", "invoice", "invoiceId", "syncMarker",
     "invoiceSyncMarker", true, true},
    {"orders", GW_FLOW_SALES, "getOrders", "orderList", "order", "orderId", "syncMarker",
     "orderSyncMarker", true, true},
    {"relations", GW_FLOW_CUSTOMERS, "getRelations", "relationList", "relation", "relationNumber",
     "syncMarker", "relationSyncMarker", true, false},
    /* Groups before articles: an Item is made in its group's Category. */
    {"article_groups", GW_FLOW_PRODUCTS, "getArticleGroupChanges", "changedArticleGroupList",
     "article_group", "groupNumber", "syncMarker", "articleGroupSyncMarker", true, false},
    {"articles", GW_FLOW_PRODUCTS, "getProducts", "productList", "article", "articleNumber",
     "syncMarker", "articleSyncMarker", true, false},
    {"stock", GW_FLOW_STOCK, "getStock", "articleStocks", "stock", "articleNumber", "stockId",
     "stockId", false, false},
    /* The daily summary's day watcher (summary_receipts): no marker of Mplus;
     * its own marker is the first day not yet complete (days as yyyymmdd). */
    {"journals", GW_FLOW_SALES, "getJournals", "journalList", "summary", NULL, NULL, NULL, false,
     false},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* Changes asked for per request. Documents carry their lines and payments
 * (some twenty times an article), so a page of them is kept smaller. */
static long kind_page_size(const struct kind *k, const struct gw_connection *c)
{
    return k->document ? c->mplus_document_page_size : c->mplus_page_size;
}

struct conn_state;

struct target {
    struct poller *p;
    const struct gw_connection *c;
    struct conn_state *cs;
    const struct kind *k;
    struct event *timer;
    bool busy;
    bool nudge_due;   /* a nudge armed the timer: a poll comes within NUDGE_DELAY_MS */
    bool renudge;     /* nudged while a poll ran: poll again soon after it */
    bool paging;      /* the next page waits for the dispatcher (READ_AHEAD_WAIT_MS) */
    int64_t paged_ms; /* when the last full page was stored */
    int64_t marker;   /* highest marker stored; -1 = not yet known */
    json_t *days;     /* journals: the answer being looked at, and which days to ask closed */
    size_t day_at;    /* journals: the day of days.ask being asked */
    int failures;
    char last_poll[GW_TS_LEN];
    char last_error[1100];
};

/* One per connection polled: its API version and whether its credentials work. */
struct conn_state {
    const struct gw_connection *c;
    struct poller *p;
    char api_version[64];
    char last_error[1100];
    bool asking;
    bool login_refused; /* the last answer was Mplus refusing the ident/secret */
};

struct poller {
    const struct gw_config *cfg;
    struct conn_state *conns;
    bool draining;
    struct committer *cm;
    struct store *st;
    struct mplus *mplus;
    struct dispatcher *d;
    struct target *targets;
    size_t n;
};

void poller_marker_key(const char *conn, const char *kind, char *out, size_t outlen)
{
    snprintf(out, outlen, "mplus.marker.%s.%s", conn, kind);
}

static const struct kind *kind_named(const char *name)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

/* The list of a canonical answer: an array, or an object wrapping one. */
static json_t *list_of(json_t *response, const char *key)
{
    json_t *v = json_object_get(response, key);
    if (json_is_array(v))
        return v;
    if (json_is_object(v)) {
        const char *k;
        json_t *inner;
        json_object_foreach(v, k, inner)
        {
            if (json_is_array(inner))
                return inner;
        }
    }
    return NULL;
}

/* An id or marker as text and as a number. */
static bool field_text(json_t *o, const char *name, char *buf, size_t len, int64_t *num)
{
    json_t *v = json_object_get(o, name);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        if (num)
            *num = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < len) {
        gw_strlcpy(buf, json_string_value(v), len);
        return num == NULL || gw_strtoi64(buf, num);
    }
    return false;
}

static int add_object(const struct gw_connection *c, const struct kind *k, json_t *obj,
                      json_t *context, int64_t now_ms, struct gw_batch *out, int64_t *max_marker)
{
    char id[96], mark[32];
    int64_t m;
    if (!field_text(obj, k->id, id, sizeof id, NULL) ||
        !field_text(obj, k->marker, mark, sizeof mark, &m))
        return 0; /* nothing to key it by: not a change */
    if (strcmp(k->name, "stock") == 0) {
        /* One article's stock per branch. */
        char branch[24];
        if (field_text(obj, "branchNumber", branch, sizeof branch, NULL)) {
            char both[128];
            snprintf(both, sizeof both, "%s/%s", branch, id);
            gw_strlcpy(id, both, sizeof id);
        }
    }
    if (m > *max_marker)
        *max_marker = m;
    char *key = NULL;
    if (asprintf(&key, "mplus-poll|%s|%s|%s|%s", c->name, k->entity, id, mark) < 0)
        return -1;
    const char *changed = json_string_value(json_object_get(obj, "changeTimestamp"));
    json_t *payload = json_incref(obj);
    if (context != NULL) {
        payload = json_pack("{s:o, s:O}", k->entity, payload, "product", context);
    }
    json_t *rec = event_new_record(c->name, GW_SRC_MPLUS_POLL, k->entity, id, "Change", GW_PENDING,
                                   now_ms, changed, NULL, NULL, payload);
    if (rec == NULL) {
        free(key);
        return -1;
    }
    json_object_set_new(rec, "marker", json_integer((json_int_t)m));
    return batch_add(out, key, rec, GW_PENDING);
}

/*
 * Article groups, parents before their subgroups (Mplus lists changes in
 * marker order): a subgroup's Category is made under its parent's, so the
 * parent's event comes first. A new array (the objects shared).
 */
static json_t *parents_first(json_t *list)
{
    size_t n = json_array_size(list), left = n;
    json_t *out = json_array();
    char *done = calloc(n ? n : 1, 1);
    if (out == NULL || done == NULL) {
        free(done);
        json_decref(out);
        return json_incref(list);
    }
    while (left > 0) {
        size_t before = left;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            json_t *parent = json_object_get(json_array_get(list, i), "parentGroupNumber");
            bool waits = false;
            for (size_t j = 0; j < n && !waits && json_is_integer(parent); j++)
                waits = !done[j] && j != i &&
                        json_equal(json_object_get(json_array_get(list, j), "groupNumber"), parent);
            if (!waits) {
                json_array_append(out, json_array_get(list, i));
                done[i] = 1;
                left--;
            }
        }
        if (left == before) { /* a cycle in the tree: the rest as listed */
            for (size_t i = 0; i < n; i++)
                if (!done[i])
                    json_array_append(out, json_array_get(list, i));
            break;
        }
    }
    free(done);
    return out;
}

int poller_parse_page(const struct gw_connection *c, const char *kind, json_t *response,
                      int64_t now_ms, struct gw_batch *out, int64_t *max_marker, size_t *objects)
{
    const struct kind *k = kind_named(kind);
    *objects = 0;
    if (k == NULL)
        return -1;
    json_t *list = list_of(response, k->list);
    if (strcmp(k->name, "article_groups") == 0) {
        json_t *ordered = parents_first(list);
        int rc = 0;
        size_t i;
        json_t *o;
        json_array_foreach(ordered, i, o)
        {
            (*objects)++;
            if ((rc = add_object(c, k, o, NULL, now_ms, out, max_marker)) < 0)
                break;
        }
        json_decref(ordered);
        return rc < 0 ? -1 : 0;
    }
    size_t i, j;
    json_t *o, *a;
    json_array_foreach(list, i, o)
    {
        if (strcmp(k->name, "articles") != 0) {
            (*objects)++;
            if (add_object(c, k, o, NULL, now_ms, out, max_marker) < 0)
                return -1;
            continue;
        }
        /* Products group articles; each article (size, colour) is one change,
         * with its product's number, description and groups as context.
         * syncMarkerLimit counts articles, so the page's size does too (a
         * product without articles listed counts as one). */
        json_t *articles = list_of(o, "articleList");
        *objects += json_array_size(articles) > 0 ? json_array_size(articles) : 1;
        json_t *ctx = json_copy(o); /* its members shared, as the articles are */
        json_object_del(ctx, "articleList");
        json_array_foreach(articles, j, a)
        {
            if (add_object(c, k, a, ctx, now_ms, out, max_marker) < 0) {
                json_decref(ctx);
                return -1;
            }
        }
        /* A product's own marker moves too (its articles may be unchanged). */
        int64_t pm;
        char buf[32];
        if (field_text(o, "syncMarker", buf, sizeof buf, &pm) && pm > *max_marker)
            *max_marker = pm;
        json_decref(ctx);
    }
    return 0;
}

/* ---- the poll cycle ---------------------------------------------------------- */

static void arm(struct target *t, int64_t ms)
{
    if (t->p->draining)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

static void fail(struct target *t, const char *what, const char *error)
{
    t->busy = false;
    t->renudge = false; /* the retry after the backoff polls it */
    t->failures++;
    /* The client's messages already name the operation. */
    if (strncmp(error, what, strlen(what)) == 0)
        snprintf(t->last_error, sizeof t->last_error, "%s", error);
    else
        snprintf(t->last_error, sizeof t->last_error, "%s: %s", what, error);
    int64_t backoff = t->c->mplus_poll_interval_s << (t->failures < 5 ? t->failures : 5);
    if (backoff > FAULT_BACKOFF_MAX_S)
        backoff = FAULT_BACKOFF_MAX_S;
    gw_log(GW_LOG_WARN, t->c->name, 0, "polling %s failed (%s); next try in %lld s", t->k->name,
           t->last_error, (long long)backoff);
    arm(t, backoff * 1000);
}

struct page_job {
    struct commit_job job;
    struct target *t;
    struct ingest_batch in;
    int64_t marker;
    bool more;
};

static int page_apply(struct store_txn *tx, struct commit_job *job)
{
    struct page_job *pj = (struct page_job *)job;
    int rc = store_txn_ingest(tx, pj->in.puts, pj->in.events.n);
    if (rc == 0) {
        char key[160];
        poller_marker_key(pj->t->c->name, pj->t->k->name, key, sizeof key);
        json_t *v = json_integer((json_int_t)pj->marker);
        rc = store_txn_meta_put(tx, key, v);
        json_decref(v);
    }
    return rc;
}

static void poll_once(struct target *t);
static void ask_version(struct conn_state *cs);

/* Mplus answered a poll: if the version is still unknown (Mplus was down at
 * the start), ask again, so status shows it and drops the stale error. */
static void answered(struct target *t)
{
    if (t->cs != NULL && t->cs->api_version[0] == '\0' && !t->cs->asking && !t->p->draining)
        ask_version(t->cs);
}

/* The next page of a backfill, now or once the dispatcher has taken most
 * of the payloads offered to it. */
static void next_page(struct target *t)
{
    t->paging = dispatch_offered_bytes(t->p->d) > DISPATCH_OFFER_BYTES / 4 &&
                gw_now_ms() - t->paged_ms < READ_AHEAD_WAIT_MS;
    if (t->paging)
        arm(t, READ_AHEAD_TICK_MS);
    else
        poll_once(t);
}

static void page_done(struct commit_job *job)
{
    struct page_job *pj = (struct page_job *)job;
    struct target *t = pj->t;
    if (job->status != 0) {
        fail(t, "store", "could not store the page");
    } else {
        t->marker = pj->marker;
        t->failures = 0;
        t->last_error[0] = '\0';
        size_t added = ingest_new_pending(&pj->in);
        for (size_t i = 0; i < pj->in.events.n && added > 0; i++)
            if (!pj->in.puts[i].duplicate && pj->in.puts[i].state == GW_PENDING)
                dispatch_offer(t->p->d, pj->in.puts[i].id, pj->in.events.ev[i].payload,
                               &pj->in.payloads[i], pj->in.puts[i].payload_len,
                               pj->in.events.ev[i].record, &pj->in.texts[i],
                               pj->in.puts[i].rec_len);
        if (added > 0) {
            gw_log(GW_LOG_INFO, t->c->name, 0, "polled %zu %s changes (marker %lld)", added,
                   t->k->name, (long long)t->marker);
            dispatch_kick(t->p->d);
        }
        if (pj->more && !t->p->draining) {
            t->paged_ms = gw_now_ms();
            next_page(t); /* keep paging: the page was full */
        } else if (t->renudge) {
            /* A till sale completed while this poll ran: it may have missed it. */
            t->busy = false;
            t->renudge = false;
            t->nudge_due = true;
            arm(t, NUDGE_DELAY_MS);
        } else {
            t->busy = false;
            arm(t, t->c->mplus_poll_interval_s * 1000);
        }
    }
    ingest_batch_free(&pj->in);
    free(pj);
}

/* An answer to a poll: when it is an error, the poll failed (false). */
static bool answer_ok(struct target *t, const struct mplus_result *r)
{
    gw_ts_format(gw_now_ms(), t->last_poll, sizeof t->last_poll);
    t->cs->login_refused = r->kind == MPLUS_AUTH;
    if (r->kind != MPLUS_OK) {
        fail(t, t->k->op, r->error);
        return false;
    }
    answered(t);
    return true;
}

static void page_answer(const struct mplus_result *r, void *arg)
{
    struct target *t = arg;
    if (!answer_ok(t, r))
        return;
    struct page_job *pj = calloc(1, sizeof *pj);
    size_t objects = 0;
    int64_t marker = t->marker;
    if (pj == NULL ||
        poller_parse_page(t->c, t->k->name, r->body, gw_now_ms(), &pj->in.events, &marker,
                          &objects) != 0 ||
        ingest_prepare(&pj->in) != 0) {
        if (pj)
            ingest_batch_free(&pj->in);
        free(pj);
        fail(t, t->k->op, "could not read the answer");
        return;
    }
    pj->t = t;
    pj->marker = marker;
    pj->more = t->k->paged && objects >= (size_t)kind_page_size(t->k, t->c) && marker > t->marker;
    pj->job.apply = page_apply;
    pj->job.done = page_done;
    pj->job.lazy = true;
    committer_submit(t->p->cm, &pj->job);
}

static void poll_once(struct target *t)
{
    json_t *req = json_object();
    json_object_set_new(req, t->k->marker, json_integer((json_int_t)(t->marker + 1)));
    if (t->k->paged)
        json_object_set_new(req, "syncMarkerLimit", json_integer(kind_page_size(t->k, t->c)));
    /* A receipt names the orders it was made from only when asked: the sales
     * flow books such a sale once (sales.c). */
    if (strcmp(t->k->name, "receipts") == 0)
        json_object_set_new(req, "includeOrderReferences", json_true());
    if (strcmp(t->k->name, "stock") == 0) {
        /* The branches the stock flow sums (stock_branches), else one. */
        json_t *branches = json_array();
        char buf[1024];
        gw_strlcpy(buf, t->c->stock_branches ? t->c->stock_branches : "", sizeof buf);
        char *save = NULL;
        int64_t n;
        for (char *w = strtok_r(buf, ", \t", &save); w; w = strtok_r(NULL, ", \t", &save))
            if (gw_strtoi64(w, &n))
                json_array_append_new(branches, json_integer((json_int_t)n));
        json_int_t first = json_array_size(branches) > 0
                               ? json_integer_value(json_array_get(branches, 0))
                               : (json_int_t)t->c->mplus_stock_branch;
        json_object_set_new(req, "branchNumber", json_integer(first));
        json_object_set_new(req, "articleNumbers", json_array());
        if (json_array_size(branches) > 1)
            json_object_set_new(req, "branchNumbers", branches);
        else
            json_decref(branches);
    }
    t->busy = true;
    if (mplus_call(t->p->mplus, t->c, t->k->op, req, page_answer, t) != 0)
        fail(t, t->k->op, "could not start the request");
    json_decref(req);
}

/* First poll of a connection without markers: start from now, unless a
 * backfill is configured (then from the beginning). */
static void current_answer(const struct mplus_result *r, void *arg)
{
    struct target *t = arg;
    t->cs->login_refused = r->kind == MPLUS_AUTH;
    if (r->kind != MPLUS_OK) {
        fail(t, "getCurrentSyncMarkers", r->error);
        return;
    }
    answered(t);
    char buf[32];
    int64_t m;
    if (!field_text(r->body, t->k->current, buf, sizeof buf, &m)) {
        fail(t, "getCurrentSyncMarkers", "the answer has no current marker");
        return;
    }
    t->marker = m;
    /* Store it through an empty page, so the start point survives a restart. */
    struct page_job *pj = calloc(1, sizeof *pj);
    pj->t = t;
    pj->marker = m;
    pj->job.apply = page_apply;
    pj->job.done = page_done;
    pj->job.lazy = true;
    committer_submit(t->p->cm, &pj->job);
}

/* ---- the daily summary's day watcher ------------------------------------------
 *
 * Mplus has no marker for its day figures, so the watcher reads them: every
 * poll interval, getJournals (receipts) from the first day not yet complete
 * (or summary_recheck_days back, for late changes, but never before
 * sales_mode_since) through today. A day of a branch is complete when Mplus
 * says it is closed at the till (getFinancialJournal's financialPeriodClosed,
 * asked only for days not yet complete by the clock), or the next morning at
 * summary_book_at (local time). Each complete day becomes an event "summary"
 * <branch>/<day>, keyed by a hash of its figures: the same figures are one
 * event, and a late receipt makes a new one that the flow books as a
 * correction.
 */

/* The first day not complete by the clock: today, or yesterday before summary_book_at. */
static int64_t first_open_day(const struct gw_connection *c, int64_t *today)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    *today = gw_day_of(&tm);
    return tm.tm_hour * 60 + tm.tm_min < c->summary_book_minute ? gw_day_add(*today, -1) : *today;
}

static void journals_emit(struct target *t);

static void journals_closed(const struct mplus_result *r, void *arg)
{
    struct target *t = arg;
    if (r->kind != MPLUS_OK) {
        fail(t, "getFinancialJournal", r->error);
        return;
    }
    /* Per branch: closed at the till. */
    json_t *closed = json_object_get(t->days, "closed");
    json_t *ask = json_object_get(t->days, "ask");
    json_t *day = json_array_get(ask, t->day_at);
    size_t i;
    json_t *g;
    json_array_foreach(list_of(r->body, "financialGroupList"), i, g)
    {
        json_t *b = json_object_get(g, "branchNumber");
        if (!json_is_integer(b) || !json_is_true(json_object_get(g, "financialPeriodClosed")))
            continue;
        char key[48];
        snprintf(key, sizeof key, "%lld/%s", (long long)json_integer_value(b),
                 json_string_value(day));
        json_object_set_new(closed, key, json_true());
    }
    t->day_at++;
    journals_emit(t);
}

/* Ask whether the next day not complete by the clock is closed; when none is
 * left, store the complete days as events. */
static void journals_emit(struct target *t)
{
    json_t *ask = json_object_get(t->days, "ask");
    size_t at = t->day_at;
    if (at < json_array_size(ask)) {
        const char *day = json_string_value(json_array_get(ask, at));
        json_t *req =
            json_pack("{s:s, s:s}", "fromFinancialDate", day, "throughFinancialDate", day);
        if (mplus_call(t->p->mplus, t->c, "getFinancialJournal", req, journals_closed, t) != 0)
            fail(t, "getFinancialJournal", "could not start the request");
        json_decref(req);
        return;
    }
    struct page_job *pj = calloc(1, sizeof *pj);
    if (pj == NULL) {
        fail(t, "store", "out of memory");
        return;
    }
    int64_t open = json_integer_value(json_object_get(t->days, "open"));
    json_t *closed = json_object_get(t->days, "closed");
    int64_t now_ms = gw_now_ms();
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(t->days, "journals"), i, j)
    {
        const char *day = json_string_value(json_object_get(j, "financialDate"));
        json_t *branch = json_object_get(j, "branchNumber");
        if (day == NULL || !json_is_integer(branch))
            continue;
        char id[48];
        snprintf(id, sizeof id, "%lld/%s", (long long)json_integer_value(branch), day);
        bool by_till = json_is_true(json_object_get(closed, id));
        if (gw_day_parse(day) >= open && !by_till)
            continue; /* the day goes on */
        size_t len = 0;
        char *text = gw_json_text(j, JSON_COMPACT | JSON_SORT_KEYS, &len);
        unsigned char hash[32];
        sig_sha256(text ? text : "", len, hash);
        free(text);
        char hex[17], *key = NULL;
        gw_hex(hash, 8, hex);
        if (asprintf(&key, "mplus-poll|%s|summary|%s|%s", t->c->name, id, hex) < 0)
            continue;
        json_t *payload = json_deep_copy(j);
        json_object_set_new(payload, "complete",
                            json_string(by_till ? "closed at the till" : "by the clock"));
        json_t *rec = event_new_record(t->c->name, GW_SRC_MPLUS_POLL, "summary", id, "Change",
                                       GW_PENDING, now_ms, NULL, NULL, NULL, payload);
        if (rec == NULL || batch_add(&pj->in.events, key, rec, GW_PENDING) != 0)
            continue;
    }
    if (ingest_prepare(&pj->in) != 0) {
        ingest_batch_free(&pj->in);
        free(pj);
        fail(t, "store", "could not prepare the day events");
        return;
    }
    pj->t = t;
    pj->marker = open;
    pj->job.apply = page_apply;
    pj->job.done = page_done;
    pj->job.lazy = true;
    committer_submit(t->p->cm, &pj->job);
}

static void journals_answer(const struct mplus_result *r, void *arg)
{
    struct target *t = arg;
    if (!answer_ok(t, r))
        return;
    int64_t open = json_integer_value(json_object_get(t->days, "open"));
    json_t *journals = list_of(r->body, "journalList");
    json_t *ask = json_array();
    size_t i;
    json_t *j;
    json_array_foreach(journals, i, j)
    {
        json_t *day = json_object_get(j, "financialDate");
        if (gw_day_parse(json_string_value(day)) < open)
            continue;
        bool listed = false;
        size_t k;
        json_t *d;
        json_array_foreach(ask, k, d) listed = listed || json_equal(d, day);
        if (!listed)
            json_array_append(ask, day);
    }
    json_object_set(t->days, "journals", journals ? journals : json_array());
    json_object_set_new(t->days, "ask", ask);
    t->day_at = 0;
    json_object_set_new(t->days, "closed", json_object());
    journals_emit(t);
}

static void journals_poll(struct target *t)
{
    const struct gw_connection *c = t->c;
    int64_t today, open = first_open_day(c, &today);
    int64_t since = gw_day_parse(c->sales_mode_since);
    if (t->marker < 0) {
        char key[160];
        poller_marker_key(c->name, t->k->name, key, sizeof key);
        json_t *v = NULL;
        t->marker = store_meta_get(t->p->st, key, &v, NULL, 0) == 0 && json_is_integer(v)
                        ? (int64_t)json_integer_value(v)
                        : since;
        json_decref(v);
    }
    int64_t first = gw_day_add(today, -(int)c->summary_recheck_days);
    if (t->marker < first)
        first = t->marker;
    if (first < since)
        first = since;
    if (first > today) { /* the summary starts later */
        arm(t, c->mplus_poll_interval_s * 1000);
        return;
    }
    json_decref(t->days);
    t->days = json_pack("{s:I}", "open", (json_int_t)open);
    char from[16], through[16];
    gw_day_text(first, from);
    gw_day_text(today, through);
    json_t *req = json_pack("{s:s, s:s, s:[s]}", "fromFinancialDate", from, "throughFinancialDate",
                            through, "journalFilterList", "JOURNAL-FILTER-RECEIPT");
    t->busy = true;
    if (mplus_call(t->p->mplus, c, t->k->op, req, journals_answer, t) != 0)
        fail(t, t->k->op, "could not start the request");
    json_decref(req);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct target *t = arg;
    if (t->paging) { /* a backfill's next page (busy all along) */
        next_page(t);
        return;
    }
    t->nudge_due = false;
    if (t->busy)
        return;
    if (t->k->marker == NULL) {
        journals_poll(t);
        return;
    }
    if (t->marker < 0) {
        char key[160];
        poller_marker_key(t->c->name, t->k->name, key, sizeof key);
        json_t *v = NULL;
        if (store_meta_get(t->p->st, key, &v, NULL, 0) == 0 && json_is_integer(v)) {
            t->marker = (int64_t)json_integer_value(v);
        } else if (t->c->mplus_backfill) {
            t->marker = 0;
        } else {
            json_decref(v);
            t->busy = true;
            json_t *req = json_object();
            if (mplus_call(t->p->mplus, t->c, "getCurrentSyncMarkers", req, current_answer, t) != 0)
                fail(t, "getCurrentSyncMarkers", "could not start the request");
            json_decref(req);
            return;
        }
        json_decref(v);
    }
    poll_once(t);
}

void poller_nudge(struct poller *p, const struct gw_connection *c)
{
    for (size_t i = 0; i < p->n; i++) {
        struct target *t = &p->targets[i];
        if (t->c != c ||
            (strcmp(t->k->name, "receipts") != 0 && strcmp(t->k->name, "invoices") != 0))
            continue;
        if (t->busy) {
            t->renudge = true; /* the poll running may have asked before the sale */
        } else if (!t->nudge_due) {
            /* Debounced without postponing: a burst of sales gets one poll
             * NUDGE_DELAY_MS after its first callback, not after its last. */
            t->nudge_due = true;
            arm(t, NUDGE_DELAY_MS);
        }
    }
}

void poller_drain(struct poller *p)
{
    if (p == NULL)
        return;
    p->draining = true;
    for (size_t i = 0; i < p->n; i++) {
        struct target *t = &p->targets[i];
        evtimer_del(t->timer);
        if (t->paging) /* no request out: the next page is simply not asked */
            t->paging = t->busy = false;
    }
}

bool poller_idle(const struct poller *p)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->targets[i].busy)
            return false;
    for (size_t i = 0; p && i < p->cfg->nconns; i++)
        if (p->conns[i].asking)
            return false;
    return true;
}

static void version_answer(const struct mplus_result *r, void *arg)
{
    struct conn_state *cs = arg;
    cs->asking = false;
    cs->login_refused = r->kind == MPLUS_AUTH;
    if (r->kind != MPLUS_OK) {
        snprintf(cs->last_error, sizeof cs->last_error, "getApiVersion: %s", r->error);
        gw_log(GW_LOG_ERROR, cs->c->name, 0, "Mplus API %s: %s",
               r->kind == MPLUS_AUTH ? "refused the ident/secret" : "not reachable", r->error);
        return;
    }
    json_int_t a = json_integer_value(json_object_get(r->body, "majorNumber"));
    json_int_t b = json_integer_value(json_object_get(r->body, "minorNumber"));
    json_int_t c = json_integer_value(json_object_get(r->body, "revisionNumber"));
    snprintf(cs->api_version, sizeof cs->api_version, "%lld.%lld.%lld", (long long)a, (long long)b,
             (long long)c);
    cs->last_error[0] = '\0';
    gw_log(GW_LOG_INFO, cs->c->name, 0, "Mplus API version %s", cs->api_version);
}

/* The version shows in status, and a first call proves the credentials. */
static void ask_version(struct conn_state *cs)
{
    json_t *none = json_object();
    cs->asking = mplus_call(cs->p->mplus, cs->c, "getApiVersion", none, version_answer, cs) == 0;
    json_decref(none);
}

json_t *poller_status(struct poller *p, const struct gw_connection *c)
{
    json_t *o = json_object();
    for (size_t i = 0; p && i < p->cfg->nconns; i++) {
        struct conn_state *cs = &p->conns[i];
        if (cs->c != c)
            continue;
        if (cs->api_version[0])
            json_object_set_new(o, "mplus_api_version", json_string(cs->api_version));
        if (cs->last_error[0])
            json_object_set_new(o, "mplus_error", json_string(cs->last_error));
        if (cs->login_refused)
            json_object_set_new(o, "mplus_login_refused", json_true());
    }
    for (size_t i = 0; p && i < p->n; i++) {
        struct target *t = &p->targets[i];
        if (t->c != c)
            continue;
        json_t *e = json_pack("{s:I}", "marker", (json_int_t)t->marker);
        if (t->last_poll[0])
            json_object_set_new(e, "last_poll_at", json_string(t->last_poll));
        if (t->last_error[0])
            json_object_set_new(e, "last_error", json_string(t->last_error));
        json_t *polls = json_object_get(o, "mplus_polls");
        if (polls == NULL) {
            polls = json_object();
            json_object_set_new(o, "mplus_polls", polls);
        }
        json_object_set_new(polls, t->k->name, e);
    }
    return o;
}

struct poller *poller_new(struct event_base *base, const struct gw_config *cfg,
                          struct committer *cm, struct store *st, struct mplus *mplus,
                          struct dispatcher *d)
{
    struct poller *p = calloc(1, sizeof *p);
    p->cfg = cfg;
    p->cm = cm;
    p->st = st;
    p->mplus = mplus;
    p->d = d;
    p->targets = calloc(cfg->nconns * NKINDS + 1, sizeof *p->targets);
    p->conns = calloc(cfg->nconns + 1, sizeof *p->conns);
    for (size_t i = 0; i < cfg->nconns; i++) {
        const struct gw_connection *c = &cfg->conns[i];
        p->conns[i].c = c;
        p->conns[i].p = p;
        if (c->mplus_url == NULL || c->mplus_url[0] == '\0')
            continue;
        ask_version(&p->conns[i]);
        for (size_t k = 0; k < NKINDS; k++) {
            if ((c->flows & kinds[k].flow) == 0 ||
                (kinds[k].marker == NULL && !c->summary_receipts))
                continue;
            struct target *t = &p->targets[p->n++];
            t->p = p;
            t->c = c;
            t->cs = &p->conns[i];
            t->k = &kinds[k];
            t->marker = -1;
            t->timer = evtimer_new(base, on_timer, t);
            arm(t, 100 * (int64_t)k); /* spread the first polls a little */
        }
    }
    return p;
}

void poller_free(struct poller *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        event_free(p->targets[i].timer);
        json_decref(p->targets[i].days);
    }
    free(p->targets);
    free(p->conns);
    free(p);
}
