/*
 * reconcile.c - is everything in QuickBooks, and only once?
 *
 * For one connection and a range of financial days: Mplus's own day figures
 * (getJournals of receipts and invoices: turnover excl. VAT and VAT per rate,
 * incl. = their sum) next to what QuickBooks holds for those days, read back
 * from QuickBooks (never from the store): the SalesReceipts, RefundReceipts,
 * Invoices and CreditMemos the gateway booked (DocNumber the Mplus
 * transaction number, or PrivateNote "Mplus <kind> <id>") and the daily
 * summaries (JournalEntries MPLUS-...). Per day the difference, and the
 * documents that explain it: in Mplus but not in QuickBooks (missing), in
 * QuickBooks more than once (twice), booked with another total (differs).
 * Receipts in the daily summary are checked as the day's total only.
 *
 * Steps: getJournals -> getReceipts, getInvoices (pages by sync marker,
 * without lines) -> one query per QuickBooks type (pages of 1000) -> the
 * report. Runs in the daemon, which holds the connection's tokens.
 */
#include "reconcile.h"
#include "clients.h"
#include "committer.h"
#include "dispatch.h"
#include "event.h"
#include "ingest.h"
#include "map.h"
#include "mplus.h"
#include "qbo.h"
#include "store.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MPLUS_PAGE 500
#define QBO_PAGE   1000

/* The QuickBooks documents the gateway books, and the sign of their totals. */
static const struct {
    const char *entity;
    int sign;
} qbo_types[] = {
    {"SalesReceipt", 1}, {"Invoice", 1},      {"RefundReceipt", -1},
    {"CreditMemo", -1},  {"JournalEntry", 1},
};
#define NTYPES (sizeof qbo_types / sizeof qbo_types[0])

/* The Mplus documents the sales flow books one by one. */
static const struct {
    const char *kind, *op;
} mplus_kinds[] = {{"receipt", "getReceipts"}, {"invoice", "getInvoices"}};

struct job {
    struct gw_clients *clients;
    const struct gw_connection *c;
    char from[16], to[16];
    reconcile_cb cb;
    void *arg;
    /* backfill: what is missing becomes events, instead of a report */
    const struct backfill_env *env;
    bool dry_run;
    /* unpost: what the gateway booked is deleted, and its id map entry */
    const struct unpost_env *un;
    json_t *done, *refused; /* [{...}] */
    json_t *queue;          /* the missing documents and summary days: [{kind, id, ...}] */
    json_t *events;         /* the documents read again in full, as events go */
    size_t queue_at;
    json_t *days;   /* date -> {mplus: {excl, vat: {pct: cents}}, quickbooks: ..., ...} */
    json_t *docs;   /* Mplus documents: [{kind, id, number, date, total, summary}] */
    json_t *booked; /* QuickBooks documents: [{entity, id, doc_number, note, date, total, ...}] */
    size_t kind_at, type_at;
    int64_t marker;
    long start;
};

static void job_end(struct job *j, json_t *report, const char *error)
{
    j->cb(report, error, j->arg);
    json_decref(report);
    json_decref(j->days);
    json_decref(j->docs);
    json_decref(j->booked);
    json_decref(j->queue);
    json_decref(j->events);
    json_decref(j->done);
    json_decref(j->refused);
    free(j);
}

static void progress(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(struct job *j, const char *fmt, ...)
{
    void (*fn)(const char *, void *) = j->env ? j->env->progress : j->un ? j->un->progress : NULL;
    if (fn == NULL)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(line, j->arg);
}

/* A percentage as text: 21 for 21, 21.0 or "21", 5.5 for 5.5. */
static void percent_text(json_t *v, char *out, size_t len)
{
    if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%.6g", json_real_value(v));
    else
        snprintf(out, len, "%s", json_is_string(v) ? json_string_value(v) : "?");
}

static void add(json_t *o, const char *k, int64_t v)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + v));
}

/* The figures of one side of a day: {excl, vat: {pct: cents}, documents}. */
static json_t *side(struct job *j, const char *date, const char *which)
{
    json_t *d = json_object_get(j->days, date);
    if (d == NULL) {
        d = json_object();
        json_object_set_new(j->days, date, d);
    }
    json_t *s = json_object_get(d, which);
    if (s == NULL) {
        s = json_pack("{s:I, s:{}, s:I}", "excl", (json_int_t)0, "vat", "documents", (json_int_t)0);
        json_object_set_new(d, which, s);
    }
    return s;
}

/* ---- the report ------------------------------------------------------------------- */

static json_t *money(int64_t cents)
{
    char t[MPLUS_NUM_LEN];
    mplus_cents_format(cents, t, sizeof t);
    return json_string(t);
}

/* {incl, excl, vat: {pct: text}, documents} of a side, as money text. */
static json_t *figures(json_t *s)
{
    int64_t tax = 0;
    json_t *vat = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(s, "vat"), k, v)
    {
        tax += json_integer_value(v);
        json_object_set_new(vat, k, money(json_integer_value(v)));
    }
    int64_t excl = json_integer_value(json_object_get(s, "excl"));
    return json_pack("{s:o, s:o, s:o, s:O}", "incl", money(excl + tax), "excl", money(excl), "vat",
                     vat, "documents", json_object_get(s, "documents"));
}

