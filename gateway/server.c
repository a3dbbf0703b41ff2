/*
 * server.c - the ingress and its commit pipeline; the admin listener's
 * requests are answered by admin.c.
 *
 * A webhook request is checked (framing, media type, signature) and turned
 * into events on the loop thread, then handed to the commit thread. That
 * thread commits everything that has queued up since its last commit in one
 * LMDB write transaction (group commit), and hands the requests back to the
 * loop, which replies. So a 200 always follows a completed fsync, and a slow
 * fsync never stalls parsing of the next requests.
 */
#include "server.h"
#include "admin.h"
#include "cdc.h"
#include "jsonout.h"
#include "map.h"
#include "mplus.h"
#include "poller.h"
#include "clients.h"
#include "committer.h"
#include "alerts.h"
#include "dashboard.h"
#include "http.h"
#include "httpd.h"
#include "inbox.h"
#include "ingest.h"
#include "qbo.h"
#include "replay.h"
#include "dispatch.h"
#include "event.h"
#include "handler.h"
#include "log.h"
#include "metrics.h"
#include "report.h"
#include "sig.h"
#include "util.h"
#include "webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum req_kind { REQ_QBO, REQ_MPLUS };

/* One webhook request between check and reply; owned by the loop except
 * while it sits on the commit queue, when the commit thread owns it. A
 * QuickBooks body is parsed on the commit thread, or kept in the inbox and
 * parsed after the reply (a burst); an Mplus one is parsed on the loop, its
 * answer depends on it. */
struct ingest_req {
    struct commit_job job; /* first: the committer hands it back as this */
    struct server *server;
    struct httpd_req *req;
    enum req_kind kind;
    const struct gw_connection *conn; /* Mplus: signs the reply */
    int verdict;                      /* Mplus: enum mplus_verdict */
    const char *body;                 /* QuickBooks: in req's buffer until the reply */
    size_t body_len;
    int64_t received_ms;
    char client[INET6_ADDRSTRLEN]; /* who sent it (client_of), kept with its events */
    bool inboxed;                  /* made durable in the inbox (a burst), events later */
    bool prepared;                 /* in.puts are ready */
    struct ingest_batch in;
};

/* Turning inbox records into events, on the commit thread when it is idle:
 * this many records per transaction. While requests never stop coming, the
 * oldest record may wait this long; then a trickle goes on all the same. */
#define INBOX_TAKE     32
#define INBOX_TRICKLE  8
#define INBOX_MAX_WAIT 30000 /* ms */

struct inbox_note {
    uint64_t id;
    enum metric_result result;
};

struct inbox_job {
    struct commit_job job; /* first */
    struct server *server;
    size_t max;
    long taken;
    uint64_t last; /* seq of the last record taken */
    bool queued;   /* new pending events */
    struct inbox_note *notes;
    size_t nnotes, cap;
    struct store_txn *txn; /* while applying */
};

struct server {
    const struct gw_config *cfg;
    struct store *st;
    struct event_base *base;
    struct httpd *http;
    struct evhttp *admin;
    struct evhttp_bound_socket *admin_sock;
    struct admin *api; /* what the admin listener serves (admin.c) */
    struct event *sigterm, *sigint, *janitor, *retention;
    bool purging; /* a retention pass is under way */
    struct committer *committer;
    struct dispatcher *dispatcher;
    struct cdc *cdc;
    struct poller *poller;
    struct http_client *http_client;
    struct alerts *alerts;
    json_t *live; /* the last live view, for /metrics */
    struct gw_clients clients;
    struct event *status_timer, *drain_timer;
    struct inbox *inbox;         /* burst webhooks, commit thread only once serving */
    struct sig_key *qbo_key;     /* the verifier token, prepared */
    struct sig_key **mplus_keys; /* per connection, same order as the config; may be NULL */
    char *last_status;

    size_t inflight; /* webhook requests between check and reply */
    bool draining;
    int64_t drain_started_ms;
};

/* ---- helpers ---------------------------------------------------------- */

/*
 * Who sent a request, for the logs: the TCP peer, unless that is one of
 * trusted_proxies. Then it is the right-most X-Forwarded-For entry that is
 * not a trusted proxy (the address the outermost trusted proxy saw; entries
 * left of it are the client's own word), and the scheme is the proxy's
 * X-Forwarded-Proto. From any other peer both headers are ignored: anyone
 * can send them.
 */
struct client {
    char ip[INET6_ADDRSTRLEN];
    const char *proto; /* "http" or "https" */
};

static bool is_trusted(const struct gw_config *cfg, const struct gw_ip *ip)
{
    for (size_t i = 0; i < cfg->ntrusted; i++)
        if (memcmp(cfg->trusted[i].b, ip->b, sizeof ip->b) == 0)
            return true;
    return false;
}

/* The last entry of the comma-separated list [list, *end); *end moves to its
 * start. NULL when none is left. */
static const char *list_last(const char *list, const char **end, size_t *len)
{
    const char *e = *end;
    while (e > list && (e[-1] == ',' || e[-1] == ' ' || e[-1] == '\t'))
        e--;
    const char *b = e;
    while (b > list && b[-1] != ',' && b[-1] != ' ' && b[-1] != '\t')
        b--;
    *len = (size_t)(e - b);
    *end = b;
    return b == e ? NULL : b;
}

