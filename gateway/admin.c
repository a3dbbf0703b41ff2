/*
 * admin.c - the admin API and the dashboard's files, served on the admin
 * listener: status, events, one event, replay, Prometheus metrics and the
 * QuickBooks connect flow, each behind the admin token (but the dashboard's
 * files, /healthz and the OAuth callback). The listener itself is
 * server.c's: it hands every request here, so the commands stay out of the
 * networking.
 */
#include "admin.h"
#include "alerts.h"
#include "clients.h"
#include "committer.h"
#include "dashboard.h"
#include "dispatch.h"
#include "event.h"
#include "inbox.h"
#include "jsonout.h"
#include "metrics.h"
#include "qbo.h"
#include "reconcile.h"
#include "replay.h"
#include "report.h"
#include "sig.h"
#include "store.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct admin {
    struct admin_deps d;
};

struct admin *admin_new(const struct admin_deps *d)
{
    struct admin *a = calloc(1, sizeof *a);
    if (a != NULL)
        a->d = *d;
    return a;
}

void admin_free(struct admin *a)
{
    free(a);
}

static void metrics_live(struct admin *s, FILE *f);

/* ---- replies ------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evbuffer_add(b, "\n", 1);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

/* Send data (may be NULL) as the body, of media type ctype. */
static void reply_bytes(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                        const char *data, size_t len)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    struct evbuffer *b = evbuffer_new();
    if (data != NULL)
        evbuffer_add(b, data, len);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
    char *text = gw_json_text(body, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    reply_bytes(req, code, reason, "application/json", text, text ? strlen(text) : 0);
    free(text);
}

/* ---- the API ------------------------------------------------------------- */

static bool admin_authorised(struct admin *s, struct evhttp_request *req)
{
    const char *tok = s->d.cfg->admin_token;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (tok == NULL || tok[0] == '\0' || auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
        return false;
    return sig_token_equal(auth + 7, tok);
}

static const char *query_param(struct evhttp_request *req, struct evkeyvalq *q, const char *name)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (TAILQ_EMPTY(q) && query != NULL)
        evhttp_parse_query_str(query, q);
    return evhttp_find_header(q, name);
}

/* A yes/no query parameter: present and not "0" or "false". */
static bool flag(struct evhttp_request *req, struct evkeyvalq *q, const char *name)
{
    const char *v = query_param(req, q, name);
    return v && strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
}

static void oauth_callback_done(const struct qbo_result *r, void *arg)
{
    struct evhttp_request *req = arg;
    if (r->kind == QBO_OK)
        reply_text(req, 200, "OK", "QuickBooks is connected. You can close this page.");
    else
        reply_text(req, 502, "Bad Gateway", r->error);
}

/* Intuit sends the browser back here: no bearer token, but the state we
 * issued (single use, expiring) vouches for the request. */
static void handle_oauth_callback(struct admin *s, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *err = query_param(req, &q, "error");
    if (err != NULL) {
        reply_text(req, 400, "Bad Request", "QuickBooks did not authorise the connection");
    } else {
        int rc = qbo_authorize_callback(s->d.clients->qbo, query_param(req, &q, "state"),
                                        query_param(req, &q, "code"),
                                        query_param(req, &q, "realmId"), oauth_callback_done, req);
        if (rc == -1)
            reply_text(req, 400, "Bad Request",
                       "unknown or expired state: start again from /oauth/quickbooks/connect");
        else if (rc == -2)
            reply_text(req, 400, "Bad Request",
                       "the company (realmId) is not the one configured for this connection");
        else if (rc != 0)
            reply_text(req, 503, "Service Unavailable", "could not reach the token endpoint");
    }
    evhttp_clear_headers(&q);
}

static void reply_replay(struct admin *s, struct evhttp_request *req, const struct replay_filter *f)
{
    char err[GW_ERR_LEN];
    json_t *ids;
    int rc = replay_run(s->d.st, f, &ids, err, sizeof err);
    if (rc == STORE_ENOTFOUND) {
        reply_text(req, 404, "Not Found", "no such event");
        return;
    }
    if (rc != 0) {
        reply_text(req, 409, "Conflict", err);
        return;
    }
    json_t *o = json_pack("{s:o, s:b}", f->dry_run ? "would_replay" : "replayed", ids, "dry_run",
                          f->dry_run);
    reply_json(req, 200, "OK", o);
    json_decref(o);
    if (!f->dry_run)
        dispatch_kick(s->d.dispatcher);
}