/* mplus - quickbooks per figure; true when all are 0. */
static bool difference(json_t *m, json_t *q, json_t **out)
{
    json_t *vat = json_object();
    bool same = true;
    int64_t tm = 0, tq = 0;
    const char *k;
    json_t *v;
    json_t *keys = json_deep_copy(json_object_get(m, "vat"));
    json_object_update_missing(keys, json_object_get(q, "vat"));
    json_object_foreach(keys, k, v)
    {
        int64_t a = json_integer_value(json_object_get(json_object_get(m, "vat"), k));
        int64_t b = json_integer_value(json_object_get(json_object_get(q, "vat"), k));
        tm += a;
        tq += b;
        if (a != b) {
            json_object_set_new(vat, k, money(a - b));
            same = false;
        }
    }
    json_decref(keys);
    int64_t excl = json_integer_value(json_object_get(m, "excl")) -
                   json_integer_value(json_object_get(q, "excl"));
    same = same && excl == 0;
    *out = json_pack("{s:o, s:o, s:o}", "incl", money(excl + tm - tq), "excl", money(excl), "vat",
                     vat);
    return same;
}

static json_t *doc_view(json_t *d)
{
    json_t *v = json_pack("{s:s, s:s, s:s, s:o}", "kind", gw_str(d, "kind") ?: "", "id",
                          gw_str(d, "id") ?: "", "number", gw_str(d, "number") ?: "", "total",
                          money(json_integer_value(json_object_get(d, "total"))));
    return v;
}

static json_t *qbo_ref(json_t *b)
{
    char t[96];
    snprintf(t, sizeof t, "%s %s", gw_str(b, "entity"), gw_str(b, "id"));
    return json_string(t);
}

/* The note the sales flow writes, "Mplus receipt <id>", after which a
 * remark may follow (a closed period's date). */
static bool note_names(const char *note, const char *expected)
{
    size_t n = strlen(expected);
    return strncmp(note, expected, n) == 0 && (note[n] == '\0' || note[n] == ' ');
}

/* The DocNumber the sales mapping makes of an Mplus number: its first 21
 * characters (QuickBooks' limit). */
static bool doc_number_is(const char *doc_number, const char *number)
{
    size_t n = strlen(number) > 21 ? 21 : strlen(number);
    return n > 0 && strlen(doc_number) == n && strncmp(doc_number, number, n) == 0;
}

/* Match each Mplus document with what QuickBooks holds of it; the rest of
 * QuickBooks' documents of the gateway are "unknown". */
static void explain(struct job *j)
{
    size_t i, k;
    json_t *d, *b;
    char *used = calloc(json_array_size(j->booked) + 1, 1);
    json_array_foreach(j->docs, i, d)
    {
        if (json_is_true(json_object_get(d, "summary")))
            continue; /* its day's JournalEntry holds it */
        char note[160];
        snprintf(note, sizeof note, "Mplus %s %s", gw_str(d, "kind"), gw_str(d, "id"));
        json_t *found = json_array();
        int64_t total = 0;
        json_array_foreach(j->booked, k, b)
        {
            if (json_is_true(json_object_get(b, "summary")))
                continue;
            if (!note_names(gw_str(b, "note") ?: "", note) &&
                !doc_number_is(gw_str(b, "doc_number") ?: "", gw_str(d, "number") ?: ""))
                continue;
            used[k] = 1;
            json_array_append_new(found, qbo_ref(b));
            total = json_integer_value(json_object_get(b, "total"));
        }
        json_t *day = json_object_get(j->days, gw_str(d, "date"));
        if (day == NULL) {
            json_decref(found);
            continue;
        }
        const char *list = NULL;
        json_t *v = doc_view(d);
        if (json_array_size(found) == 0) {
            list = "missing";
        } else if (json_array_size(found) > 1) {
            list = "twice";
            json_object_set(v, "quickbooks", found);
        } else if (total != json_integer_value(json_object_get(d, "total"))) {
            list = "differs";
            json_object_set(v, "quickbooks", found);
            json_object_set_new(v, "quickbooks_total", money(total));
        }
        if (list != NULL) {
            json_t *a = json_object_get(day, list);
            if (a == NULL)
                json_object_set_new(day, list, a = json_array());
            json_array_append(a, v);
        }
        json_decref(v);
        json_decref(found);
    }
    json_array_foreach(j->booked, k, b)
    {
        if (used[k] || json_is_true(json_object_get(b, "summary")))
            continue;
        json_t *day = json_object_get(j->days, gw_str(b, "date"));
        json_t *a = json_object_get(day, "unknown");
        if (day != NULL && a == NULL)
            json_object_set_new(day, "unknown", a = json_array());
        if (a != NULL)
            json_array_append_new(
                a, json_pack("{s:o, s:s, s:o}", "quickbooks", qbo_ref(b), "doc_number",
                             gw_str(b, "doc_number") ?: "", "total",
                             money(json_integer_value(json_object_get(b, "total")))));
    }
    free(used);
}