/* The right-most entry of the last header called name, or NULL. */
static const char *header_last(const struct httpd_req *req, const char *name, size_t *len)
{
    for (size_t i = req->nheaders; i-- > 0;) {
        if (strcasecmp(req->headers[i].name, name) != 0)
            continue;
        const char *end = req->headers[i].value + req->headers[i].value_len;
        return list_last(req->headers[i].value, &end, len);
    }
    return NULL;
}

static void client_of(const struct server *s, const struct httpd_req *req, struct client *out)
{
    struct gw_ip ip;
    httpd_peer(req, out->ip, sizeof out->ip);
    out->proto = "http";
    if (!gw_ip_parse(out->ip, strlen(out->ip), &ip) || !is_trusted(s->cfg, &ip))
        return;
    /* Right to left over every entry of every X-Forwarded-For header (a
     * later header continues the list). Something that is not an address
     * ends the walk at the hop right of it. */
    bool found = false;
    for (size_t i = req->nheaders; i-- > 0 && !found;) {
        const struct httpd_header *h = &req->headers[i];
        if (strcasecmp(h->name, "X-Forwarded-For") != 0)
            continue;
        const char *t, *end = h->value + h->value_len;
        size_t len;
        while (!found && (t = list_last(h->value, &end, &len)) != NULL) {
            if (!gw_ip_parse(t, len, &ip)) {
                found = true;
                break;
            }
            memcpy(out->ip, t, len);
            out->ip[len] = '\0';
            found = !is_trusted(s->cfg, &ip);
        }
    }
    size_t len;
    const char *proto = header_last(req, "X-Forwarded-Proto", &len);
    if (proto != NULL && len == 5 && strncasecmp(proto, "https", 5) == 0)
        out->proto = "https";
}

/* A plain-text reply on the webhook listener; extra: header lines or NULL. */
static void pub_text(struct httpd_req *req, int code, const char *reason, const char *extra,
                     const char *text)
{
    char body[512];
    size_t n = strlen(text);
    if (n > sizeof body - 1)
        n = sizeof body - 1;
    memcpy(body, text, n);
    body[n++] = '\n';
    httpd_reply(req, code, reason, "text/plain; charset=utf-8", extra, body, n);
}

static void ingest_free(struct ingest_req *r)
{
    ingest_batch_free(&r->in);
    free(r);
}

/* ---- replies after commit (loop thread) --------------------------------- */

static enum metric_result put_result(const struct store_put *p)
{
    return p->duplicate             ? MR_DUPLICATE
           : p->state == GW_DEAD    ? MR_MALFORMED
           : p->state == GW_SKIPPED ? MR_SKIPPED
                                    : MR_ACCEPTED;
}

/* Count and log one stored (or duplicate) event of a webhook. */
static void note_event(enum metric_source src, const char *conn, uint64_t id, enum metric_result mr)
{
    metrics_webhook(src, mr);
    if (mr == MR_MALFORMED)
        gw_log(GW_LOG_WARN, conn, id, "malformed webhook body kept as a dead event");
    else if (mr != MR_DUPLICATE)
        gw_log(GW_LOG_DEBUG, conn, id, "event stored");
}

static void send_mplus(struct server *s, struct httpd_req *req, const struct gw_connection *c,
                       int code, const char *ecode, const char *message);

static void reply_committed(struct server *s, struct ingest_req *r)
{
    enum metric_source src = r->kind == REQ_QBO ? MS_QUICKBOOKS : MS_MPLUS;
    if (r->job.status != 0) {
        metrics_webhook(src, MR_UNAVAILABLE);
        if (r->kind == REQ_QBO)
            pub_text(r->req, 503, "Service Unavailable", NULL, "store unavailable, retry later");
        else
            send_mplus(s, r->req, r->conn, 503, "UNAVAILABLE", "store unavailable, retry later");
        return;
    }
    /* Inbox requests are counted when they become events. */
    for (size_t i = 0; !r->inboxed && i < r->in.events.n; i++)
        note_event(src, r->conn ? r->conn->name : NULL, r->in.puts[i].id,
                   put_result(&r->in.puts[i]));
    if (r->kind == REQ_QBO)
        pub_text(r->req, 200, "OK", NULL, "ok");
    else if (r->verdict == MPLUS_MALFORMED)
        send_mplus(s, r->req, r->conn, 400, "INVALID_JSON",
                   "the body is not a JSON event; it was kept for the operator");
    else
        send_mplus(s, r->req, r->conn, 200, NULL, NULL);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg);

static void maybe_finish_drain(struct server *s)
{
    if (!s->draining || s->inflight > 0 || (s->dispatcher && !dispatch_idle(s->dispatcher)) ||
        !poller_idle(s->poller) || !cdc_idle(s->cdc))
        return;
    /* A client that went away never completes its reply: give up on those
     * after the connection timeout, as evhttp itself would. */
    if (httpd_writing(s->http) == 0 || gw_now_ms() - s->drain_started_ms > s->cfg->timeout_s * 1000)
        event_base_loopexit(s->base, NULL);
}