/* A report as JSON (taken), or a 503 with err when there is none. */
static void reply_report(struct evhttp_request *req, json_t *o, const char *err)
{
    if (o == NULL) {
        reply_text(req, 503, "Service Unavailable", err);
        return;
    }
    reply_json(req, 200, "OK", o);
    json_decref(o);
}

/* A request answered later (reconcile): forgotten when its client goes away first. */
struct later {
    struct evhttp_request *req;
    bool gone;
};

static void later_gone(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    ((struct later *)arg)->gone = true;
}

static void reconciled(json_t *report, const char *error, void *arg)
{
    struct later *l = arg;
    if (!l->gone) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(l->req), NULL, NULL);
        if (report != NULL)
            reply_json(l->req, 200, "OK", report);
        else
            reply_text(l->req, 502, "Bad Gateway", error);
    }
    free(l);
}

/* Backfill: its progress as lines, then the report as one line of JSON,
 * in one chunked answer. */
struct backfill_req {
    struct later l; /* first */
    struct backfill_env env;
};

static void backfill_line(const char *line, void *arg)
{
    struct later *l = arg;
    if (l->gone)
        return;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "%s\n", line);
    evhttp_send_reply_chunk(l->req, b);
    evbuffer_free(b);
}

static void backfilled(json_t *report, const char *error, void *arg)
{
    struct later *l = arg;
    if (!l->gone) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(l->req), NULL, NULL);
        char *text = report ? gw_json_text(report, JSON_COMPACT, NULL) : NULL;
        struct evbuffer *b = evbuffer_new();
        if (text != NULL)
            evbuffer_add_printf(b, "%s\n", text);
        else
            evbuffer_add_printf(b, "error: %s\n", error ? error : "out of memory");
        evhttp_send_reply_chunk(l->req, b);
        evbuffer_free(b);
        evhttp_send_reply_end(l->req);
        free(text);
    }
    free(l);
}

/* A financial day, YYYY-MM-DD. */
static bool day_ok(const char *s)
{
    return gw_day_parse(s) > 0;
}

/* GET /api/reconcile?connection=C&from=YYYY-MM-DD&to=YYYY-MM-DD, or
 * POST /api/backfill?connection=C&from=...&to=...[&dry_run=1] */
static void handle_reconcile(struct admin *s, struct evhttp_request *req, bool fill)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *name = query_param(req, &q, "connection");
    const char *from = query_param(req, &q, "from");
    const char *to = query_param(req, &q, "to");
    const struct gw_connection *c = name ? config_connection(s->d.cfg, name) : NULL;
    struct later *l = NULL;
    if (c == NULL) {
        reply_text(req, 404, "Not Found", "reconcile?connection=NAME names no connection");
    } else if (!day_ok(from) || !day_ok(to) || strcmp(from, to) > 0) {
        reply_text(req, 400, "Bad Request", "from and to: financial days YYYY-MM-DD, from <= to");
    } else if ((l = calloc(1, fill ? sizeof(struct backfill_req) : sizeof *l)) == NULL) {
        reply_text(req, 503, "Service Unavailable", "out of memory");
    } else if (fill) {
        struct backfill_req *b = (struct backfill_req *)l;
        bool dry = flag(req, &q, "dry_run");
        b->env = (struct backfill_env){s->d.committer, s->d.dispatcher, backfill_line};
        l->req = req;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; charset=utf-8");
        evhttp_send_reply_start(req, 200, "OK");
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), later_gone, l);
        if (backfill_start(s->d.clients, &b->env, c, from, to, dry, backfilled, l) != 0)
            backfilled(NULL, "out of memory", l);
    } else {
        l->req = req;
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), later_gone, l);
        if (reconcile_start(s->d.clients, c, from, to, reconciled, l) != 0) {
            evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
            free(l);
            reply_text(req, 503, "Service Unavailable", "out of memory");
        }
    }
    evhttp_clear_headers(&q);
}