static void backfill(struct job *j);
static void unpost(struct job *j);

static int by_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void finish(struct job *j)
{
    if (j->un != NULL) {
        unpost(j);
        return;
    }
    explain(j);
    if (j->env != NULL) {
        backfill(j);
        return;
    }
    /* Dates as YYYY-MM-DD sort as text. */
    size_t n = json_object_size(j->days), i = 0;
    const char **dates = calloc(n + 1, sizeof *dates);
    if (dates == NULL) {
        job_end(j, NULL, "out of memory");
        return;
    }
    json_t *days = json_array();
    bool all = true;
    const char *date;
    json_t *d;
    json_object_foreach(j->days, date, d) dates[i++] = date;
    qsort(dates, n, sizeof *dates, by_text);
    for (i = 0; i < n; i++) {
        date = dates[i];
        d = json_object_get(j->days, date);
        json_t *m = side(j, date, "mplus"), *q = side(j, date, "quickbooks");
        json_t *diff;
        bool ok = difference(m, q, &diff);
        json_t *row = json_pack("{s:s, s:b, s:o, s:o, s:o}", "date", date, "ok", false, "mplus",
                                figures(m), "quickbooks", figures(q), "difference", diff);
        static const char *const lists[] = {"missing", "twice", "differs", "unknown"};
        for (size_t l = 0; l < 4; l++) {
            json_t *a = json_object_get(d, lists[l]);
            json_object_set_new(row, lists[l], a ? json_incref(a) : json_array());
            ok = ok && (a == NULL || l == 3);
        }
        json_object_set_new(row, "ok", json_boolean(ok));
        all = all && ok;
        json_array_append_new(days, row);
    }
    free(dates);
    json_t *report = json_pack("{s:s, s:s, s:s, s:b, s:o}", "connection", j->c->name, "from",
                               j->from, "to", j->to, "ok", all, "days", days);
    job_end(j, report, NULL);
}

/* ---- QuickBooks ---------------------------------------------------------------------- */

static void ask_quickbooks(struct job *j);

/* A JournalEntry of the daily summary: turnover on the income lines (those
 * with a tax code, or on the connection's income accounts), VAT per rate. */
static void add_summary(struct job *j, json_t *e, json_t *rec)
{
    json_t *s = side(j, gw_str(e, "TxnDate"), "quickbooks");
    size_t i;
    json_t *line;
    int64_t excl = 0;
    const char *tax_account = j->c->summary_tax_account;
    json_t *incomes = json_object_get(map_connection_settings(j->clients->mapper, j->c),
                                      "summary_income_accounts");
    json_array_foreach(json_object_get(e, "Line"), i, line)
    {
        json_t *det = json_object_get(line, "JournalEntryLineDetail");
        const char *account = gw_str(json_object_get(det, "AccountRef"), "value") ?: "";
        bool income = json_object_get(det, "TaxCodeRef") != NULL;
        const char *k;
        json_t *v;
        json_object_foreach(incomes, k, v) income =
            income || strcmp(json_string_value(v) ?: "", account) == 0;
        int sign = strcmp(gw_str(det, "PostingType") ?: "", "Credit") == 0 ? 1 : -1;
        if (income)
            excl += sign * qbo_cents_field(line, "Amount");
        if (tax_account && strcmp(tax_account, account) == 0)
            add(json_object_get(s, "vat"), "?", sign * qbo_cents_field(line, "Amount"));
    }
    json_array_foreach(json_object_get(json_object_get(e, "TxnTaxDetail"), "TaxLine"), i, line)
    {
        char pct[32];
        json_t *det = json_object_get(line, "TaxLineDetail");
        percent_text(json_object_get(det, "TaxPercent"), pct, sizeof pct);
        add(json_object_get(s, "vat"), pct, qbo_cents_field(line, "Amount"));
    }
    add(s, "excl", excl);
    add(s, "documents", 1);
    json_object_set_new(rec, "summary", json_true());
}

/* What the report keeps of a QuickBooks document. */
static json_t *record_of(const char *entity, json_t *e, int64_t total)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s}", "entity", entity, "id",
                     gw_str(e, "Id") ?: "", "doc_number", gw_str(e, "DocNumber") ?: "", "note",
                     gw_str(e, "PrivateNote") ?: "", "date", gw_str(e, "TxnDate") ?: "", "total",
                     (json_int_t)total, "sync", gw_str(e, "SyncToken") ?: "0", "customer",
                     gw_str(json_object_get(e, "CustomerRef"), "value") ?: "");
}

