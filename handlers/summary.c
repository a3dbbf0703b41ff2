/*
 * summary.c - the daily summary: a till's financial day of one branch booked
 * as one QuickBooks JournalEntry that equals Mplus's own day figures.
 *
 * With sales_mode = daily_summary the sales flow leaves till receipts from
 * sales_mode_since on to this flow. The poller's day watcher makes an event
 * "summary" <branch>/<YYYY-MM-DD> once a day is complete (closed at the
 * till, or the next morning at summary_book_at), and again when its figures
 * change later (a late receipt).
 *
 * Steps: hold the day (one run of a day at a time) and read Mplus's day
 * (getJournals: payments per method, VAT per code, turnover per group) ->
 * getFinancialJournal: the turnover per group split over VAT codes, which
 * must agree with the first answer -> what QuickBooks holds for the day
 * (the JournalEntries of its TxnDate whose DocNumber is the day's:
 * MPLUS-<branch>-<date>, then its corrections ...C1, C2) -> the tax table
 * (a VAT company's rates) -> the day's figures less what is booked: nothing
 * left is "unchanged"; else one entry, the day's first or a correction.
 *
 * Figures are signed cents per (account, tax code), credits positive:
 *   turnover of a group at a VAT code  credit  summary_income_accounts[group],
 *                                      its TaxCode (sales_tax_codes) with the
 *                                      VAT as TaxAmount; or, with
 *                                      summary_tax_account, the VAT credited
 *                                      to that account, no TaxCode
 *   each payment method                debit   sales_deposit_accounts[method]
 *   what does not balance              summary_rounding_account, at most
 *                                      summary_rounding_max_cents
 * What is booked is read back from QuickBooks, never from the store: a
 * crash between the create and its commit, a replay, or a second event of
 * the same figures all find the entry and book nothing twice.
 *
 * The id map, written with the outcome:
 *   idmap.<connection>.summary.<branch>/<date> -> {entries: [{id, doc_number}], figures}
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

#define DOC_NUMBER_MAX 21 /* QuickBooks' DocNumber */

struct day {
    char id[48];     /* <branch>/<date> */
    char branch[16]; /* the branch number as text */
    char date[16];   /* YYYY-MM-DD */
    char base[48];   /* the day's DocNumber */
    json_int_t branch_no;
    json_t *journal;  /* getJournals' journal of the day and branch, or NULL (no receipts) */
    json_t *turnover; /* getFinancialJournal's turnover groups of the branch's receipts */
    json_t *fresh;    /* key -> {account, tax_code, net, tax, text}: the day now */
    json_t *booked;   /* the same, of what QuickBooks holds */
    json_t *entries;  /* [{id, doc_number}] booked */
    char map_key[200];
};

static void day_free(void *p)
{
    struct day *d = p;
    json_decref(d->journal);
    json_decref(d->turnover);
    json_decref(d->fresh);
    json_decref(d->booked);
    json_decref(d->entries);
    free(d);
}

/* Add net and tax to the figure of (account, tax code), made when absent. */
static void add_figure(json_t *figs, const char *account, const char *tax_code, int64_t net,
                       int64_t tax, const char *text)
{
    char key[160];
    snprintf(key, sizeof key, "%s|%s", account, tax_code ? tax_code : "");
    json_t *f = json_object_get(figs, key);
    if (f == NULL) {
        f = json_pack("{s:s, s:s*, s:I, s:I, s:s}", "account", account, "tax_code", tax_code, "net",
                      (json_int_t)0, "tax", (json_int_t)0, "text", text ? text : "");
        json_object_set_new(figs, key, f);
    }
    json_object_set_new(f, "net",
                        json_integer(json_integer_value(json_object_get(f, "net")) + net));
    json_object_set_new(f, "tax",
                        json_integer(json_integer_value(json_object_get(f, "tax")) + tax));
}

static int64_t figure(json_t *f, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(f, k));
}

/* ---- Mplus's day ------------------------------------------------------------------ */

static void summary_begin(struct run *r)
{
    struct day *d = r->flow;
    if (!lookup_hold(r, "summary", d->id, summary_begin))
        return; /* another event of the day is booking it */
    run_next(r);
}