/* POST /api/unpost?connection=C&(from=...&to=...|event=ID)[&dry_run=1][&force=1] */
struct unpost_req {
    struct later l; /* first */
    struct unpost_env env;
};

static void handle_unpost(struct admin *s, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *name = query_param(req, &q, "connection");
    const char *from = query_param(req, &q, "from");
    const char *to = query_param(req, &q, "to");
    const char *event = query_param(req, &q, "event");
    const struct gw_connection *c = name ? config_connection(s->d.cfg, name) : NULL;
    struct unpost_req *u = calloc(1, sizeof *u);
    char day[16] = "", why[300] = "";
    uint64_t id = 0;
    json_t *rec = NULL, *entry = NULL;
    if (u == NULL) {
        snprintf(why, sizeof why, "out of memory");
    } else if (c == NULL) {
        snprintf(why, sizeof why, "unpost?connection=NAME names no connection");
    } else if (event != NULL) {
        /* One event's document: the id map names it. */
        const char *entity, *eid;
        if (!gw_strtou64(event, &id) || store_get_event(s->d.st, id, &rec, NULL, 0) != 0)
            snprintf(why, sizeof why, "no event %s", event);
        else if (strcmp(json_string_value(json_object_get(rec, "connection")) ?: "", c->name) != 0)
            snprintf(why, sizeof why, "event %s is not of connection %s", event, c->name);
        else if ((entity = json_string_value(json_object_get(rec, "entity"))) == NULL ||
                 (eid = json_string_value(json_object_get(rec, "entity_id"))) == NULL)
            snprintf(why, sizeof why, "event %s names no document", event);
        else if (strcmp(entity, "summary") == 0 && strchr(eid, '/') != NULL) {
            gw_strlcpy(day, strchr(eid, '/') + 1, sizeof day);
            snprintf(u->env.only_prefix, sizeof u->env.only_prefix, "MPLUS-%.*s-",
                     (int)strcspn(eid, "/"), eid);
            snprintf(u->env.only_entity, sizeof u->env.only_entity, "JournalEntry");
            from = to = day;
        } else {
            char key[300];
            snprintf(key, sizeof key, "idmap.%s.%s.%s", c->name, entity, eid);
            const char *e2, *i2;
            if (store_meta_get(s->d.st, key, &entry, NULL, 0) != 0 ||
                (e2 = json_string_value(json_object_get(entry, "entity"))) == NULL ||
                (i2 = json_string_value(json_object_get(entry, "id"))) == NULL)
                snprintf(why, sizeof why, "event %s: its %s is not booked", event, entity);
            else {
                gw_strlcpy(u->env.only_entity, e2, sizeof u->env.only_entity);
                gw_strlcpy(u->env.only_id, i2, sizeof u->env.only_id);
                from = to = "";
            }
        }
    } else if (!day_ok(from) || !day_ok(to) || strcmp(from, to) > 0) {
        snprintf(why, sizeof why, "from and to: financial days YYYY-MM-DD, from <= to; or event");
    }
    json_decref(rec);
    json_decref(entry);
    if (why[0] != '\0') {
        free(u);
        bool missing = strstr(why, "no event") || strstr(why, "names no");
        reply_text(req, missing ? 404 : 400, missing ? "Not Found" : "Bad Request", why);
        evhttp_clear_headers(&q);
        return;
    }
    u->env.cm = s->d.committer;
    u->env.st = s->d.st;
    u->env.force = flag(req, &q, "force");
    u->env.progress = backfill_line;
    u->l.req = req;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), later_gone, &u->l);
    if (unpost_start(s->d.clients, &u->env, c, from, to, flag(req, &q, "dry_run"), backfilled,
                     &u->l) != 0)
        backfilled(NULL, "could not start", &u->l);
    evhttp_clear_headers(&q);
}

/* POST /api/forget?email=ADDR[&dry_run=1]: on the commit thread, in one
 * write transaction, then the store compacted (after the commit). */
struct forget_job {
    struct commit_job job; /* first */
    struct later *l;
    struct store *st;
    struct dispatcher *dispatcher;
    char address[320];
    bool dry_run, compacted;
    struct forget_result res;
    char err[GW_ERR_LEN];
};

static int forget_apply(struct store_txn *t, struct commit_job *job)
{
    struct forget_job *f = (struct forget_job *)job;
    return store_txn_forget(t, f->address, f->dry_run, &f->res);
}