static void booked_page(const struct qbo_result *r, void *arg)
{
    struct job *j = arg;
    if (r->kind != QBO_OK) {
        char e[1100];
        snprintf(e, sizeof e, "QuickBooks query %s: %s", qbo_types[j->type_at].entity, r->error);
        job_end(j, NULL, e);
        return;
    }
    const char *entity = qbo_types[j->type_at].entity;
    int sign = qbo_types[j->type_at].sign;
    json_t *rows = qbo_rows(r->body, entity);
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e)
    {
        const char *note = gw_str(e, "PrivateNote") ?: "";
        const char *number = gw_str(e, "DocNumber") ?: "";
        const char *date = gw_str(e, "TxnDate");
        if (date == NULL)
            continue;
        bool summary = strcmp(entity, "JournalEntry") == 0;
        /* Only what the gateway books: an Mplus document's, or a daily summary. */
        if (summary ? strncmp(number, "MPLUS-", 6) != 0 : strncmp(note, "Mplus ", 6) != 0)
            continue; /* a voided document ("Voided") holds nothing */
        int64_t total = sign * qbo_cents_field(e, "TotalAmt");
        json_t *rec = record_of(entity, e, total);
        if (summary) {
            add_summary(j, e, rec);
        } else {
            json_t *s = side(j, date, "quickbooks");
            int64_t tax = sign * qbo_cents_field(json_object_get(e, "TxnTaxDetail"), "TotalTax");
            int64_t by_rate = 0;
            size_t k;
            json_t *t;
            json_array_foreach(json_object_get(json_object_get(e, "TxnTaxDetail"), "TaxLine"), k, t)
            {
                char pct[32];
                percent_text(json_object_get(json_object_get(t, "TaxLineDetail"), "TaxPercent"),
                             pct, sizeof pct);
                add(json_object_get(s, "vat"), pct, sign * qbo_cents_field(t, "Amount"));
                by_rate += sign * qbo_cents_field(t, "Amount");
            }
            if (tax != by_rate) /* a tax total without its rates (a US company) */
                add(json_object_get(s, "vat"), "?", tax - by_rate);
            add(s, "excl", total - tax);
            add(s, "documents", 1);
        }
        json_array_append_new(j->booked, rec);
    }
    if (json_array_size(rows) >= QBO_PAGE) {
        j->start += QBO_PAGE;
    } else {
        j->type_at++;
        j->start = 1;
    }
    ask_quickbooks(j);
}

static void ask_quickbooks(struct job *j)
{
    if (j->type_at >= NTYPES) {
        finish(j);
        return;
    }
    char q[256];
    snprintf(q, sizeof q,
             "select * from %s where TxnDate >= '%s' and TxnDate <= '%s' STARTPOSITION %ld "
             "MAXRESULTS %d",
             qbo_types[j->type_at].entity, j->from, j->to, j->start, QBO_PAGE);
    if (qbo_query(j->clients->qbo, j->c, q, booked_page, j) != 0)
        job_end(j, NULL, "could not start a QuickBooks query");
}

/* ---- Mplus --------------------------------------------------------------------------- */

static void ask_documents(struct job *j);

static void documents_page(const struct mplus_result *r, void *arg)
{
    struct job *j = arg;
    const char *kind = mplus_kinds[j->kind_at].kind;
    if (r->kind != MPLUS_OK) {
        char e[1100];
        snprintf(e, sizeof e, "Mplus %ss: %s", kind, r->error);
        job_end(j, NULL, e);
        return;
    }
    char list[32], id_field[32], type_field[32];
    snprintf(list, sizeof list, "%sList", kind);
    snprintf(id_field, sizeof id_field, "%sId", kind);
    snprintf(type_field, sizeof type_field, "%sType", kind);
    json_t *docs = json_object_get(r->body, list);
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        json_int_t m = json_integer_value(json_object_get(d, "syncMarker"));
        if (m > j->marker)
            j->marker = m;
        const char *type = gw_str(d, type_field) ?: "";
        /* Receipts that are no sale (cash in/out) are not booked. */
        if (strcmp(kind, "receipt") == 0 && strcmp(type, "RECEIPT-TYPE-RECEIPT") != 0 &&
            strstr(type, "CREDIT") == NULL)
            continue;
        const char *date = gw_str(d, "financialDate") ?: "";
        bool summary = strcmp(kind, "receipt") == 0 && j->c->summary_receipts &&
                       strcmp(date, j->c->sales_mode_since) >= 0;
        add(side(j, date, "mplus"), "documents", 1);
        json_array_append_new(
            j->docs,
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:I}", "kind", kind, "id",
                      gw_str(d, id_field) ?: "", "number", gw_str(d, "transactionString") ?: "",
                      "date", date, "total", (json_int_t)qbo_cents_field(d, "totalInclAmount"),
                      "summary", summary, "branch",
                      json_integer_value(json_object_get(d, "financialBranchNumber")), "marker",
                      json_integer_value(json_object_get(d, "syncMarker"))));
    }
    progress(j, "Mplus %ss: %zu read", kind, json_array_size(j->docs));
    if (json_array_size(docs) >= MPLUS_PAGE) {
        ask_documents(j);
        return;
    }
    j->kind_at++;
    j->marker = 0;
    ask_documents(j);
}