/* Commit thread: a request's events, in the group's transaction. */
static int ingest_apply(struct store_txn *t, struct commit_job *job)
{
    struct ingest_req *r = (struct ingest_req *)job;
    const struct gw_config *cfg = r->server->cfg;
    if (!r->prepared) {
        if (r->kind == REQ_QBO &&
            webhook_parse_qbo(cfg, r->body, r->body_len, r->received_ms, &r->in.events) < 0)
            return STORE_EFAIL;
        batch_set_client(&r->in.events, r->client);
        if (ingest_prepare(&r->in) != 0)
            return STORE_EFAIL;
        r->prepared = true;
    }
    return store_txn_ingest(t, r->in.puts, r->in.events.n);
}

/*
 * An inbox record is a QuickBooks body as it came, or (since the client
 * address is kept with events) CLIENT_MARK, the address, a newline and the
 * body: a JSON body never starts with that byte, so records written before
 * read as they were.
 */
#define CLIENT_MARK '\x01'

/*
 * Commit thread, before a group's transaction: in a burst (more QuickBooks
 * requests than index_inline_max, or older ones still in the inbox, whose
 * order they keep) the QuickBooks bodies go to the inbox, one write and one
 * sync for all of them, and become events after their replies.
 */
static void ingest_before(void *arg, struct commit_job *head, unsigned n)
{
    struct server *s = arg;
    if (n <= (unsigned long)s->cfg->index_inline_max && inbox_pending(s->inbox) == 0)
        return;
    struct inbox_item *items = malloc(n * sizeof *items);
    char **marked = calloc(n, sizeof *marked);
    if (items == NULL || marked == NULL) {
        free(items);
        free(marked);
        return; /* then they become events now */
    }
    size_t k = 0;
    for (struct commit_job *j = head; j; j = j->next) {
        struct ingest_req *r = (struct ingest_req *)j;
        if (j->apply != ingest_apply || r->kind != REQ_QBO)
            continue;
        size_t cl = strlen(r->client);
        char *m = malloc(cl + 2 + r->body_len);
        if (m == NULL) { /* then they all become events now, as above */
            while (k > 0)
                free(marked[--k]);
            free(marked);
            free(items);
            return;
        }
        m[0] = CLIENT_MARK;
        memcpy(m + 1, r->client, cl);
        m[cl + 1] = '\n';
        memcpy(m + cl + 2, r->body, r->body_len);
        marked[k] = m;
        items[k++] = (struct inbox_item){r->received_ms, m, cl + 2 + r->body_len};
    }
    for (struct commit_job *j = head; j; j = j->next) {
        struct ingest_req *r = (struct ingest_req *)j;
        if (j->apply == ingest_apply && r->kind == REQ_QBO) {
            r->inboxed = true;
            j->logged = true;
        }
    }
    char err[GW_ERR_LEN];
    int rc = k ? inbox_append(s->inbox, items, k, err, sizeof err) : 0;
    if (rc != 0)
        log_error("%s", err);
    for (struct commit_job *j = head; k && j; j = j->next)
        if (j->logged)
            j->status = rc == 0 ? 0 : STORE_EFAIL;
    for (size_t i = 0; i < k; i++)
        free(marked[i]);
    free(marked);
    free(items);
}

/* One inbox record to events (commit thread, in the transaction taking it). */
static int inbox_one(const struct inbox_rec *rec, void *arg)
{
    struct inbox_job *d = arg;
    struct ingest_batch in = {0};
    int rc = STORE_EFAIL;
    const char *body = rec->body;
    size_t len = rec->len;
    char client[INET6_ADDRSTRLEN] = "";
    const char *nl = len > 0 && body[0] == CLIENT_MARK ? memchr(body, '\n', len) : NULL;
    if (nl != NULL) {
        size_t cl = (size_t)(nl - body - 1);
        if (cl < sizeof client) {
            memcpy(client, body + 1, cl);
            client[cl] = '\0';
        }
        len -= (size_t)(nl + 1 - body);
        body = nl + 1;
    }
    if (webhook_parse_qbo(d->server->cfg, body, len, rec->received_ms, &in.events) == 0) {
        batch_set_client(&in.events, client);
        if (ingest_prepare(&in) == 0)
            rc = store_txn_ingest(d->txn, in.puts, in.events.n);
    }
    for (size_t i = 0; rc == 0 && i < in.events.n; i++) {
        if (d->nnotes == d->cap) {
            size_t cap = d->cap ? d->cap * 2 : 64;
            struct inbox_note *n = realloc(d->notes, cap * sizeof *n);
            if (n == NULL) {
                rc = STORE_EFAIL;
                break;
            }
            d->notes = n;
            d->cap = cap;
        }
        d->notes[d->nnotes++] = (struct inbox_note){in.puts[i].id, put_result(&in.puts[i])};
        d->queued |= !in.puts[i].duplicate && in.puts[i].state == GW_PENDING;
    }
    ingest_batch_free(&in);
    /* A failure aborts the whole transaction: the records stay for later.
     * STORE_EFAIL would only fail this job, so say it as an LMDB error. */
    return rc == STORE_EFAIL ? ENOMEM : rc;
}

/* The oldest inbox records to events, and how far the inbox is done, in
 * one transaction. It may run again (the map grew): it starts over. */