static void forget_after(struct commit_job *job)
{
    struct forget_job *f = (struct forget_job *)job;
    if (job->status == 0 && !f->dry_run)
        f->compacted = store_compact(f->st, f->err, sizeof f->err) == 0;
}

static void forget_done(struct commit_job *job)
{
    struct forget_job *f = (struct forget_job *)job;
    struct later *l = f->l;
    if (job->status == 0 && !f->dry_run)
        dispatch_drop_offers(f->dispatcher); /* stale now: free them at once */
    if (!l->gone) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(l->req), NULL, NULL);
        if (job->status != 0) {
            reply_text(l->req, 503, "Service Unavailable", "the store could not be searched");
        } else {
            json_t *o =
                json_pack("{s:b, s:{s:I, s:I, s:I}, s:b}", "dry_run", f->dry_run, "found", "events",
                          (json_int_t)f->res.events, "payloads", (json_int_t)f->res.payloads,
                          "meta", (json_int_t)f->res.meta, "compacted", f->compacted);
            if (!f->dry_run && !f->compacted)
                json_object_set_new(o, "error", json_string(f->err));
            reply_json(l->req, 200, "OK", o);
            json_decref(o);
        }
    }
    free(l);
    free(f);
}

static void handle_forget(struct admin *s, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *address = query_param(req, &q, "email");
    struct forget_job *f = NULL;
    struct later *l = NULL;
    if (address == NULL || strchr(address, '@') == NULL || strlen(address) < 3 ||
        strlen(address) >= sizeof f->address) {
        reply_text(req, 400, "Bad Request", "forget?email=ADDRESS names no e-mail address");
    } else if ((f = calloc(1, sizeof *f)) == NULL || (l = calloc(1, sizeof *l)) == NULL) {
        free(f);
        reply_text(req, 503, "Service Unavailable", "out of memory");
    } else {
        gw_strlcpy(f->address, address, sizeof f->address);
        f->dry_run = flag(req, &q, "dry_run");
        f->st = s->d.st;
        f->dispatcher = s->d.dispatcher;
        f->l = l;
        l->req = req;
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), later_gone, l);
        f->job.apply = forget_apply;
        f->job.after = forget_after;
        f->job.done = forget_done;
        committer_submit(s->d.committer, &f->job);
    }
    evhttp_clear_headers(&q);
}