static void ask_documents(struct job *j)
{
    if (j->kind_at >= sizeof mplus_kinds / sizeof mplus_kinds[0]) {
        j->start = 1;
        ask_quickbooks(j);
        return;
    }
    const char *op = mplus_kinds[j->kind_at].op;
    json_t *req = json_pack("{s:I, s:i, s:s, s:s, s:b}", "syncMarker", (json_int_t)(j->marker + 1),
                            "syncMarkerLimit", MPLUS_PAGE, "fromFinancialDate", j->from,
                            "throughFinancialDate", j->to, "includeLineList", false);
    if (mplus_call(j->clients->mplus, j->c, op, req, documents_page, j) != 0)
        job_end(j, NULL, "could not start an Mplus request");
    json_decref(req);
}

static void journals_read(const struct mplus_result *r, void *arg)
{
    struct job *j = arg;
    if (r->kind != MPLUS_OK) {
        char e[1100];
        snprintf(e, sizeof e, "Mplus getJournals: %s", r->error);
        job_end(j, NULL, e);
        return;
    }
    size_t i, k;
    json_t *jr, *g;
    json_array_foreach(json_object_get(r->body, "journalList"), i, jr)
    {
        json_t *s = side(j, gw_str(jr, "financialDate") ?: "?", "mplus");
        json_array_foreach(json_object_get(jr, "vatGroupList"), k, g)
        {
            char pct[32];
            percent_text(json_object_get(g, "vatPercentage"), pct, sizeof pct);
            add(json_object_get(s, "vat"), pct, qbo_cents_field(g, "vatAmount"));
            add(s, "excl", qbo_cents_field(g, "exclAmount"));
        }
    }
    ask_documents(j);
}

/* ---- backfill ---------------------------------------------------------------------- */

/* The missing documents of the range, read again in full (with lines), by id. */
#define BACKFILL_IDS 100

struct backfill_job {
    struct commit_job job; /* first */
    struct job *j;
    struct ingest_batch in;
};

static int backfill_apply(struct store_txn *tx, struct commit_job *job)
{
    struct backfill_job *b = (struct backfill_job *)job;
    return store_txn_ingest(tx, b->in.puts, b->in.events.n);
}

static void backfill_done(struct commit_job *job)
{
    struct backfill_job *b = (struct backfill_job *)job;
    struct job *j = b->j;
    if (job->status != 0) {
        ingest_batch_free(&b->in);
        free(b);
        job_end(j, NULL, "could not store the events");
        return;
    }
    size_t added = ingest_new_pending(&b->in);
    ingest_batch_free(&b->in);
    free(b);
    if (added > 0)
        dispatch_kick(j->env->d);
    progress(j, "%zu events queued", added);
    json_t *report =
        json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:O}", "connection", j->c->name, "from", j->from,
                  "to", j->to, "dry_run", false, "documents", (json_int_t)json_array_size(j->docs),
                  "queued", (json_int_t)added, "missing", j->queue);
    job_end(j, report, NULL);
}

/* The events: each missing document (its full record, as the poller stores
 * it) and each day of the daily summary, marked "backfill" so the flows
 * look in QuickBooks past a stale id map entry. */
static void backfill_commit(struct job *j)
{
    struct backfill_job *b = calloc(1, sizeof *b);
    if (b == NULL) {
        job_end(j, NULL, "out of memory");
        return;
    }
    b->j = j;
    int64_t now = gw_now_ms();
    size_t i;
    json_t *q;
    json_array_foreach(j->queue, i, q)
    {
        const char *kind = gw_str(q, "kind"), *id = gw_str(q, "id");
        json_t *payload = strcmp(kind, "summary") == 0
                              ? json_pack("{s:s}", "backfill", id)
                              : json_incref(json_object_get(j->events, id));
        if (payload == NULL || json_is_null(payload)) {
            json_decref(payload);
            progress(j, "%s %s: Mplus no longer has it", kind, id);
            continue;
        }
        char *key = NULL;
        if (asprintf(&key, "mplus-backfill|%s|%lld|%s|%s", j->c->name, (long long)now, kind, id) <
            0) {
            json_decref(payload);
            continue;
        }
        json_t *rec = event_new_record(j->c->name, GW_SRC_MPLUS_POLL, kind, id, "Change",
                                       GW_PENDING, now, NULL, NULL, NULL, payload);
        if (rec != NULL)
            json_object_set_new(rec, "backfill", json_true());
        if (rec == NULL || batch_add(&b->in.events, key, rec, GW_PENDING) != 0)
            continue;
    }
    if (ingest_prepare(&b->in) != 0) {
        ingest_batch_free(&b->in);
        free(b);
        job_end(j, NULL, "out of memory");
        return;
    }
    b->job.apply = backfill_apply;
    b->job.done = backfill_done;
    committer_submit(j->env->cm, &b->job);
}

static void read_missing(struct job *j);