static void journal_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct day *d = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getJournals", res);
        return;
    }
    size_t i;
    json_t *j;
    json_array_foreach(json_object_get(res->body, "journalList"), i, j)
    {
        if (json_integer_value(json_object_get(j, "branchNumber")) == d->branch_no &&
            strcmp(gw_str(j, "financialDate") ?: "", d->date) == 0)
            d->journal = json_incref(j);
    }
    run_next(r);
}

static void summary_journal(struct run *r)
{
    struct day *d = r->flow;
    json_t *req = json_pack("{s:s, s:s, s:[I], s:[s]}", "fromFinancialDate", d->date,
                            "throughFinancialDate", d->date, "branchNumbers", d->branch_no,
                            "journalFilterList", "JOURNAL-FILTER-RECEIPT");
    if (task_mplus_call(r->t, "getJournals", req, journal_read, r) != 0)
        run_fail(r, OUTCOME_RETRY, NULL, "getJournals: could not start the request");
    json_decref(req);
}

/* The turnover of group number in the journal (excl cents), or 0. */
static int64_t journal_turnover(json_t *journal, json_int_t number)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(journal, "turnoverGroupList"), i, g)
    {
        if (json_integer_value(json_object_get(g, "turnoverGroup")) == number)
            return qbo_cents_field(g, "exclAmount");
    }
    return 0;
}

/* Add sign x the VAT of an Mplus vatGroup to vat[code]. */
static void add_vat(json_t *vat, json_t *group, int sign)
{
    char code[24];
    snprintf(code, sizeof code, "%lld",
             (long long)json_integer_value(json_object_get(group, "vatCode")));
    json_object_set_new(vat, code,
                        json_integer(json_integer_value(json_object_get(vat, code)) +
                                     sign * qbo_cents_field(group, "vatAmount")));
}

/* Both answers describe the same day: turnover per group, and the VAT per code. */
static bool answers_agree(struct day *d, char *why, size_t whylen)
{
    json_t *vat = json_object();
    size_t i, k;
    json_t *g, *v;
    json_int_t groups = 0;
    json_array_foreach(d->turnover, i, g)
    {
        json_int_t number = json_integer_value(json_object_get(g, "financialGroupNumber"));
        int64_t excl = qbo_cents_field(g, "exclAmount");
        groups++;
        if (excl != journal_turnover(d->journal, number)) {
            snprintf(why, whylen, "turnover group %lld", (long long)number);
            json_decref(vat);
            return false;
        }
        json_array_foreach(json_object_get(g, "vatGroupList"), k, v) add_vat(vat, v, 1);
    }
    bool same = (size_t)groups == json_array_size(json_object_get(d->journal, "turnoverGroupList"));
    json_array_foreach(json_object_get(d->journal, "vatGroupList"), i, v) add_vat(vat, v, -1);
    const char *code;
    json_object_foreach(vat, code, v) same = same && json_integer_value(v) == 0;
    json_decref(vat);
    if (!same)
        snprintf(why, whylen, "the turnover groups or the VAT per code");
    return same;
}

static void groups_read(const struct mplus_result *res, void *arg)
{
    struct run *r = arg;
    struct day *d = r->flow;
    if (res->kind != MPLUS_OK) {
        run_fail_mplus(r, "getFinancialJournal", res);
        return;
    }
    d->turnover = json_array();
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(res->body, "financialGroupList"), i, g)
    {
        if (json_integer_value(json_object_get(g, "branchNumber")) == d->branch_no &&
            strcmp(gw_str(g, "financialGroupType") ?: "", "FINANCIAL-GROUP-TYPE-TURNOVER") == 0 &&
            strcmp(gw_str(g, "financialGroupSource") ?: "", "FINANCIAL-GROUP-SOURCE-RECEIPT") == 0)
            json_array_append(d->turnover, g);
    }
    char why[128];
    if (!answers_agree(d, why, sizeof why)) {
        /* A receipt came in between the two reads: read the day again. */
        run_fail(r, OUTCOME_RETRY, NULL,
                 "Mplus's day figures changed between getJournals and getFinancialJournal (%s); "
                 "reading the day again",
                 why);
        return;
    }
    run_next(r);
}

