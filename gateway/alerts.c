/*
 * alerts.c - telling an operator when something needs a person.
 *
 * Conditions, per connection, from the daemon's live view (the one `status`
 * shows) and the store, looked at every second. What was open when the
 * daemon stopped is read back from its last status in the store: a
 * condition that cleared meanwhile (map_max_mb raised, say) sends its
 * "resolved"; dead events still there are sent again.
 *
 *   dead_events         the connection has dead events (a new one notifies)
 *   needs_reauth        QuickBooks refused the refresh token
 *   circuit_open        the circuit breaker stopped delivering
 *   mplus_login_refused Mplus refused mplus_ident / mplus_secret
 *   oldest_pending      the oldest queued event waited longer than
 *                       [alerts] oldest_pending_s (connection "")
 *   store_full          the store uses more than store_full_pct of the
 *                       largest map it may grow to, map_max_mb ("")
 *   inbox_stalled       burst webhooks wait in the inbox, and it has not
 *                       shrunk for inbox_stall_s ("")
 *
 * Each is logged when it opens and when it clears, listed in `status` while
 * open, and sent to [alerts] webhook_url as JSON, signed with HMAC-SHA256
 * under [alerts] secret (X-Gateway-Signature: base64), retried with backoff,
 * at most one message per condition and connection per period_s (what
 * happened meanwhile is counted into the next one; a condition that clears
 * and opens again within the period waits for it too). A condition that
 * clears after it was sent sends one "resolved". A message is tried until
 * the receiver takes it (backoff from [alerts] retry_first_s, doubling, at
 * most retry_max_s), unless a newer message of its condition replaces it.
 */
#include "alerts.h"
#include "http.h"
#include "jsonout.h"
#include "log.h"
#include "report.h"
#include "sig.h"
#include "store.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cond {
    struct cond *next;
    char conn[72];
    char name[32];
    bool open;
    char detail[512];
    int64_t since_ms;     /* opened */
    int64_t sent_ms;      /* last message sent for it, 0 = none */
    bool sent_open;       /* the last message said open (a resolved is due on clear) */
    unsigned news;        /* things that happened since the last message */
    uint64_t last_dead;   /* dead_events: the highest dead event id seen (the link's) */
    bool pending_message; /* a message is due once the period allows */
};

struct delivery {
    struct delivery *next, *prev;
    struct alerts *a;
    const struct cond *c; /* the condition it is about */
    char *body;
    int attempt;
    bool in_flight;
    struct event *timer;
};

struct alerts {
    struct event_base *base;
    const struct gw_config *cfg;
    struct http_client *http;
    struct store *st;
    struct cond *conds;
    struct delivery *deliveries; /* being sent or waiting to be sent again */
    uint64_t dead_count;         /* dead events in the store when last looked */
    bool dead_known;
    int64_t inbox_depth;    /* webhooks in the inbox when last looked */
    int64_t inbox_moved_ms; /* when it last shrank or was empty */
};

static void free_delivery(struct delivery *d);
static struct cond *cond_of(struct alerts *a, const char *conn, const char *name);
static void look_at_dead(struct alerts *a);
static void look_at_store(struct alerts *a, uint64_t inbox);

struct alerts *alerts_new(struct event_base *base, const struct gw_config *cfg,
                          struct http_client *http, struct store *st)
{
    struct alerts *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->base = base;
    a->cfg = cfg;
    a->http = http;
    a->st = st;
    /* The conditions the last daemon had open (and sent, as far as it knows). */
    json_t *last = NULL;
    store_meta_get(st, "daemon.status", &last, NULL, 0);
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(last, "alerts"), i, o)
    {
        const char *conn = json_string_value(json_object_get(o, "connection"));
        const char *name = json_string_value(json_object_get(o, "condition"));
        struct cond *c = conn && name ? cond_of(a, conn, name) : NULL;
        if (c == NULL)
            continue;
        c->open = true;
        c->sent_open = true;       /* a "resolved" is due when it clears */
        c->pending_message = true; /* still open: sent again, it may not have got through */
        if (!gw_ts_parse(json_string_value(json_object_get(o, "since")) ?: "", &c->since_ms))
            c->since_ms = gw_now_ms();
        gw_strlcpy(c->detail, json_string_value(json_object_get(o, "detail")) ?: "",
                   sizeof c->detail);
    }
    json_decref(last);
    return a;
}