static void missing_read(const struct mplus_result *r, void *arg)
{
    struct job *j = arg;
    if (r->kind != MPLUS_OK) {
        char e[1100];
        snprintf(e, sizeof e, "Mplus: %s", r->error);
        job_end(j, NULL, e);
        return;
    }
    size_t i;
    json_t *d;
    for (size_t k = 0; k < sizeof mplus_kinds / sizeof mplus_kinds[0]; k++) {
        char list[32], id_field[32];
        snprintf(list, sizeof list, "%sList", mplus_kinds[k].kind);
        snprintf(id_field, sizeof id_field, "%sId", mplus_kinds[k].kind);
        json_array_foreach(json_object_get(r->body, list), i, d)
        {
            if (gw_str(d, id_field))
                json_object_set(j->events, gw_str(d, id_field), d);
        }
    }
    progress(j, "%zu missing documents read from Mplus", json_object_size(j->events));
    read_missing(j);
}

/* The next BACKFILL_IDS missing documents of one kind, read in full. */
static void read_missing(struct job *j)
{
    for (size_t k = 0; k < sizeof mplus_kinds / sizeof mplus_kinds[0]; k++) {
        const char *kind = mplus_kinds[k].kind;
        char ids_field[32];
        snprintf(ids_field, sizeof ids_field, "%sIds", kind);
        json_t *ids = json_array();
        size_t i;
        json_t *q;
        json_array_foreach(j->queue, i, q)
        {
            if (strcmp(gw_str(q, "kind"), kind) == 0 &&
                !json_object_get(j->events, gw_str(q, "id")) && json_array_size(ids) < BACKFILL_IDS)
                json_array_append(ids, json_object_get(q, "id"));
        }
        if (json_array_size(ids) == 0) {
            json_decref(ids);
            continue;
        }
        /* Mark them asked, so a document Mplus does not return is not asked again. */
        json_array_foreach(ids, i, q)
            json_object_set_new(j->events, json_string_value(q), json_null());
        json_t *req = json_pack("{s:o, s:b}", ids_field, ids, "includeOrderReferences",
                                strcmp(kind, "receipt") == 0);
        if (strcmp(kind, "receipt") != 0)
            json_object_del(req, "includeOrderReferences");
        int rc = mplus_call(j->clients->mplus, j->c, mplus_kinds[k].op, req, missing_read, j);
        json_decref(req);
        if (rc != 0)
            job_end(j, NULL, "could not start an Mplus request");
        return;
    }
    backfill_commit(j);
}

static void backfill(struct job *j)
{
    j->queue = json_array();
    j->events = json_object();
    size_t i;
    json_t *day, *d;
    const char *date;
    json_object_foreach(j->days, date, day)
    {
        json_array_foreach(json_object_get(day, "missing"), i, d) json_array_append(j->queue, d);
    }
    /* Each day of the daily summary: its flow books what QuickBooks lacks. */
    json_t *days = json_object();
    json_array_foreach(j->docs, i, d)
    {
        if (!json_is_true(json_object_get(d, "summary")))
            continue;
        char id[48];
        snprintf(id, sizeof id, "%lld/%s",
                 (long long)json_integer_value(json_object_get(d, "branch")), gw_str(d, "date"));
        if (json_object_get(days, id) == NULL) {
            json_object_set_new(days, id, json_true());
            json_array_append_new(j->queue, json_pack("{s:s, s:s}", "kind", "summary", "id", id));
        }
    }
    json_decref(days);
    progress(j, "%zu documents in Mplus, %zu missing in QuickBooks", json_array_size(j->docs),
             json_array_size(j->queue));
    if (j->dry_run) {
        json_t *report = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:O}", "connection", j->c->name,
                                   "from", j->from, "to", j->to, "dry_run", true, "documents",
                                   (json_int_t)json_array_size(j->docs), "queued", (json_int_t)0,
                                   "missing", j->queue);
        job_end(j, report, NULL);
        return;
    }
    read_missing(j);
}

/* ---- unpost -------------------------------------------------------------------------- */

static void unpost_next(struct job *j);

static json_t *target_view(json_t *b)
{
    return json_pack("{s:o, s:s, s:s, s:s}", "quickbooks", qbo_ref(b), "doc_number",
                     gw_str(b, "doc_number") ?: "", "date", gw_str(b, "date") ?: "", "note",
                     gw_str(b, "note") ?: "");
}

struct forget_job {
    struct commit_job job; /* first */
    struct job *j;
    char key[256];
};

static int forget_apply(struct store_txn *tx, struct commit_job *job)
{
    return store_txn_meta_del(tx, ((struct forget_job *)job)->key);
}

static void forget_done(struct commit_job *job)
{
    struct forget_job *f = (struct forget_job *)job;
    struct job *j = f->j;
    int status = job->status;
    free(f);
    if (status != 0) {
        job_end(j, NULL, "could not clear the id map");
        return;
    }
    j->queue_at++;
    unpost_next(j);
}