static void summary_groups(struct run *r)
{
    struct day *d = r->flow;
    json_t *req =
        json_pack("{s:s, s:s}", "fromFinancialDate", d->date, "throughFinancialDate", d->date);
    if (task_mplus_call(r->t, "getFinancialJournal", req, groups_read, r) != 0)
        run_fail(r, OUTCOME_RETRY, NULL, "getFinancialJournal: could not start the request");
    json_decref(req);
}

/* ---- what QuickBooks holds ---------------------------------------------------------- */

/* Whether doc_number is the day's entry or one of its corrections (base "C" digits). */
static bool of_the_day(const struct day *d, const char *doc_number)
{
    size_t n = strlen(d->base);
    if (doc_number == NULL || strncmp(doc_number, d->base, n) != 0)
        return false;
    const char *rest = doc_number + n;
    if (*rest == '\0')
        return true;
    if (*rest++ != 'C' || *rest == '\0')
        return false;
    return strspn(rest, "0123456789") == strlen(rest);
}

static void booked_read(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct day *d = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "query JournalEntry", res);
        return;
    }
    size_t i, k;
    json_t *e, *line;
    json_array_foreach(json_object_get(json_object_get(res->body, "QueryResponse"), "JournalEntry"),
                       i, e)
    {
        if (!of_the_day(d, gw_str(e, "DocNumber")))
            continue;
        json_array_append_new(d->entries, json_pack("{s:s, s:s}", "id", gw_str(e, "Id") ?: "",
                                                    "doc_number", gw_str(e, "DocNumber")));
        json_array_foreach(json_object_get(e, "Line"), k, line)
        {
            json_t *det = json_object_get(line, "JournalEntryLineDetail");
            const char *account = gw_str(json_object_get(det, "AccountRef"), "value");
            if (account == NULL)
                continue;
            int sign = strcmp(gw_str(det, "PostingType") ?: "", "Credit") == 0 ? 1 : -1;
            int64_t net = 0, tax = 0;
            if (!qbo_cents_of(json_object_get(line, "Amount"), &net) ||
                (json_object_get(det, "TaxAmount") &&
                 !qbo_cents_of(json_object_get(det, "TaxAmount"), &tax))) {
                run_fail(r, OUTCOME_DEAD, "unreadable entry",
                         "JournalEntry %s (%s) has an amount that is not money", gw_str(e, "Id"),
                         gw_str(e, "DocNumber"));
                return;
            }
            add_figure(d->booked, account, gw_str(json_object_get(det, "TaxCodeRef"), "value"),
                       sign * net, sign * tax, gw_str(line, "Description"));
        }
    }
    run_next(r);
}

static void summary_booked(struct run *r)
{
    struct day *d = r->flow;
    char q[160];
    snprintf(q, sizeof q, "select * from JournalEntry where TxnDate = '%s' MAXRESULTS 1000",
             d->date);
    if (task_qbo_query(r->t, q, booked_read, r) != 0)
        run_fail(r, OUTCOME_RETRY, NULL, "query JournalEntry: could not start the request");
}

static void summary_taxes(struct run *r)
{
    if (r->t->conn->summary_tax_account && r->t->conn->summary_tax_account[0])
        run_next(r);
    else
        lookup_tax_table(r, run_next);
}

/* ---- the figures and the entry ------------------------------------------------------- */