static int inbox_apply(struct store_txn *t, struct commit_job *job)
{
    struct inbox_job *d = (struct inbox_job *)job;
    d->nnotes = 0;
    d->queued = false;
    d->txn = t;
    int fn_rc = 0;
    d->taken = inbox_read(d->server->inbox, d->max, inbox_one, d, &fn_rc, &d->last);
    if (d->taken < 0)
        return fn_rc != 0 ? fn_rc : EIO; /* an unreadable inbox fails the commit */
    if (d->taken == 0)
        return 0;
    json_t *v = json_integer((json_int_t)d->last);
    int rc = store_txn_meta_put(t, INBOX_DONE_KEY, v);
    json_decref(v);
    return rc;
}

/* Commit thread, once committed: the records are events now. */
static void inbox_after(struct commit_job *job)
{
    struct inbox_job *d = (struct inbox_job *)job;
    if (job->status == 0 && d->taken > 0)
        inbox_done(d->server->inbox, d->last);
}

static void inbox_report(struct server *s, struct inbox_job *d)
{
    if (d->job.status != 0) {
        log_error("webhooks in the inbox could not be turned into events; retrying");
        return;
    }
    for (size_t i = 0; i < d->nnotes; i++)
        note_event(MS_QUICKBOOKS, NULL, d->notes[i].id, d->notes[i].result);
    if (d->queued && s->dispatcher)
        dispatch_kick(s->dispatcher);
}

static void inbox_job_done(struct commit_job *job)
{
    struct inbox_job *d = (struct inbox_job *)job;
    inbox_report(d->server, d);
    free(d->notes);
    free(d);
}

/* The committer's idle work: the oldest inbox records (commit thread). */
static struct commit_job *inbox_idle(void *arg, bool busy)
{
    struct server *s = arg;
    if (inbox_pending(s->inbox) == 0 ||
        (busy && gw_now_ms() - inbox_oldest_ms(s->inbox) < INBOX_MAX_WAIT))
        return NULL;
    struct inbox_job *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->server = s;
    d->max = busy ? INBOX_TRICKLE : INBOX_TAKE;
    d->job.apply = inbox_apply;
    d->job.after = inbox_after;
    d->job.done = inbox_job_done;
    return &d->job;
}

static int inbox_txn(struct store_txn *t, void *arg)
{
    return inbox_apply(t, arg);
}

/* At start: open the inbox; what the last run accepted into it becomes
 * events before anything else is accepted. */
static int inbox_start(struct server *s)
{
    char dir[PATH_MAX], err[GW_ERR_LEN];
    snprintf(dir, sizeof dir, "%s/inbox", s->cfg->storage_path);
    json_t *v = NULL;
    uint64_t done = 0;
    int rc = store_meta_get(s->st, INBOX_DONE_KEY, &v, err, sizeof err);
    if (rc == 0 && json_is_integer(v) && json_integer_value(v) > 0)
        done = (uint64_t)json_integer_value(v);
    json_decref(v);
    if ((rc != 0 && rc != STORE_ENOTFOUND) ||
        inbox_open(dir, done, 0, &s->inbox, err, sizeof err)) {
        log_error("cannot open the inbox: %s", err);
        return -1;
    }
    if (inbox_pending(s->inbox) == 0)
        return 0;
    log_info("turning %llu webhooks accepted before the last stop into events",
             (unsigned long long)inbox_pending(s->inbox));
    while (inbox_pending(s->inbox) > 0) {
        struct inbox_job d = {.server = s, .max = INBOX_TAKE};
        rc = store_write(s->st, inbox_txn, &d.job, err, sizeof err);
        d.job.status = rc;
        inbox_after(&d.job);
        inbox_report(s, &d);
        free(d.notes);
        if (rc != 0 || d.taken <= 0) {
            log_error("cannot turn inbox records into events: %s",
                      rc != 0 ? err : "the inbox cannot be read");
            return -1;
        }
    }
    return 0;
}

static void ingest_done(struct commit_job *job)
{
    struct ingest_req *r = (struct ingest_req *)job;
    struct server *s = r->server;
    reply_committed(s, r);
    bool queued = ingest_new_pending(&r->in) > 0;
    /* A till sale was completed: its receipt is ready to be polled now. */
    if (queued && r->kind == REQ_MPLUS && s->poller && !s->draining)
        poller_nudge(s->poller, r->conn);
    ingest_free(r);
    s->inflight--;
    if (queued && s->dispatcher)
        dispatch_kick(s->dispatcher);
    maybe_finish_drain(s);
}

/* Queue the request for the commit thread; consumes r. */
static void submit(struct server *s, struct ingest_req *r)
{
    s->inflight++;
    r->server = s;
    r->job.apply = ingest_apply;
    r->job.done = ingest_done;
    committer_submit(s->committer, &r->job);
}

/* ---- QuickBooks -------------------------------------------------------- */