void admin_handle(struct admin *s, struct evhttp_request *req)
{
    const char *uri_path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *path = uri_path ? uri_path : "";
    char err[GW_ERR_LEN];
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Security-Policy", DASHBOARD_CSP);
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "X-Frame-Options", "DENY");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
    evhttp_add_header(out, "Cache-Control", "no-store");
    /* The dashboard's own files hold no data: the page asks the API for it
     * with the token, so a browser can open it without a header. */
    const struct dashboard_asset *asset =
        evhttp_request_get_command(req) == EVHTTP_REQ_GET ? dashboard_asset(path) : NULL;
    if (asset != NULL) {
        reply_bytes(req, 200, "OK", asset->content_type, (const char *)asset->data, asset->len);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        reply_text(req, 200, "OK", "ok");
        return;
    }
    if (strcmp(path, "/favicon.ico") == 0) {
        reply_bytes(req, 204, "No Content", "image/x-icon", NULL, 0); /* none, and no error */
        return;
    }
    if (strcmp(path, "/oauth/quickbooks/callback") == 0) {
        handle_oauth_callback(s, req);
        return;
    }
    if (!admin_authorised(s, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"gateway admin\"");
        reply_text(req, 401, "Unauthorized", "admin API needs Authorization: Bearer <admin_token>");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_POST) {
        struct replay_filter f = {0};
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        f.dry_run = flag(req, &q, "dry_run");
        size_t n = strlen(path);
        if (strncmp(path, "/api/events/", 12) == 0 && n > 19 &&
            strcmp(path + n - 7, "/replay") == 0) {
            char idtext[32];
            snprintf(idtext, sizeof idtext, "%.*s", (int)(n - 19), path + 12);
            if (!gw_strtou64(idtext, &f.event_id) || f.event_id == 0)
                reply_text(req, 404, "Not Found", "no such event");
            else
                reply_replay(s, req, &f);
        } else if (strcmp(path, "/api/backfill") == 0) {
            handle_reconcile(s, req, true);
        } else if (strcmp(path, "/api/unpost") == 0) {
            handle_unpost(s, req);
        } else if (strcmp(path, "/api/forget") == 0) {
            handle_forget(s, req);
        } else if (strcmp(path, "/api/replay") == 0) {
            f.source = query_param(req, &q, "source");
            f.entity = query_param(req, &q, "entity");
            f.connection = query_param(req, &q, "connection");
            const char *since = query_param(req, &q, "since");
            const char *until = query_param(req, &q, "until");
            if ((since && !gw_ts_parse(since, &f.since_ms)) ||
                (until && !gw_ts_parse(until, &f.until_ms)))
                reply_text(req, 400, "Bad Request", "since/until: expected ISO-8601 timestamps");
            else
                reply_replay(s, req, &f);
        } else {
            reply_text(req, 404, "Not Found", "not found");
        }
        evhttp_clear_headers(&q);
        return;
    }
    if (cmd != EVHTTP_REQ_GET) {
        reply_text(req, 405, "Method Not Allowed", "use GET or POST");
        return;
    }
    if (strcmp(path, "/oauth/quickbooks/connect") == 0) {
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        const char *name = query_param(req, &q, "connection");
        const struct gw_connection *c = name ? config_connection(s->d.cfg, name) : NULL;
        char *url = c ? qbo_authorize_url(s->d.clients->qbo, c) : NULL;
        evhttp_clear_headers(&q);
        if (url == NULL) {
            reply_text(req, 404, "Not Found", "connect?connection=NAME names no connection");
            return;
        }
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", url);
        reply_text(req, 302, "Found", url);
        free(url);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        metrics_render(f);
        uint64_t counts[GW_STATE_COUNT];
        if (store_counts(s->d.st, counts, NULL, 0) == 0) {
            fprintf(f, "# HELP gateway_events Events in the store by state.\n"
                       "# TYPE gateway_events gauge\n");
            for (int i = 0; i < GW_STATE_COUNT; i++)
                fprintf(f, "gateway_events{state=\"%s\"} %llu\n", event_state_name(i),
                        (unsigned long long)counts[i]);
        }
        int64_t oldest = 0;
        store_oldest_queued(s->d.st, &oldest, NULL, 0);
        fprintf(f,
                "# HELP gateway_oldest_pending_seconds Age of the oldest queued event.\n"
                "# TYPE gateway_oldest_pending_seconds gauge\n"
                "gateway_oldest_pending_seconds %.3f\n",
                oldest > 0 ? (gw_now_ms() - oldest) / 1000.0 : 0.0);
        metrics_live(s, f);
        fclose(f);
        reply_bytes(req, 200, "OK", "text/plain; version=0.0.4", text, len);
        free(text);
        return;
    }
    if (strcmp(path, "/api/reconcile") == 0) {
        handle_reconcile(s, req, false);
        return;
    }
    if (strcmp(path, "/api/activity") == 0) {
        struct evkeyvalq q;
        TAILQ_INIT(&q);
        const char *v = query_param(req, &q, "minutes");
        int64_t minutes = 60;
        if (v != NULL && (!gw_strtoi64(v, &minutes) || minutes < 1 || minutes > 1440)) {
            evhttp_clear_headers(&q);
            reply_text(req, 400, "Bad Request", "minutes: 1 to 1440");
            return;
        }
        evhttp_clear_headers(&q);
        reply_report(req, report_activity(s->d.st, (int)minutes, gw_now_ms(), err, sizeof err),
                     err);
        return;
    }
    if (strcmp(path, "/api/status") == 0) {
        reply_report(
            req,
            report_status(s->d.st, s->d.cfg, (int64_t)inbox_pending(*s->d.inbox), err, sizeof err),
            err);
        return;
    }
    if (strcmp(path, "/api/events") == 0) {
        struct event_filter f = {-1, NULL, NULL, NULL, 100, 0};
        struct evkeyvalq q;
        const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        TAILQ_INIT(&q);
        if (query != NULL)
            evhttp_parse_query_str(query, &q);
        const char *v;
        if ((v = evhttp_find_header(&q, "state")) != NULL)
            f.state = event_state_parse(v);
        f.source = evhttp_find_header(&q, "source");
        f.connection = evhttp_find_header(&q, "connection");
        f.entity = evhttp_find_header(&q, "entity");
        int64_t lim;
        if ((v = evhttp_find_header(&q, "limit")) != NULL && gw_strtoi64(v, &lim) && lim >= 0)
            f.limit = (long)lim;
        uint64_t before;
        if ((v = evhttp_find_header(&q, "before")) != NULL && gw_strtou64(v, &before))
            f.before = before;
        json_t *a = (f.state == -1 && evhttp_find_header(&q, "state") != NULL)
                        ? json_array()
                        : report_events(s->d.st, &f, err, sizeof err);
        evhttp_clear_headers(&q);
        reply_report(req, a, err);
        return;
    }
    if (strncmp(path, "/api/events/", 12) == 0) {
        uint64_t id;
        int rc;
        json_t *o =
            gw_strtou64(path + 12, &id) ? report_event(s->d.st, id, &rc, err, sizeof err) : NULL;
        if (o == NULL) {
            reply_text(req, 404, "Not Found", "no such event");
            return;
        }
        reply_json(req, 200, "OK", o);
        json_decref(o);
        return;
    }
    reply_text(req, 404, "Not Found", "not found");
}