/* The document is gone from QuickBooks: its id map entry goes too, so the
 * next event of it (a backfill, a replay) books it again. */
static void forget(struct job *j, const char *key)
{
    json_t *b = json_array_get(j->queue, j->queue_at);
    json_array_append_new(j->done, target_view(b));
    struct forget_job *f = calloc(1, sizeof *f);
    if (f == NULL) {
        job_end(j, NULL, "out of memory");
        return;
    }
    f->j = j;
    gw_strlcpy(f->key, key, sizeof f->key);
    f->job.apply = forget_apply;
    f->job.done = forget_done;
    committer_submit(j->un->cm, &f->job);
}

static void deleted(const struct qbo_result *r, void *arg)
{
    struct job *j = arg;
    json_t *b = json_array_get(j->queue, j->queue_at);
    if (r->kind != QBO_OK) {
        char e[1200];
        snprintf(e, sizeof e, "delete %s %s: %s", gw_str(b, "entity"), gw_str(b, "id"), r->error);
        job_end(j, NULL, e);
        return;
    }
    /* An invoice's payments first, then the invoice (json "payments" left). */
    json_t *pays = json_object_get(b, "payments");
    if (json_array_size(pays) > 0) {
        json_array_remove(pays, 0);
        unpost_next(j);
        return;
    }
    forget(j, gw_str(b, "map_key"));
}

static void delete_one(struct job *j, const char *entity, const char *id, const char *sync)
{
    char rid[160];
    snprintf(rid, sizeof rid, "unpost-%s-%s-%s", entity, id, sync);
    if (qbo_delete(j->clients->qbo, j->c, entity, id, sync, rid, deleted, j) != 0)
        job_end(j, NULL, "could not start a QuickBooks delete");
}

static void payments_found(const struct qbo_result *r, void *arg)
{
    struct job *j = arg;
    json_t *b = json_array_get(j->queue, j->queue_at);
    if (r->kind != QBO_OK) {
        char e[1200];
        snprintf(e, sizeof e, "the payments of Invoice %s: %s", gw_str(b, "id"), r->error);
        job_end(j, NULL, e);
        return;
    }
    json_t *pays = json_array();
    size_t i, k, m;
    json_t *p, *line, *link;
    json_array_foreach(qbo_rows(r->body, "Payment"), i, p)
    {
        bool links = false;
        json_array_foreach(json_object_get(p, "Line"), k, line)
        {
            json_array_foreach(json_object_get(line, "LinkedTxn"), m, link) links =
                links || (strcmp(gw_str(link, "TxnType") ?: "", "Invoice") == 0 &&
                          strcmp(gw_str(link, "TxnId") ?: "", gw_str(b, "id")) == 0);
        }
        if (links)
            json_array_append_new(pays, json_pack("{s:s, s:s}", "id", gw_str(p, "Id") ?: "", "sync",
                                                  gw_str(p, "SyncToken") ?: "0"));
    }
    json_object_set_new(b, "payments", pays);
    unpost_next(j);
}

/* The next target: checked against the id map, then its payments and itself deleted. */
static void unpost_next(struct job *j)
{
    json_t *b = json_array_get(j->queue, j->queue_at);
    if (b == NULL) {
        json_t *report = json_pack("{s:s, s:s, s:s, s:b, s:O, s:O}", "connection", j->c->name,
                                   "from", j->from, "to", j->to, "dry_run", j->dry_run, "unposted",
                                   j->done, "refused", j->refused);
        job_end(j, report, NULL);
        return;
    }
    json_t *pays = json_object_get(b, "payments");
    if (json_array_size(pays) > 0) {
        json_t *p = json_array_get(pays, 0);
        delete_one(j, "Payment", gw_str(p, "id"), gw_str(p, "sync"));
        return;
    }
    if (pays != NULL) { /* its payments are gone */
        delete_one(j, gw_str(b, "entity"), gw_str(b, "id"), gw_str(b, "sync"));
        return;
    }
    /* What the id map says the gateway booked. */
    char key[256], kind[32] = "", mid[160] = "";
    bool summary = strcmp(gw_str(b, "entity"), "JournalEntry") == 0;
    if (summary) {
        const char *n = gw_str(b, "doc_number") + 6; /* MPLUS-<branch>-... */
        snprintf(key, sizeof key, "idmap.%s.summary.%.*s/%s", j->c->name, (int)strcspn(n, "-"), n,
                 gw_str(b, "date"));
    } else {
        sscanf(gw_str(b, "note"), "Mplus %31s %159s", kind, mid);
        snprintf(key, sizeof key, "idmap.%s.%s.%s", j->c->name, kind, mid);
    }
    json_object_set_new(b, "map_key", json_string(key));
    json_t *entry = NULL;
    store_meta_get(j->un->st, key, &entry, NULL, 0);
    const char *why = NULL;
    char buf[200];
    if (!summary && (entry == NULL || strcmp(gw_str(entry, "id") ?: "", gw_str(b, "id")) != 0)) {
        why = "not the document the gateway booked (entered by hand?): left alone";
    } else if (!summary && !j->un->force &&
               strcmp(gw_str(entry, "sync") ?: "0", gw_str(b, "sync")) != 0) {
        snprintf(buf, sizeof buf,
                 "changed in QuickBooks since it was booked (SyncToken %s, now %s): --force "
                 "unposts it all the same",
                 gw_str(entry, "sync") ?: "0", gw_str(b, "sync"));
        why = buf;
    }
    json_decref(entry);
    if (why != NULL || j->dry_run) {
        json_t *v = target_view(b);
        if (why)
            json_object_set_new(v, "reason", json_string(why));
        json_array_append_new(why ? j->refused : j->done, v);
        j->queue_at++;
        unpost_next(j);
        return;
    }
    if (strcmp(gw_str(b, "entity"), "Invoice") == 0 && gw_str(b, "customer")[0]) {
        char q[200];
        snprintf(q, sizeof q, "select * from Payment where CustomerRef = '%s' MAXRESULTS 1000",
                 gw_str(b, "customer"));
        if (qbo_query(j->clients->qbo, j->c, q, payments_found, j) != 0)
            job_end(j, NULL, "could not start a QuickBooks query");
        return;
    }
    json_object_set_new(b, "payments", json_array());
    unpost_next(j);
}