void alerts_free(struct alerts *a)
{
    if (a == NULL)
        return;
    /* After the HTTP client: transfers it dropped answer nothing. */
    while (a->deliveries)
        free_delivery(a->deliveries);
    while (a->conds) {
        struct cond *n = a->conds->next;
        free(a->conds);
        a->conds = n;
    }
    free(a);
}

static struct cond *cond_of(struct alerts *a, const char *conn, const char *name)
{
    for (struct cond *c = a->conds; c; c = c->next)
        if (strcmp(c->conn, conn) == 0 && strcmp(c->name, name) == 0)
            return c;
    struct cond *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    gw_strlcpy(c->conn, conn, sizeof c->conn);
    gw_strlcpy(c->name, name, sizeof c->name);
    c->next = a->conds;
    a->conds = c;
    return c;
}

/* ---- delivery ------------------------------------------------------------------ */

static void deliver(struct delivery *d);

static void free_delivery(struct delivery *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        d->a->deliveries = d->next;
    if (d->next)
        d->next->prev = d->prev;
    if (d->timer)
        event_free(d->timer);
    free(d->body);
    free(d);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    deliver(arg);
}

static void delivered(const struct http_response *resp, void *arg)
{
    struct delivery *d = arg;
    d->in_flight = false;
    if (!resp->transport_error && resp->status >= 200 && resp->status < 300) {
        free_delivery(d);
        return;
    }
    char why[600];
    if (resp->transport_error)
        snprintf(why, sizeof why, "%s", resp->error);
    else
        snprintf(why, sizeof why, "HTTP %ld", resp->status);
    const struct gw_config *cfg = d->a->cfg;
    long wait_s = cfg->alert_retry_first_s;
    for (int i = 1; i < d->attempt && wait_s < cfg->alert_retry_max_s; i++)
        wait_s *= 2;
    if (wait_s > cfg->alert_retry_max_s)
        wait_s = cfg->alert_retry_max_s;
    log_warn("alert delivery failed (attempt %d: %s); trying again in %ld s", d->attempt, why,
             wait_s);
    if (d->timer == NULL)
        d->timer = evtimer_new(d->a->base, on_retry, d);
    struct timeval tv = {wait_s, 0};
    evtimer_add(d->timer, &tv);
}

static void deliver(struct delivery *d)
{
    const struct gw_config *cfg = d->a->cfg;
    d->attempt++;
    d->in_flight = true;
    size_t len = strlen(d->body);
    char sig[GW_SIG_B64_LEN], header[GW_SIG_B64_LEN + 32];
    const char *secret = cfg->alert_secret ? cfg->alert_secret : "";
    sig_sign(secret, strlen(secret), d->body, len, sig);
    snprintf(header, sizeof header, "X-Gateway-Signature: %s", sig);
    const char *headers[] = {"Content-Type: application/json", header, NULL};
    struct http_request req = {
        "POST", cfg->alert_url, headers, d->body, len, cfg->alert_timeout_s * 1000, 5000};
    if (http_start(d->a->http, &req, delivered, d) != 0) {
        struct http_response none = {.transport_error = 1};
        gw_strlcpy(none.error, "could not start the request", sizeof none.error);
        delivered(&none, d);
    }
}

static void send_message(struct alerts *a, struct cond *c, const char *state)
{
    char since[GW_TS_LEN], now[GW_TS_LEN];
    gw_ts_format(c->since_ms, since, sizeof since);
    gw_ts_format(gw_now_ms(), now, sizeof now);
    json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "condition", c->name, "connection",
                          c->conn, "state", state, "since", since, "at", now, "detail", c->detail,
                          "count", (json_int_t)(c->news ? c->news : 1));
    /* Where to look: the dashboard, at the latest dead event for those. */
    char link[600];
    const char *base = a->cfg->alert_dashboard_url;
    if (base != NULL && base[0])
        snprintf(link, sizeof link, "%s", base);
    else
        snprintf(link, sizeof link, "http://%s/", a->cfg->admin_listen);
    if (strcmp(c->name, "dead_events") == 0 && c->last_dead > 0)
        gw_appendf(link, sizeof link, "#event=%llu", (unsigned long long)c->last_dead);
    json_object_set_new(m, "link", json_string(link));
    c->sent_ms = gw_now_ms();
    c->sent_open = strcmp(state, "open") == 0;
    c->news = 0;
    c->pending_message = false;
    if (a->cfg->alert_url == NULL || a->cfg->alert_url[0] == '\0') {
        json_decref(m);
        return;
    }
    /* A message of this condition still waiting to be sent again says less
     * than this one: this one goes instead. */
    for (struct delivery *w = a->deliveries, *next; w; w = next) {
        next = w->next;
        if (w->c == c && !w->in_flight)
            free_delivery(w);
    }
    struct delivery *d = calloc(1, sizeof *d);
    char *body = gw_json_text(m, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    json_decref(m);
    if (d == NULL || body == NULL) {
        free(d);
        free(body);
        return;
    }
    d->a = a;
    d->c = c;
    d->body = body;
    d->next = a->deliveries;
    if (a->deliveries)
        a->deliveries->prev = d;
    a->deliveries = d;
    deliver(d);
}