static void handle_qbo(struct server *s, struct httpd_req *req)
{
    struct client from;
    if (req->method != HTTPD_POST) {
        pub_text(req, 405, "Method Not Allowed", "Allow: POST\r\n", "use POST");
        return;
    }
    const char *ct = httpd_header(req, "Content-Type");
    if (!gw_media_type_is(ct, "application/json") &&
        !gw_media_type_is(ct, "application/cloudevents+json")) {
        metrics_webhook(MS_QUICKBOOKS, MR_REJECTED);
        pub_text(req, 415, "Unsupported Media Type", NULL,
                 "expected Content-Type application/json or application/cloudevents+json");
        return;
    }
    size_t len = req->body_len;
    const char *body = req->body;
    const char *sig = httpd_header(req, "intuit-signature");
    if (s->qbo_key == NULL || !sig_key_verify(s->qbo_key, body, len, sig)) {
        metrics_webhook(MS_QUICKBOOKS, MR_UNAUTHORIZED);
        client_of(s, req, &from);
        log_warn("quickbooks webhook from %s over %s rejected: %s intuit-signature", from.ip,
                 from.proto, sig ? "bad" : "missing");
        pub_text(req, 401, "Unauthorized", NULL,
                 sig ? "bad intuit-signature" : "missing intuit-signature");
        return;
    }
    client_of(s, req, &from);
    log_debug("quickbooks webhook from %s over %s: %zu bytes, signature good", from.ip, from.proto,
              len);
    if (s->draining) {
        pub_text(req, 503, "Service Unavailable", NULL, "shutting down, retry later");
        return;
    }
    struct ingest_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        pub_text(req, 503, "Service Unavailable", NULL, "out of memory, retry later");
        return;
    }
    r->req = req;
    r->kind = REQ_QBO;
    r->body = body;
    r->body_len = len;
    r->received_ms = gw_now_ms();
    gw_strlcpy(r->client, from.ip, sizeof r->client);
    submit(s, r);
}

/* ---- MplusKASSA --------------------------------------------------------- */