static void metrics_live(struct admin *s, FILE *f)
{
    static const struct {
        const char *name, *help;
    } gauges[] = {
        {"gateway_connection_authorised", "1 while QuickBooks accepts the connection's tokens."},
        {"gateway_circuit_open", "1 while the connection's circuit breaker is open."},
        {"gateway_mplus_login_refused", "1 while Mplus refuses the connection's login."},
    };
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help,
                gauges[g].name);
        for (size_t i = 0; i < s->d.cfg->nconns; i++) {
            const char *name = s->d.cfg->conns[i].name;
            json_t *l = json_object_get(*s->d.live, name);
            const char *circuit = json_string_value(json_object_get(l, "circuit"));
            bool v = g == 0   ? json_is_true(json_object_get(l, "authorised"))
                     : g == 1 ? circuit != NULL && strcmp(circuit, "open") == 0
                              : json_object_get(l, "mplus_login_refused_until") != NULL ||
                                    json_is_true(json_object_get(l, "mplus_login_refused"));
            fprintf(f, "%s{connection=\"%s\"} %d\n", gauges[g].name, name, v);
        }
    }
    fputs("# HELP gateway_alert_open 1 for each condition that needs a person (see status).\n"
          "# TYPE gateway_alert_open gauge\n",
          f);
    json_t *open = *s->d.alerts ? alerts_open(*s->d.alerts) : json_array();
    size_t i;
    json_t *a;
    json_array_foreach(open, i, a)
    {
        fprintf(f, "gateway_alert_open{connection=\"%s\",condition=\"%s\"} 1\n",
                json_string_value(json_object_get(a, "connection")),
                json_string_value(json_object_get(a, "condition")));
    }
    json_decref(open);
    char err[256];
    json_t *st =
        report_status(s->d.st, s->d.cfg, (int64_t)inbox_pending(*s->d.inbox), err, sizeof err);
    fprintf(f,
            "# HELP gateway_inbox_depth Webhooks accepted in a burst, not yet events.\n"
            "# TYPE gateway_inbox_depth gauge\ngateway_inbox_depth %lld\n"
            "# HELP gateway_store_map_bytes Size of the store's memory map.\n"
            "# TYPE gateway_store_map_bytes gauge\ngateway_store_map_bytes %zu\n"
            "# HELP gateway_store_used_bytes Bytes of the map that hold pages.\n"
            "# TYPE gateway_store_used_bytes gauge\ngateway_store_used_bytes %zu\n"
            "# HELP gateway_store_map_max_bytes The largest the map may grow to (map_max_mb).\n"
            "# TYPE gateway_store_map_max_bytes gauge\ngateway_store_map_max_bytes %zu\n",
            (long long)json_integer_value(json_object_get(st, "inbox")), store_map_size(s->d.st),
            store_used_bytes(s->d.st), (size_t)s->d.cfg->map_max_mb << 20);
    json_decref(st);
}