/* The day's figures from Mplus's answers; false (the run ended) when a table lacks an entry. */
static bool day_figures(struct run *r)
{
    struct day *d = r->flow;
    const struct gw_connection *c = r->t->conn;
    const char *tax_account =
        c->summary_tax_account && c->summary_tax_account[0] ? c->summary_tax_account : NULL;
    size_t i, k;
    json_t *g, *v;
    json_array_foreach(d->turnover, i, g)
    {
        char number[24], text[160];
        snprintf(number, sizeof number, "%lld",
                 (long long)json_integer_value(json_object_get(g, "financialGroupNumber")));
        snprintf(text, sizeof text, "Turnover group %s (%s)", number,
                 gw_str(g, "financialGroupName") ?: "");
        const char *account = lookup_table(r, "summary_income_accounts", number)
                                  ?: lookup_table(r, "summary_income_accounts", "*");
        if (account == NULL) {
            run_fail(r, OUTCOME_DEAD, "no income account",
                     "no income account for Mplus turnover group %s: add %s:<Account Id> (or "
                     "*:<Account Id>) to summary_income_accounts, then replay",
                     number, number);
            return false;
        }
        json_array_foreach(json_object_get(g, "vatGroupList"), k, v)
        {
            int64_t excl = qbo_cents_field(v, "exclAmount"), vat = qbo_cents_field(v, "vatAmount");
            if (tax_account) {
                add_figure(d->fresh, account, NULL, excl, 0, text);
                add_figure(d->fresh, tax_account, NULL, vat, 0, "VAT");
                continue;
            }
            char why[300];
            const char *country = gw_str(v, "countryIso3") ?: c->default_country ?: "";
            const char *code = lookup_tax_code(
                r, country, json_integer_value(json_object_get(v, "vatCode")), why, sizeof why);
            if (code == NULL) {
                run_fail(r, OUTCOME_DEAD, "no tax code", "%s", why);
                return false;
            }
            add_figure(d->fresh, account, code, excl, vat, text);
        }
    }
    json_array_foreach(json_object_get(d->journal, "paymentList"), i, v)
    {
        const char *method = gw_str(v, "method") ?: "";
        int64_t amount = qbo_cents_field(v, "amount");
        const char *account = lookup_table(r, "sales_deposit_accounts", method)
                                  ?: lookup_table(r, "sales_deposit_accounts", "*");
        if (account == NULL) {
            run_fail(r, OUTCOME_DEAD, "no deposit account",
                     "no account for Mplus payment method %s: add %s:<Account Id> to "
                     "sales_deposit_accounts, then replay",
                     method, method);
            return false;
        }
        char text[96];
        snprintf(text, sizeof text, "Payments %s", method);
        add_figure(d->fresh, account, NULL, -amount, 0, text);
    }
    int64_t off = 0;
    const char *key;
    json_object_foreach(d->fresh, key, v) off += figure(v, "net") + figure(v, "tax");
    if (off == 0)
        return true;
    const char *rounding = c->summary_rounding_account;
    char diff[MPLUS_NUM_LEN];
    mplus_cents_format(off, diff, sizeof diff);
    if (off > c->summary_rounding_max_cents || -off > c->summary_rounding_max_cents ||
        rounding == NULL || rounding[0] == '\0') {
        run_fail(
            r, OUTCOME_DEAD, "day does not balance",
            "the day's turnover and VAT differ from its payments by %s%s (at most %d cents "
            "go to summary_rounding_account%s)",
            diff, off > 0 ? " (more turnover than payments)" : " (more payments than turnover)",
            c->summary_rounding_max_cents, rounding && rounding[0] ? "" : ", which is not set");
        return false;
    }
    add_figure(d->fresh, rounding, NULL, -off, 0, "Rounding");
    return true;
}