/* Reply to a till callback; the body is signed when the connection has a secret. */
static void send_mplus(struct server *s, struct httpd_req *req, const struct gw_connection *c,
                       int code, const char *ecode, const char *message)
{
    json_t *body = ecode ? json_pack("{s:{s:s, s:s}}", "error", "code", ecode, "message", message)
                         : json_object();
    char *text = gw_json_text(body, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    json_decref(body);
    char extra[GW_SIG_B64_LEN + 32] = "";
    if (c != NULL && c->mplus_webhook_key_len > 0 && text != NULL) {
        char sig[GW_SIG_B64_LEN];
        sig_key_sign(s->mplus_keys[c - s->cfg->conns], text, strlen(text), sig);
        snprintf(extra, sizeof extra, "X-Mplus-Signature: %s\r\n", sig);
    }
    const char *reason = code == 200   ? "OK"
                         : code == 400 ? "Bad Request"
                         : code == 404 ? "Not Found"
                                       : "Service Unavailable";
    httpd_reply(req, code, reason, "application/json", extra[0] ? extra : NULL, text,
                text ? strlen(text) : 0);
    free(text);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static void handle_mplus(struct server *s, struct httpd_req *req, const char *rest)
{
    const char *slash = strchr(rest, '/');
    char cname[65], ename[65];
    size_t cn = slash ? (size_t)(slash - rest) : 0;
    size_t en = slash ? strlen(slash + 1) : 0;
    if (!name_ok(rest, cn) || !name_ok(slash + 1, en)) {
        pub_text(req, 404, "Not Found", NULL, "expected /webhooks/mplus/{connection}/{event}");
        return;
    }
    memcpy(cname, rest, cn);
    cname[cn] = '\0';
    memcpy(ename, slash + 1, en);
    ename[en] = '\0';
    const struct gw_connection *c = config_connection(s->cfg, cname);
    if (c == NULL) {
        metrics_webhook(MS_MPLUS, MR_REJECTED);
        send_mplus(s, req, NULL, 404, "UNKNOWN_CONNECTION", "no connection of that name");
        return;
    }
    if (req->method != HTTPD_POST) {
        pub_text(req, 405, "Method Not Allowed", "Allow: POST\r\n", "use POST");
        return;
    }
    const char *sig = httpd_header(req, "X-Mplus-Signature");
    size_t len = req->body_len;
    const char *body = req->body;
    struct client from;
    client_of(s, req, &from);
    if (sig == NULL || c->mplus_webhook_key_len == 0 ||
        !sig_key_verify(s->mplus_keys[c - s->cfg->conns], body, len, sig)) {
        metrics_webhook(MS_MPLUS, MR_UNAUTHORIZED);
        gw_log(GW_LOG_WARN, c->name, 0, "mplus callback from %s over %s rejected: %s", from.ip,
               from.proto,
               sig == NULL                     ? "no X-Mplus-Signature"
               : c->mplus_webhook_key_len == 0 ? "no mplus_webhook_secret configured"
                                               : "bad X-Mplus-Signature");
        if (sig == NULL)
            send_mplus(s, req, c, 400, "NO_SIGNATURE", "the X-Mplus-Signature header is missing");
        else
            send_mplus(s, req, c, 400, "INVALID_SIGNATURE",
                       "the X-Mplus-Signature does not match the body");
        return;
    }
    if (c->mplus_subscription_id != NULL && c->mplus_subscription_id[0] != '\0') {
        const char *sub = httpd_header(req, "X-Mplus-Subscription-Id");
        if (sub == NULL || strcmp(sub, c->mplus_subscription_id) != 0) {
            metrics_webhook(MS_MPLUS, MR_REJECTED);
            send_mplus(s, req, c, 400, sub ? "INVALID_SUBSCRIPTION_ID" : "NO_SUBSCRIPTION_ID",
                       "the X-Mplus-Subscription-Id does not match this connection");
            return;
        }
    }
    gw_log(GW_LOG_DEBUG, c->name, 0, "mplus callback %s from %s over %s: %zu bytes, signature good",
           ename, from.ip, from.proto, len);
    const char *ct = httpd_header(req, "Content-Type");
    if (!gw_media_type_is(ct, "application/json")) {
        metrics_webhook(MS_MPLUS, MR_REJECTED);
        send_mplus(s, req, c, 400, ct ? "INVALID_CONTENT_TYPE" : "NO_CONTENT_TYPE",
                   "expected Content-Type application/json");
        return;
    }
    if (s->draining) {
        send_mplus(s, req, c, 503, "UNAVAILABLE", "shutting down, retry later");
        return;
    }
    struct ingest_req *r = calloc(1, sizeof *r);
    int verdict = r ? webhook_parse_mplus(c, ename, body, len, gw_now_ms(), &r->in.events) : -1;
    if (verdict < 0) {
        if (r)
            ingest_free(r);
        send_mplus(s, req, c, 503, "UNAVAILABLE", "out of memory, retry later");
        return;
    }
    if (verdict == MPLUS_IGNORED) {
        metrics_webhook(MS_MPLUS, MR_IGNORED);
        ingest_free(r);
        send_mplus(s, req, c, 200, NULL, NULL);
        return;
    }
    r->req = req;
    r->kind = REQ_MPLUS;
    r->conn = c;
    r->verdict = verdict;
    gw_strlcpy(r->client, from.ip, sizeof r->client);
    batch_set_client(&r->in.events, r->client);
    submit(s, r);
}

/* ---- routing -------------------------------------------------------------- */

static void public_cb(struct httpd_req *req, void *arg)
{
    struct server *s = arg;
    const char *path = req->path;
    if (strcmp(path, "/webhooks/quickbooks") == 0)
        handle_qbo(s, req);
    else if (strncmp(path, "/webhooks/mplus/", 16) == 0)
        handle_mplus(s, req, path + 16);
    else if (strcmp(path, "/healthz") == 0)
        pub_text(req, 200, "OK", NULL, "ok");
    else
        pub_text(req, 404, "Not Found", NULL, "not found");
}

static void admin_cb(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    admin_handle(s->api, req);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    if (s->draining)
        return;
    log_info("received %s: no new connections; finishing %zu requests in flight",
             sig == SIGTERM ? "SIGTERM" : "SIGINT", s->inflight);
    s->draining = true;
    s->drain_started_ms = gw_now_ms();
    dispatch_drain(s->dispatcher);
    qbo_drain(s->clients.qbo);
    poller_drain(s->poller);
    cdc_drain(s->cdc);
    /* Handlers end on their own time (an HTTP answer or its timeout): look again. */
    s->drain_timer = event_new(s->base, -1, EV_PERSIST, on_drain_tick, s);
    struct timeval tv = {0, 100000};
    event_add(s->drain_timer, &tv);
    httpd_stop(s->http);
    if (s->admin_sock) {
        evhttp_del_accept_socket(s->admin, s->admin_sock);
        s->admin_sock = NULL;
    }
    maybe_finish_drain(s);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_finish_drain(arg);
}

static void on_janitor(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    int dead = 0;
    if (store_reader_check(s->st, &dead) == 0 && dead > 0)
        log_warn("cleared %d stale store reader slots", dead);
}

/*
 * The retention janitor: every janitor_interval_s, what is past retention
 * goes (store_txn_purge: finished events with their payloads, the payloads
 * and call bodies of dead ones unless keep_dead_payloads), in transactions
 * of PURGE_VISIT events each, queued behind ingest on the committer, so a
 * long pass never holds up a webhook's answer for long.
 */
#define PURGE_VISIT 256

struct purge_job {
    struct commit_job job; /* first */
    struct server *server;
    struct purge_opts opts;
    struct purge_result res;
    uint64_t events, payloads, stripped; /* the pass so far */
};

static int purge_apply(struct store_txn *t, struct commit_job *job)
{
    struct purge_job *p = (struct purge_job *)job;
    return store_txn_purge(t, &p->opts, &p->res);
}

static void purge_done(struct commit_job *job)
{
    struct purge_job *p = (struct purge_job *)job;
    struct server *s = p->server;
    if (job->status == 0) {
        p->events += p->res.events;
        p->payloads += p->res.payloads;
        p->stripped += p->res.dead_stripped;
        if (p->res.next_id != 0 && !s->draining) {
            p->opts.start_id = p->res.next_id;
            memset(&p->res, 0, sizeof p->res);
            memset(&p->job, 0, sizeof p->job);
            p->job.apply = purge_apply;
            p->job.done = purge_done;
            committer_submit(s->committer, &p->job);
            return;
        }
        if (p->events || p->payloads || p->stripped)
            log_info("retention: dropped %llu finished events and %llu payloads, and the bodies "
                     "of %llu dead events",
                     (unsigned long long)p->events, (unsigned long long)p->payloads,
                     (unsigned long long)p->stripped);
    } else {
        log_error("retention: the purge failed (status %d); it tries again next time", job->status);
    }
    s->purging = false;
    free(p);
}

static void on_retention(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    if (s->purging || s->draining)
        return;
    struct purge_job *p = calloc(1, sizeof *p);
    if (p == NULL)
        return;
    const struct gw_config *cfg = s->cfg;
    int64_t keep_ms = cfg->retention_s > 0 ? (int64_t)cfg->retention_s * 1000
                                           : (int64_t)cfg->retention_days * 86400000;
    p->server = s;
    p->opts = (struct purge_opts){gw_now_ms() - keep_ms, cfg->keep_dead_payloads, 0, PURGE_VISIT};
    p->job.apply = purge_apply;
    p->job.done = purge_done;
    s->purging = true;
    committer_submit(s->committer, &p->job);
}

static void reenable_listener(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

/* Stop accepting for a while when out of file descriptors (libevent#71). */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_error("accept failed: %s; pausing the listener for 1 s", evutil_socket_error_to_string(e));
    evconnlistener_disable(l);
    struct timeval tv = {1, 0};
    event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, reenable_listener, l, &tv);
}

static struct evhttp *make_http(struct server *s, const char *addr,
                                void (*cb)(struct evhttp_request *, void *),
                                struct evhttp_bound_socket **sock)
{
    char host[256];
    unsigned short port;
    if (config_parse_addr(addr, host, sizeof host, &port) < 0)
        return NULL;
    struct evhttp *h = evhttp_new(s->base);
    evhttp_set_max_body_size(h, (ev_ssize_t)s->cfg->max_body_bytes);
    evhttp_set_max_headers_size(h, (ev_ssize_t)s->cfg->max_header_bytes);
    evhttp_set_timeout(h, (int)s->cfg->timeout_s);
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_flags(h, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_gencb(h, cb, s);
    *sock = evhttp_bind_socket_with_handle(h, host, port);
    if (*sock == NULL) {
        log_error("cannot listen on %s: %s", addr, strerror(errno));
        evhttp_free(h);
        return NULL;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(*sock), on_accept_error);
    /* Replies are small and written whole: send them at once, never held
     * back waiting for an ACK (Nagle meeting a delayed ACK costs 40 ms).
     * Accepted connections inherit the option from the listening socket. */
    int one = 1;
    setsockopt(evhttp_bound_socket_get_fd(*sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    log_info("listening on %s", addr);
    return h;
}

/* Gauges of the daemon's live view: per connection, the open alerts, the
 * inbox and the store. */
/* The daemon's live view of each connection, kept in the store so `gateway
 * status` in another process shows it too. Written when it changes. */
struct status_job {
    struct commit_job job;
    json_t *snapshot;
};

static int status_apply(struct store_txn *t, struct commit_job *job)
{
    return store_txn_meta_put(t, "daemon.status", ((struct status_job *)job)->snapshot);
}

static void status_done(struct commit_job *job)
{
    json_decref(((struct status_job *)job)->snapshot);
    free(job);
}

static json_t *live_status(struct server *s)
{
    json_t *conns = json_object();
    for (size_t i = 0; i < s->cfg->nconns; i++) {
        const struct gw_connection *c = &s->cfg->conns[i];
        json_t *o = dispatch_status(s->dispatcher, c);
        json_t *q = qbo_status(s->clients.qbo, c);
        json_object_update(o, q);
        json_decref(q);
        q = poller_status(s->poller, c);
        json_object_update(o, q);
        json_decref(q);
        json_object_set_new(conns, c->name, o);
    }
    return conns;
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *s = arg;
    json_t *conns = live_status(s);
    if (s->alerts)
        alerts_update(s->alerts, conns, inbox_pending(s->inbox));
    json_decref(s->live);
    s->live = json_incref(conns);
    json_t *snap = json_pack("{s:o, s:i}", "connections", conns, "pid", (int)getpid());
    if (s->alerts)
        json_object_set_new(snap, "alerts", alerts_open(s->alerts));
    char *text = gw_json_text(snap, JSON_COMPACT | JSON_SORT_KEYS, NULL);
    bool changed = text && (s->last_status == NULL || strcmp(text, s->last_status) != 0);
    if (changed) {
        free(s->last_status);
        s->last_status = text;
        struct status_job *j = calloc(1, sizeof *j);
        j->snapshot = snap;
        j->job.apply = status_apply;
        j->job.done = status_done;
        committer_submit(s->committer, &j->job);
    } else {
        free(text);
        json_decref(snap);
    }
}

int server_run(const struct gw_config *cfg, struct store *st, const struct flow *extra_flows)
{
    struct server srv = {0}, *s = &srv;
    s->cfg = cfg;
    s->st = st;
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    /* The changelist folds the add/del pairs of one loop turn into one
     * epoll_ctl per socket: fewer syscalls per request. */
    struct event_config *ecfg = event_config_new();
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    s->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (s->base == NULL)
        return -1;
    int rc = -1;
    if (inbox_start(s) != 0)
        goto out;
    s->committer = committer_start(s->base, st, cfg->commit_batch);
    if (s->committer == NULL) {
        log_error("cannot start the commit thread");
        goto out;
    }
    s->http_client = http_client_new(s->base, 0);
    s->alerts = alerts_new(s->base, cfg, s->http_client, st);
    s->clients.qbo = qbo_new(s->base, cfg, st, s->committer, s->http_client);
    s->clients.mplus = mplus_new(s->base, cfg, s->http_client);
    s->clients.made = lookup_cache_new();
    s->clients.body_max = cfg->activity_body_max;
    char merr[1024];
    if (map_open(cfg, cfg->mapping_dir, &s->clients.mapper, merr, sizeof merr) != 0) {
        log_error("cannot start: %s", merr);
        rc = -2;
        goto out;
    }
    bool together;
    size_t nprog = map_programs(s->clients.mapper, &together);
    log_debug("mappings: %zu program%s%s", nprog, nprog == 1 ? "" : "s",
              nprog > 1 ? (together ? ", compiled as one" : ", compiled one by one") : "");
    s->dispatcher = dispatch_new(s->base, cfg, st, s->committer, &s->clients, extra_flows);
    s->cdc = cdc_new(s->base, cfg, s->committer, s->clients.qbo, st, s->dispatcher, extra_flows);
    s->poller = poller_new(s->base, cfg, s->committer, st, s->clients.mplus, s->dispatcher);
    committer_set_before(s->committer, ingest_before, s);
    committer_set_idle(s->committer, inbox_idle, s, cfg->inbox_quiet_ms / 1000.0);
    if (!cfg->dispatch_enabled) {
        dispatch_drain(s->dispatcher);
        log_warn("[dispatch] enabled = false: events are stored and wait; nothing is delivered");
    }
    char host[256];
    unsigned short port;
    struct httpd_limits lim = {(size_t)cfg->max_header_bytes, (size_t)cfg->max_body_bytes,
                               (int)cfg->timeout_s};
    if (config_parse_addr(cfg->listen, host, sizeof host, &port) < 0 ||
        (s->http = httpd_new(s->base, host, port, &lim, public_cb, s)) == NULL) {
        log_error("cannot listen on %s: %s", cfg->listen, strerror(errno));
        goto out;
    }
    log_info("listening on %s", cfg->listen);
    if (cfg->admin_listen[0] != '\0') {
        struct admin_deps deps = {.cfg = cfg,
                                  .st = st,
                                  .clients = &s->clients,
                                  .dispatcher = s->dispatcher,
                                  .committer = s->committer,
                                  .inbox = &s->inbox,
                                  .alerts = &s->alerts,
                                  .live = &s->live};
        s->api = admin_new(&deps);
        s->admin = s->api ? make_http(s, cfg->admin_listen, admin_cb, &s->admin_sock) : NULL;
        if (s->admin == NULL)
            goto out;
    }
    if (cfg->verifier_token == NULL || cfg->verifier_token[0] == '\0')
        log_warn("[quickbooks] verifier_token is empty: every QuickBooks webhook will get 401");
    else
        s->qbo_key = sig_key_new(cfg->verifier_token, strlen(cfg->verifier_token));
    s->mplus_keys = calloc(cfg->nconns ? cfg->nconns : 1, sizeof *s->mplus_keys);
    for (size_t i = 0; i < cfg->nconns; i++)
        if (cfg->conns[i].mplus_webhook_key_len > 0)
            s->mplus_keys[i] =
                sig_key_new(cfg->conns[i].mplus_webhook_key, cfg->conns[i].mplus_webhook_key_len);
    s->sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    evsignal_add(s->sigterm, NULL);
    evsignal_add(s->sigint, NULL);
    s->janitor = event_new(s->base, -1, EV_PERSIST, on_janitor, s);
    struct timeval jt = {60, 0};
    event_add(s->janitor, &jt);
    s->retention = event_new(s->base, -1, EV_PERSIST, on_retention, s);
    struct timeval rt = {cfg->janitor_interval_s, 0};
    event_add(s->retention, &rt);
    s->status_timer = event_new(s->base, -1, EV_PERSIST, on_status_timer, s);
    struct timeval st_tv = {1, 0};
    event_add(s->status_timer, &st_tv);
    log_info("gateway serving; store at %s", cfg->storage_path);

    event_base_dispatch(s->base);
    log_info("gateway stopped");
    rc = 0;
out:
    /* Order matters: nothing may submit commit jobs or HTTP requests once
     * its consumer is gone. */
    /* Freeing the signal events restores the default action: a second
     * SIGTERM during teardown must not kill the process mid-way. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (s->sigterm)
        event_free(s->sigterm);
    if (s->sigint)
        event_free(s->sigint);
    if (s->janitor)
        event_free(s->janitor);
    if (s->retention)
        event_free(s->retention);
    if (s->status_timer)
        event_free(s->status_timer);
    if (s->drain_timer)
        event_free(s->drain_timer);
    httpd_free(s->http);
    if (s->admin)
        evhttp_free(s->admin);
    admin_free(s->api);
    if (s->dispatcher)
        dispatch_drain(s->dispatcher);
    committer_stop(s->committer);
    inbox_close(s->inbox);
    /* Transfers still running are dropped first; then their owners go. */
    http_client_free(s->http_client);
    alerts_free(s->alerts);
    json_decref(s->live);
    poller_free(s->poller);
    cdc_free(s->cdc);
    dispatch_free(s->dispatcher);
    qbo_free(s->clients.qbo);
    mplus_free(s->clients.mplus);
    map_close(s->clients.mapper);
    lookup_cache_free(s->clients.made);
    free(s->last_status);
    sig_key_free(s->qbo_key);
    for (size_t i = 0; s->mplus_keys && i < cfg->nconns; i++)
        sig_key_free(s->mplus_keys[i]);
    free(s->mplus_keys);
    event_base_free(s->base);
    return rc;
}