/* ---- conditions ------------------------------------------------------------------ */

/* The condition is (still) open; news: something new happened (notify). */
static void raise_cond(struct alerts *a, const char *conn, const char *name, bool news,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void raise_cond(struct alerts *a, const char *conn, const char *name, bool news,
                       const char *fmt, ...)
{
    struct cond *c = cond_of(a, conn, name);
    if (c == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    int64_t now = gw_now_ms();
    if (!c->open) {
        c->open = true;
        c->since_ms = now;
        news = true;
        gw_log(GW_LOG_WARN, conn[0] ? conn : NULL, 0, "alert %s: %s", name, c->detail);
    }
    if (news) {
        c->news++;
        c->pending_message = true;
    }
    if (c->pending_message &&
        (c->sent_ms == 0 || now - c->sent_ms >= a->cfg->alert_period_s * 1000))
        send_message(a, c, "open");
}

static void clear_cond(struct alerts *a, const char *conn, const char *name)
{
    for (struct cond *c = a->conds; c; c = c->next) {
        if (!c->open || strcmp(c->conn, conn) != 0 || strcmp(c->name, name) != 0)
            continue;
        c->open = false;
        c->pending_message = false;
        gw_log(GW_LOG_INFO, conn[0] ? conn : NULL, 0, "alert %s cleared", name);
        if (c->sent_open)
            send_message(a, c, "resolved");
        return;
    }
}

static void set_cond(struct alerts *a, const char *conn, const char *name, bool open,
                     const char *detail)
{
    if (open)
        raise_cond(a, conn, name, false, "%s", detail);
    else
        clear_cond(a, conn, name);
}

/* Dead events per connection: counted again only when the store's total moves. */
static void look_at_dead(struct alerts *a)
{
    uint64_t counts[GW_STATE_COUNT];
    if (store_counts(a->st, counts, NULL, 0) != 0)
        return;
    if (a->dead_known && counts[GW_DEAD] == a->dead_count)
        return;
    char err[256];
    struct event_filter f = {GW_DEAD, NULL, NULL, NULL, 0, 0};
    json_t *dead = report_events(a->st, &f, err, sizeof err);
    if (dead == NULL)
        return;
    a->dead_known = true;
    a->dead_count = counts[GW_DEAD];
    for (size_t i = 0; i < a->cfg->nconns; i++) {
        const char *name = a->cfg->conns[i].name;
        uint64_t n = 0, newest = 0;
        const char *why = "";
        size_t j;
        json_t *e;
        json_array_foreach(dead, j, e)
        {
            const char *conn = json_string_value(json_object_get(e, "connection"));
            if (conn == NULL || strcmp(conn, name) != 0)
                continue;
            uint64_t id = (uint64_t)json_integer_value(json_object_get(e, "id"));
            n++;
            if (id > newest) {
                newest = id;
                why = json_string_value(json_object_get(e, "last_error"))
                          ?: json_string_value(json_object_get(e, "reason")) ?: "";
            }
        }
        if (n == 0) {
            clear_cond(a, name, "dead_events");
            continue;
        }
        char detail[400];
        snprintf(detail, sizeof detail, "%llu dead events; the latest, %llu: %.300s",
                 (unsigned long long)n, (unsigned long long)newest, why);
        struct cond *c = cond_of(a, name, "dead_events");
        if (c == NULL)
            continue;
        /* Dead events found at the start are sent once more: whether the
         * last daemon got its message through is not known, and a message
         * twice is better than none. */
        bool news = newest > c->last_dead;
        c->last_dead = newest;
        raise_cond(a, name, "dead_events", news, "%s", detail);
    }
    json_decref(dead);
}

/* The store's map and the inbox, for the whole daemon. */
static void look_at_store(struct alerts *a, uint64_t inbox)
{
    size_t max = (size_t)a->cfg->map_max_mb << 20, used = store_used_bytes(a->st);
    unsigned pct = max ? (unsigned)((unsigned long long)used * 100 / max) : 0;
    char detail[200];
    snprintf(detail, sizeof detail,
             "the store uses %zu MiB of the %ld MiB it may grow to (%u%%, threshold %ld%%)",
             used >> 20, a->cfg->map_max_mb, pct, a->cfg->alert_store_full_pct);
    set_cond(a, "", "store_full", pct >= (unsigned)a->cfg->alert_store_full_pct, detail);

    int64_t depth = (int64_t)inbox;
    int64_t now = gw_now_ms();
    if (depth == 0 || depth < a->inbox_depth || a->inbox_moved_ms == 0)
        a->inbox_moved_ms = now;
    a->inbox_depth = depth;
    int64_t still_s = (now - a->inbox_moved_ms) / 1000;
    snprintf(detail, sizeof detail,
             "%lld webhooks wait in the inbox, which has not shrunk for %lld s (threshold %ld s)",
             (long long)depth, (long long)still_s, a->cfg->alert_inbox_stall_s);
    set_cond(a, "", "inbox_stalled", depth > 0 && still_s >= a->cfg->alert_inbox_stall_s, detail);
}

void alerts_update(struct alerts *a, json_t *live, uint64_t inbox)
{
    for (size_t i = 0; i < a->cfg->nconns; i++) {
        const char *name = a->cfg->conns[i].name;
        json_t *l = json_object_get(live, name);
        if (!json_is_object(l))
            continue;
        json_t *auth = json_object_get(l, "authorised");
        set_cond(a, name, "needs_reauth", json_is_false(auth),
                 "QuickBooks refused the refresh token: connect the company again "
                 "(admin /oauth/quickbooks/connect or `gateway tokens`)");
        const char *circuit = json_string_value(json_object_get(l, "circuit"));
        char detail[256];
        snprintf(detail, sizeof detail, "deliveries stopped after %lld failures in a row, until %s",
                 (long long)json_integer_value(json_object_get(l, "failures_in_a_row")),
                 json_string_value(json_object_get(l, "circuit_open_until")) ?: "a probe works");
        /* Half open (one probe at a time) is not closed yet. */
        set_cond(a, name, "circuit_open",
                 circuit && (strcmp(circuit, "open") == 0 || strcmp(circuit, "half_open") == 0),
                 detail);
        /* Refused to the dispatcher (its events wait) or to the poller. */
        const char *until = json_string_value(json_object_get(l, "mplus_login_refused_until"));
        bool refused = until != NULL || json_is_true(json_object_get(l, "mplus_login_refused"));
        snprintf(detail, sizeof detail,
                 "Mplus refused mplus_ident/mplus_secret; polls and deliveries wait%s%s",
                 until ? " until " : "", until ? until : "");
        set_cond(a, name, "mplus_login_refused", refused, detail);
    }
    int64_t oldest = 0;
    if (store_oldest_queued(a->st, &oldest, NULL, 0) == 0) {
        int64_t age_s = oldest > 0 ? (gw_now_ms() - oldest) / 1000 : 0;
        char detail[128];
        snprintf(detail, sizeof detail,
                 "the oldest queued event has waited %lld s (threshold %ld s)", (long long)age_s,
                 a->cfg->alert_oldest_pending_s);
        set_cond(a, "", "oldest_pending",
                 a->cfg->alert_oldest_pending_s > 0 && age_s > a->cfg->alert_oldest_pending_s,
                 detail);
    }
    look_at_dead(a);
    look_at_store(a, inbox);
    /* Messages the period held back go once it allows. */
    int64_t now = gw_now_ms();
    for (struct cond *c = a->conds; c; c = c->next)
        if (c->open && c->pending_message && now - c->sent_ms >= a->cfg->alert_period_s * 1000)
            send_message(a, c, "open");
}

json_t *alerts_open(struct alerts *a)
{
    json_t *out = json_array();
    for (struct cond *c = a->conds; c; c = c->next) {
        if (!c->open)
            continue;
        char since[GW_TS_LEN];
        gw_ts_format(c->since_ms, since, sizeof since);
        json_array_append_new(out,
                              json_pack("{s:s, s:s, s:s, s:s}", "connection", c->conn, "condition",
                                        c->name, "since", since, "detail", c->detail));
    }
    return out;
}