/* Lines and tax lines of fresh less booked; false when nothing is left. */
static bool entry_lines(struct run *r, json_t *lines, json_t *tax_lines, int64_t *total_tax)
{
    struct day *d = r->flow;
    json_t *keys = json_object();
    const char *key;
    json_t *f;
    json_object_foreach(d->fresh, key, f) json_object_set(keys, key, f);
    json_object_foreach(d->booked, key, f) if (!json_object_get(keys, key))
        json_object_set(keys, key, f);
    json_t *rates = json_object(); /* TaxRate -> {rate, percent, net, amount} */
    *total_tax = 0;
    json_object_foreach(keys, key, f)
    {
        json_t *now = json_object_get(d->fresh, key), *was = json_object_get(d->booked, key);
        int64_t net = figure(now, "net") - figure(was, "net");
        int64_t tax = figure(now, "tax") - figure(was, "tax");
        if (net == 0 && tax == 0)
            continue;
        int sign = net > 0 || (net == 0 && tax > 0) ? 1 : -1;
        char amount[MPLUS_NUM_LEN], tax_amount[MPLUS_NUM_LEN];
        mplus_cents_format(sign * net, amount, sizeof amount);
        mplus_cents_format(sign * tax, tax_amount, sizeof tax_amount);
        const char *code = gw_str(f, "tax_code");
        json_array_append_new(lines, json_pack("{s:s, s:s, s:s, s:s*, s:s*, s:s}", "posting",
                                               sign > 0 ? "Credit" : "Debit", "account",
                                               gw_str(f, "account"), "amount", amount, "tax_code",
                                               code, "tax_amount", code ? tax_amount : NULL,
                                               "description", gw_str(f, "text") ?: ""));
        if (code == NULL)
            continue;
        *total_tax += tax;
        json_t *list = lookup_tax_rates(r->t, code);
        json_t *first = json_array_get(list, 0);
        const char *rate = gw_str(first, "rate");
        if (rate == NULL)
            continue; /* a code without rates (US): TaxAmount alone */
        json_t *e = json_object_get(rates, rate);
        if (e == NULL) {
            e = json_pack("{s:s, s:s, s:I, s:I}", "rate", rate, "percent",
                          gw_str(first, "percent") ?: "0", "net", (json_int_t)0, "amount",
                          (json_int_t)0);
            json_object_set_new(rates, rate, e);
        }
        json_object_set_new(e, "net", json_integer(figure(e, "net") + net));
        json_object_set_new(e, "amount", json_integer(figure(e, "amount") + tax));
    }
    json_object_foreach(rates, key, f)
    {
        char net[MPLUS_NUM_LEN], amount[MPLUS_NUM_LEN];
        mplus_cents_format(figure(f, "net"), net, sizeof net);
        mplus_cents_format(figure(f, "amount"), amount, sizeof amount);
        json_array_append_new(tax_lines,
                              json_pack("{s:s, s:s, s:s, s:s}", "rate", key, "percent",
                                        gw_str(f, "percent"), "net", net, "amount", amount));
    }
    json_decref(rates);
    json_decref(keys);
    return json_array_size(lines) > 0;
}

/* The id map entry: the entries of the day and the figures they add up to. */
static void remember(struct run *r)
{
    struct day *d = r->flow;
    json_t *v =
        json_pack("{s:O, s:O, s:s}", "entries", d->entries, "figures", d->fresh, "date", d->date);
    task_put_meta(r->t, d->map_key, v);
    json_decref(v);
}

static void entry_written(const struct qbo_result *res, void *arg)
{
    struct run *r = arg;
    struct day *d = r->flow;
    if (res->kind != QBO_OK) {
        run_fail_qbo(r, "create JournalEntry", res);
        return;
    }
    json_t *e = json_object_get(res->body, "JournalEntry");
    if (gw_str(e, "Id") == NULL) {
        run_fail(r, OUTCOME_RETRY, NULL, "create JournalEntry: QuickBooks answered without an Id");
        return;
    }
    json_array_append_new(d->entries, json_pack("{s:s, s:s}", "id", gw_str(e, "Id"), "doc_number",
                                                gw_str(e, "DocNumber") ?: ""));
    task_note(r->t, "created JournalEntry %s (%s) for branch %s, financial day %s", gw_str(e, "Id"),
              gw_str(e, "DocNumber") ?: "", d->branch, d->date);
    remember(r);
    run_done(r);
}

/* Notes for show: the day's figures, one line per account and tax code. */
static void note_figures(struct run *r)
{
    struct day *d = r->flow;
    const char *key;
    json_t *f;
    json_object_foreach(d->fresh, key, f)
    {
        char net[MPLUS_NUM_LEN], tax[MPLUS_NUM_LEN];
        mplus_cents_format(figure(f, "net"), net, sizeof net);
        mplus_cents_format(figure(f, "tax"), tax, sizeof tax);
        task_note(r->t, "%s: account %s%s%s %s%s%s", gw_str(f, "text"), gw_str(f, "account"),
                  gw_str(f, "tax_code") ? ", TaxCode " : "", gw_str(f, "tax_code") ?: "", net,
                  gw_str(f, "tax_code") ? " + VAT " : "", gw_str(f, "tax_code") ? tax : "");
    }
}