static void unpost(struct job *j)
{
    j->queue = json_array();
    j->done = json_array();
    j->refused = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(j->booked, i, b)
    {
        /* With --event, only that document. */
        if (j->un->only_id[0] && strcmp(gw_str(b, "id"), j->un->only_id) != 0)
            continue;
        if (j->un->only_entity[0] && strcmp(gw_str(b, "entity"), j->un->only_entity) != 0)
            continue;
        if (j->un->only_prefix[0] &&
            strncmp(gw_str(b, "doc_number"), j->un->only_prefix, strlen(j->un->only_prefix)) != 0)
            continue;
        json_array_append(j->queue, b);
    }
    progress(j, "%zu documents of the gateway in QuickBooks", json_array_size(j->queue));
    unpost_next(j);
}

static struct job *job_new(struct gw_clients *clients, const struct gw_connection *c,
                           const char *from, const char *to, reconcile_cb cb, void *arg)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->clients = clients;
    j->c = c;
    gw_strlcpy(j->from, from, sizeof j->from);
    gw_strlcpy(j->to, to, sizeof j->to);
    j->cb = cb;
    j->arg = arg;
    j->days = json_object();
    j->docs = json_array();
    j->booked = json_array();
    return j;
}

int reconcile_start(struct gw_clients *clients, const struct gw_connection *c, const char *from,
                    const char *to, reconcile_cb cb, void *arg)
{
    struct job *j = job_new(clients, c, from, to, cb, arg);
    if (j == NULL)
        return -1;
    json_t *req =
        json_pack("{s:s, s:s, s:[s, s]}", "fromFinancialDate", from, "throughFinancialDate", to,
                  "journalFilterList", "JOURNAL-FILTER-RECEIPT", "JOURNAL-FILTER-INVOICE");
    int rc = mplus_call(clients->mplus, c, "getJournals", req, journals_read, j);
    json_decref(req);
    if (rc != 0) {
        json_decref(j->days);
        json_decref(j->docs);
        json_decref(j->booked);
        free(j);
    }
    return rc;
}

int backfill_start(struct gw_clients *clients, const struct backfill_env *env,
                   const struct gw_connection *c, const char *from, const char *to, bool dry_run,
                   reconcile_cb cb, void *arg)
{
    struct job *j = job_new(clients, c, from, to, cb, arg);
    if (j == NULL)
        return -1;
    j->env = env;
    j->dry_run = dry_run;
    ask_documents(j);
    return 0;
}

static void one_read(const struct qbo_result *r, void *arg)
{
    struct job *j = arg;
    if (r->kind == QBO_FAULT && strcmp(r->code, "610") == 0) {
        finish(j); /* no longer in QuickBooks: nothing to unpost */
        return;
    }
    if (r->kind != QBO_OK) {
        char e[1200];
        snprintf(e, sizeof e, "read %s %s: %s", j->un->only_entity, j->un->only_id, r->error);
        job_end(j, NULL, e);
        return;
    }
    json_t *e = json_object_get(r->body, j->un->only_entity);
    json_array_append_new(j->booked, record_of(j->un->only_entity, e, 0));
    finish(j);
}

int unpost_start(struct gw_clients *clients, const struct unpost_env *env,
                 const struct gw_connection *c, const char *from, const char *to, bool dry_run,
                 reconcile_cb cb, void *arg)
{
    struct job *j = job_new(clients, c, from, to, cb, arg);
    if (j == NULL)
        return -1;
    j->un = env;
    j->dry_run = dry_run;
    j->start = 1;
    if (from[0] == '\0') /* one document: env names it */
        return qbo_read(clients->qbo, c, env->only_entity, env->only_id, one_read, j);
    ask_quickbooks(j);
    return 0;
}