static void summary_write(struct run *r)
{
    struct day *d = r->flow;
    struct task *t = r->t;
    if (!day_figures(r))
        return;
    note_figures(r);
    json_t *lines = json_array(), *tax_lines = json_array();
    int64_t total_tax = 0;
    if (!entry_lines(r, lines, tax_lines, &total_tax)) {
        json_decref(lines);
        json_decref(tax_lines);
        task_note(t, "branch %s, financial day %s is booked in %zu entr%s and unchanged", d->branch,
                  d->date, json_array_size(d->entries),
                  json_array_size(d->entries) == 1 ? "y" : "ies");
        remember(r);
        run_skip(r, json_array_size(d->entries) ? "day booked, unchanged" : "nothing to book");
        return;
    }
    size_t n = json_array_size(d->entries);
    char doc_number[72], note[200], tax[MPLUS_NUM_LEN]; /* base, "C" and a count */
    if (n == 0)
        snprintf(doc_number, sizeof doc_number, "%s", d->base);
    else
        snprintf(doc_number, sizeof doc_number, "%sC%zu", d->base, n);
    if (n == 0)
        snprintf(note, sizeof note, "Mplus daily summary: branch %s, financial day %s", d->branch,
                 d->date);
    else
        snprintf(note, sizeof note,
                 "Mplus daily summary: correction %zu of branch %s, financial day %s (%s)", n,
                 d->branch, d->date, d->base);
    mplus_cents_format(total_tax, tax, sizeof tax);
    json_t *input = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:s, s:s*, s:s*, s:O*}", "doc_number", doc_number,
        "date", d->date, "branch", d->branch, "private_note", note, "correction", n > 0, "lines",
        lines, "tax_lines", json_array_size(tax_lines) ? tax_lines : json_null(), "total_tax", tax,
        "department", lookup_table(r, "sales_department_by_branch", d->branch), "class",
        lookup_table(r, "sales_class_by_branch", d->branch), "journal", d->journal);
    if (json_array_size(tax_lines) == 0)
        json_decref(tax_lines);
    json_t *target = NULL;
    char err[512];
    int rc = map_run(t->clients->mapper, t->conn, MAP_SUMMARY_TO_QBO, input, NULL, &target, err,
                     sizeof err);
    json_decref(input);
    if (rc != 0) {
        run_fail(r, OUTCOME_DEAD, "mapping failed", "%s", err);
        return;
    }
    char rid[96];
    task_requestid(t, "summary", rid, sizeof rid);
    task_qbo_create(t, "JournalEntry", target, rid, entry_written, r);
    json_decref(target);
}

static const step_fn summary_steps[] = {
    summary_begin, summary_journal, summary_groups, summary_booked,
    summary_taxes, summary_write,   NULL,
};

void summary_from_mplus(struct task *t)
{
    struct day *d = run_state(t, sizeof *d);
    if (d == NULL)
        return;
    const char *id = json_string_value(json_object_get(t->rec, "entity_id")) ?: "";
    const char *slash = strchr(id, '/');
    int64_t branch = 0;
    if (slash == NULL || (size_t)(slash - id) >= sizeof d->branch || strlen(slash + 1) != 10 ||
        strlen(id) >= sizeof d->id) {
        free(d);
        task_fail(t, OUTCOME_DEAD, "bad event",
                  "a summary event names <branch>/<YYYY-MM-DD>, not '%s'", id);
        return;
    }
    memcpy(d->branch, id, (size_t)(slash - id));
    if (!gw_strtoi64(d->branch, &branch)) {
        free(d);
        task_fail(t, OUTCOME_DEAD, "bad event",
                  "a summary event names <branch>/<YYYY-MM-DD>, not '%s'", id);
        return;
    }
    gw_strlcpy(d->id, id, sizeof d->id);
    gw_strlcpy(d->date, slash + 1, sizeof d->date);
    d->branch_no = (json_int_t)branch;
    snprintf(d->base, sizeof d->base, "MPLUS-%s-%s", d->branch, d->date);
    if (strlen(d->base) + 3 > DOC_NUMBER_MAX) /* room for a correction's "C<nn>" */
        snprintf(d->base, sizeof d->base, "MPLUS-%s-%.4s%.2s%.2s", d->branch, d->date, d->date + 5,
                 d->date + 8);
    d->fresh = json_object();
    d->booked = json_object();
    d->entries = json_array();
    lookup_idmap_key(t, "summary", d->id, d->map_key, sizeof d->map_key);
    run_start(t, summary_steps, d, day_free);
}
