/*
 * qbo.c - QuickBooks Online client.
 *
 * A call goes: wait for a usable access token (refreshing it when it is about
 * to expire) -> wait for the realm's limiter -> HTTP -> classify. A 401 makes
 * one refresh and one more try; a 429 pauses the realm; a 5010 on a sparse
 * update re-reads the entity and sends the same change with the fresh
 * SyncToken once more.
 */
#include "qbo.h"
#include "jsonout.h"
#include "log.h"
#include "metrics.h"
#include "mplus.h"
#include "sig.h"
#include "util.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MINOR_VERSION     "75"
#define REFRESH_MARGIN_MS (5 * 60 * 1000) /* refresh this long before expiry */
#define THROTTLE_PAUSE_MS 60000           /* Intuit: wait 60 s after a 429 */
#define STATE_TTL_MS      (15 * 60 * 1000)

enum call_kind {
    CALL_READ,
    CALL_QUERY,
    CALL_CREATE,
    CALL_UPDATE,
    CALL_VOID,
    CALL_DELETE,
    CALL_CDC,
    CALL_BATCH
};

struct qconn;

struct call {
    struct call *next;
    struct qbo *q;
    struct qconn *qc;
    enum call_kind kind;
    const char *method;
    char *url;
    char *body;
    char entity[64];
    json_t *update; /* CALL_UPDATE: the fields being sent (for a 5010 re-apply) */
    char *requestid;
    bool refreshed;               /* one refresh on a 401 already done */
    unsigned char token_used[32]; /* sha256 of the access token sent */
    bool stale_retried;           /* one 5010 re-apply already done */
    qbo_cb cb;
    void *arg;
    struct call **ops; /* CALL_BATCH: the creates it carries; bId is the index */
    size_t nops;
};

/* One connection's tokens and limiter. */
struct qconn {
    struct qbo *q;
    const struct gw_connection *c;
    json_t *tokens; /* cached copy of the stored tokens, or NULL */
    int64_t tokens_checked_ms;
    bool refreshing;
    struct call *auth_wait; /* calls waiting for a refresh */
    /* limiter */
    int64_t *sec_ring, *min_ring;
    size_t sec_i, min_i;
    int active;
    int64_t paused_until_ms;
    struct call *queue_head, *queue_tail; /* calls waiting for the limiter */
    struct event *timer;
    int64_t *batch_ring; /* start times of the last batch_per_min batch requests */
    size_t batch_i;
    struct call *batch_head, *batch_tail; /* creates gathered for the next batch */
    size_t nbatch;
    struct event *batch_ev; /* sends them once the loop turn is through */
    char last_error[512];
};

struct oauth_state {
    struct oauth_state *next;
    char state[65];
    const struct gw_connection *c;
    int64_t expires_ms;
};

struct qbo {
    const struct gw_config *cfg;
    struct store *st;
    struct committer *committer;
    struct http_client *http;
    struct qconn *conns; /* one per configured connection, same order */
    struct oauth_state *states;
    bool draining; /* qbo_drain: nothing more goes out */
};

/* ---- small helpers ------------------------------------------------------ */

static struct qconn *qconn_of(struct qbo *q, const struct gw_connection *c)
{
    for (size_t i = 0; i < q->cfg->nconns; i++)
        if (&q->cfg->conns[i] == c)
            return &q->conns[i];
    return NULL;
}

void qbo_tokens_key(const char *conn, char *out, size_t outlen)
{
    snprintf(out, outlen, "qbo.tokens.%s", conn);
}

json_t *qbo_rows(json_t *body, const char *entity)
{
    return json_object_get(json_object_get(body, "QueryResponse"), entity);
}

char *qbo_quote(const char *s)
{
    size_t n = strlen(s), extra = 0;
    for (size_t i = 0; i < n; i++)
        extra += s[i] == '\'' || s[i] == '\\';
    char *out = malloc(n + extra + 3);
    if (out == NULL)
        return NULL;
    char *p = out;
    *p++ = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'' || s[i] == '\\')
            *p++ = '\\';
        *p++ = s[i];
    }
    *p++ = '\'';
    *p = '\0';
    return out;
}

/* The length of the character at s when QuickBooks' query lexer refuses it
 * (curly quotes, en and em dash: "QueryParserError: Lexical error" even
 * inside a literal), else 0. */
static size_t lexer_refuses(const char *s)
{
    static const char *const refused[] = {"\u2018", "\u2019", "\u201c",
                                          "\u201d", "\u2013", "\u2014"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strncmp(s, refused[i], strlen(refused[i])) == 0)
            return strlen(refused[i]);
    return 0;
}

char *qbo_where_equals(const char *field, const char *value, bool *exact)
{
    size_t n = strlen(value);
    char *lit = malloc(2 * n + 3);
    if (lit == NULL)
        return NULL;
    char *p = lit;
    *exact = true;
    *p++ = '\'';
    for (size_t i = 0; i < n; i++) {
        size_t skip = lexer_refuses(value + i);
        if (skip > 0) {
            *p++ = '%';
            *exact = false;
            i += skip - 1;
            continue;
        }
        if (value[i] == '\'' || value[i] == '\\')
            *p++ = '\\';
        *p++ = value[i];
    }
    *p++ = '\'';
    *p = '\0';
    char *out = NULL;
    if (asprintf(&out, "%s %s %s", field, *exact ? "=" : "LIKE", lit) < 0)
        out = NULL;
    free(lit);
    return out;
}

/* ---- faults ------------------------------------------------------------------ */

static json_t *get_ci(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (v != NULL)
        return v;
    const char *key;
    json_object_foreach(o, key, v)
    {
        if (strcasecmp(key, k) == 0)
            return v;
    }
    return NULL;
}

static bool json_fault(json_t *root, char *code, size_t codelen, char *msg, size_t msglen)
{
    json_t *fault = get_ci(root, "Fault");
    if (!json_is_object(fault))
        return false;
    json_t *errors = get_ci(fault, "Error");
    const char *type = json_string_value(get_ci(fault, "type"));
    msg[0] = '\0';
    code[0] = '\0';
    if (type)
        gw_appendf(msg, msglen, "%s", type);
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        const char *c = json_string_value(get_ci(e, "code"));
        const char *m = json_string_value(get_ci(e, "Message"));
        const char *d = json_string_value(get_ci(e, "Detail"));
        const char *el = json_string_value(get_ci(e, "element"));
        if (i == 0 && c)
            gw_strlcpy(code, c, codelen);
        gw_appendf(msg, msglen, "%s%s%s%s%s%s%s%s", msg[0] ? "; " : "", c ? c : "", c ? " " : "",
                   m ? m : "", d ? ": " : "", d ? d : "", el && el[0] ? " (element " : "",
                   el && el[0] ? el : "");
        if (el && el[0])
            gw_appendf(msg, msglen, ")");
    }
    return true;
}

/* The throttle fault comes as XML even when JSON was asked for. */
static bool xml_fault(const char *body, size_t len, char *code, size_t codelen, char *msg,
                      size_t msglen)
{
    xmlDocPtr doc = xmlReadMemory(body, (int)len, NULL, NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL)
        return false;
    bool found = false;
    msg[0] = '\0';
    code[0] = '\0';
    /* IntuitResponse > Fault > Error(code) > Message, Detail */
    for (xmlNodePtr n = xmlDocGetRootElement(doc); n; n = n->children ? n->children : n->next) {
        if (n->type != XML_ELEMENT_NODE || xmlStrcmp(n->name, BAD_CAST "Fault") != 0)
            continue;
        found = true;
        for (xmlNodePtr e = n->children; e; e = e->next) {
            if (e->type != XML_ELEMENT_NODE || xmlStrcmp(e->name, BAD_CAST "Error") != 0)
                continue;
            xmlChar *c = xmlGetProp(e, BAD_CAST "code");
            if (c && code[0] == '\0')
                gw_strlcpy(code, (const char *)c, codelen);
            gw_appendf(msg, msglen, "%s%s", msg[0] ? "; " : "", c ? (const char *)c : "");
            xmlFree(c);
            for (xmlNodePtr f = e->children; f; f = f->next) {
                if (f->type != XML_ELEMENT_NODE)
                    continue;
                xmlChar *t = xmlNodeGetContent(f);
                gw_appendf(msg, msglen, " %s", t ? (const char *)t : "");
                xmlFree(t);
            }
        }
        break;
    }
    xmlFreeDoc(doc);
    return found;
}

/* The fault in a body already parsed as JSON (root), or else read as XML. */
static bool body_fault(json_t *root, const char *body, size_t len, char *code, size_t codelen,
                       char *msg, size_t msglen)
{
    if (root != NULL)
        return json_fault(root, code, codelen, msg, msglen);
    return len > 0 && xml_fault(body, len, code, codelen, msg, msglen);
}

bool qbo_parse_fault(const char *body, size_t len, char *code, size_t codelen, char *msg,
                     size_t msglen)
{
    json_t *root = len ? json_loadb(body, len, 0, NULL) : NULL;
    bool f = body_fault(root, body, len, code, codelen, msg, msglen);
    json_decref(root);
    return f;
}

/* ---- tokens ------------------------------------------------------------------ */

json_t *qbo_tokens_from_response(json_t *resp, const char *realm_id, int64_t now_ms)
{
    const char *access = json_string_value(json_object_get(resp, "access_token"));
    const char *refresh = json_string_value(json_object_get(resp, "refresh_token"));
    json_int_t exp = json_integer_value(json_object_get(resp, "expires_in"));
    json_int_t rexp = json_integer_value(json_object_get(resp, "x_refresh_token_expires_in"));
    if (access == NULL || refresh == NULL)
        return NULL;
    return json_pack("{s:s, s:I, s:s, s:I, s:s?, s:I, s:b}", "access_token", access,
                     "access_expires_ms", (json_int_t)(now_ms + (exp > 0 ? exp : 3600) * 1000),
                     "refresh_token", refresh, "refresh_expires_ms",
                     (json_int_t)(rexp > 0 ? now_ms + rexp * 1000 : 0), "realm_id", realm_id,
                     "updated_ms", (json_int_t)now_ms, "needs_reauth", 0);
}

struct put_arg {
    const char *key;
    json_t *value;
};

static int put_fn(struct store_txn *t, void *arg)
{
    struct put_arg *a = arg;
    return store_txn_meta_put(t, a->key, a->value);
}

int qbo_tokens_put(struct store *st, const char *conn, json_t *tokens, char *err, size_t errlen)
{
    char key[128];
    qbo_tokens_key(conn, key, sizeof key);
    struct put_arg a = {key, tokens};
    return store_write(st, put_fn, &a, err, errlen);
}

/* Adopt the stored tokens when they are newer than ours (a `tokens` import or
 * an OAuth callback of another process). */
static void reload_tokens(struct qconn *qc)
{
    char key[128];
    qbo_tokens_key(qc->c->name, key, sizeof key);
    json_t *stored = NULL;
    qc->tokens_checked_ms = gw_now_ms();
    if (store_meta_get(qc->q->st, key, &stored, NULL, 0) != 0 || !json_is_object(stored)) {
        json_decref(stored);
        return;
    }
    json_int_t mine =
        qc->tokens ? json_integer_value(json_object_get(qc->tokens, "updated_ms")) : -1;
    if (json_integer_value(json_object_get(stored, "updated_ms")) > mine) {
        json_decref(qc->tokens);
        qc->tokens = stored;
    } else {
        json_decref(stored);
    }
}

static const char *tok(struct qconn *qc, const char *k)
{
    return qc->tokens ? json_string_value(json_object_get(qc->tokens, k)) : NULL;
}

static bool needs_reauth(struct qconn *qc)
{
    return qc->tokens == NULL || tok(qc, "refresh_token") == NULL ||
           json_is_true(json_object_get(qc->tokens, "needs_reauth"));
}

bool qbo_needs_auth(struct qbo *q, const struct gw_connection *c)
{
    struct qconn *qc = qconn_of(q, c);
    if (qc == NULL)
        return true;
    if (needs_reauth(qc) && gw_now_ms() - qc->tokens_checked_ms > 1000)
        reload_tokens(qc);
    return needs_reauth(qc);
}

static void start_call(struct call *call);
static void finish_call(struct call *call, struct qbo_result *r);

static void fail_waiting(struct qconn *qc, enum qbo_kind kind, const char *why)
{
    struct call *w = qc->auth_wait;
    qc->auth_wait = NULL;
    while (w) {
        struct call *next = w->next;
        struct qbo_result r = {.kind = kind};
        gw_strlcpy(r.error, why, sizeof r.error);
        finish_call(w, &r);
        w = next;
    }
}

struct token_job {
    struct commit_job job;
    struct qconn *qc;
    char key[128];
    json_t *tokens;
    /* OAuth callback completion, when this came from one */
    qbo_cb cb;
    void *arg;
};

static int token_apply(struct store_txn *t, struct commit_job *job)
{
    struct token_job *tj = (struct token_job *)job;
    return store_txn_meta_put(t, tj->key, tj->tokens);
}

static void token_done(struct commit_job *job)
{
    struct token_job *tj = (struct token_job *)job;
    struct qconn *qc = tj->qc;
    qc->refreshing = false;
    struct qbo_result r = {.kind = QBO_OK};
    if (job->status != 0) {
        /* Intuit has already rotated the token, so the new one is the only
         * one that works: keep using it from memory; the next refresh stores
         * again. */
        log_error("connection %s: could not store refreshed QuickBooks tokens", qc->c->name);
        r.kind = QBO_RETRY;
        gw_strlcpy(r.error, "could not store refreshed tokens", sizeof r.error);
    }
    json_decref(qc->tokens);
    qc->tokens = tj->tokens;
    if (json_is_true(json_object_get(qc->tokens, "needs_reauth"))) {
        gw_log(GW_LOG_WARN, qc->c->name, 0,
               "QuickBooks refused the refresh token: the connection needs re-authorisation");
        fail_waiting(qc, QBO_NO_AUTH, qc->last_error);
    } else {
        struct call *w = qc->auth_wait;
        qc->auth_wait = NULL;
        while (w) {
            struct call *next = w->next;
            start_call(w);
            w = next;
        }
    }
    if (tj->cb)
        tj->cb(&r, tj->arg);
    free(tj);
}

static void store_tokens(struct qconn *qc, json_t *tokens, qbo_cb cb, void *arg)
{
    struct token_job *tj = calloc(1, sizeof *tj);
    if (tj == NULL) {
        json_decref(tokens);
        qc->refreshing = false;
        fail_waiting(qc, QBO_RETRY, "out of memory");
        return;
    }
    tj->qc = qc;
    tj->tokens = tokens;
    tj->cb = cb;
    tj->arg = arg;
    qbo_tokens_key(qc->c->name, tj->key, sizeof tj->key);
    tj->job.apply = token_apply;
    tj->job.done = token_done;
    committer_submit(qc->q->committer, &tj->job);
}

struct token_req {
    struct qconn *qc;
    qbo_cb cb; /* OAuth callback completion, or NULL for a refresh */
    void *arg;
    char realm[64];
};

static void token_http_done(const struct http_response *resp, void *arg)
{
    struct token_req *tr = arg;
    struct qconn *qc = tr->qc;
    json_t *body = resp->transport_error ? NULL : json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *oerr = json_string_value(json_object_get(body, "error"));
    if (resp->status == 200 && body != NULL) {
        json_t *tokens = qbo_tokens_from_response(body, tr->realm, gw_now_ms());
        if (tokens != NULL) {
            gw_log(GW_LOG_INFO, qc->c->name, 0, "QuickBooks tokens %s",
                   tr->cb ? "received" : "refreshed");
            qc->last_error[0] = '\0';
            store_tokens(qc, tokens, tr->cb, tr->arg);
            json_decref(body);
            free(tr);
            return;
        }
    }
    struct qbo_result r = {.kind = QBO_RETRY, .status = resp->status};
    if (resp->transport_error)
        gw_errf(r.error, sizeof r.error, "token endpoint: %s", resp->error);
    else
        gw_errf(r.error, sizeof r.error, "token endpoint: HTTP %ld %s", resp->status,
                oerr ? oerr : "unexpected answer");
    gw_strlcpy(qc->last_error, r.error, sizeof qc->last_error);
    gw_log(GW_LOG_WARN, qc->c->name, 0, "%s", r.error);
    if (oerr != NULL &&
        (strcmp(oerr, "invalid_grant") == 0 || strcmp(oerr, "invalid_client") == 0) &&
        tr->cb == NULL) {
        /* The refresh token is dead: remember that durably, so events wait
         * instead of burning attempts, and status shows it. */
        json_t *t = qc->tokens ? json_copy(qc->tokens) : json_object();
        json_object_set_new(t, "needs_reauth", json_true());
        json_object_set_new(t, "last_error", json_string(r.error));
        json_object_set_new(t, "updated_ms", json_integer((json_int_t)gw_now_ms()));
        store_tokens(qc, t, NULL, NULL);
    } else {
        qc->refreshing = false;
        if (tr->cb)
            tr->cb(&r, tr->arg);
        else
            fail_waiting(qc, QBO_RETRY, r.error);
    }
    json_decref(body);
    free(tr);
}

static int post_token(struct qconn *qc, const char *form, qbo_cb cb, void *arg, const char *realm)
{
    const struct gw_config *cfg = qc->q->cfg;
    char cred[1024], auth[1500];
    snprintf(cred, sizeof cred, "%s:%s", cfg->client_id ? cfg->client_id : "",
             cfg->client_secret ? cfg->client_secret : "");
    char *b64 = sig_base64(cred, strlen(cred));
    snprintf(auth, sizeof auth, "Authorization: Basic %s", b64 ? b64 : "");
    free(b64);
    const char *headers[] = {auth, "Accept: application/json",
                             "Content-Type: application/x-www-form-urlencoded", NULL};
    struct http_request req = {"POST", cfg->oauth_token_url, headers, form, strlen(form), 30000,
                               10000};
    struct token_req *tr = calloc(1, sizeof *tr);
    tr->qc = qc;
    tr->cb = cb;
    tr->arg = arg;
    gw_strlcpy(tr->realm, realm ? realm : "", sizeof tr->realm);
    int rc = http_start(qc->q->http, &req, token_http_done, tr);
    explicit_bzero(auth, sizeof auth);
    explicit_bzero(cred, sizeof cred);
    if (rc != 0)
        free(tr);
    return rc;
}

static void start_refresh(struct qconn *qc)
{
    if (qc->refreshing)
        return;
    reload_tokens(qc);
    const char *refresh = tok(qc, "refresh_token");
    if (refresh == NULL || needs_reauth(qc)) {
        fail_waiting(qc, QBO_NO_AUTH,
                     "no QuickBooks authorisation: run `gateway tokens` or the "
                     "OAuth connect flow");
        return;
    }
    qc->refreshing = true;
    char *esc = http_escape(refresh);
    char form[2048];
    snprintf(form, sizeof form, "grant_type=refresh_token&refresh_token=%s", esc ? esc : "");
    free(esc);
    const char *realm = tok(qc, "realm_id");
    if (post_token(qc, form, NULL, NULL, realm ? realm : qc->c->realm_id) != 0) {
        qc->refreshing = false;
        fail_waiting(qc, QBO_RETRY, "could not start the token refresh");
    }
}

/* ---- limiter ----------------------------------------------------------------- */

/* Earliest time a new request may start (now if it may start at once). */
static int64_t limiter_next(struct qconn *qc, int64_t now, bool batch)
{
    int64_t at = now;
    if (qc->paused_until_ms > at)
        at = qc->paused_until_ms;
    /* ring[i] is the start time of the request rate requests ago */
    int64_t s = qc->sec_ring[qc->sec_i];
    if (s != 0 && s + 1000 > at)
        at = s + 1000;
    int64_t m = qc->min_ring[qc->min_i];
    if (m != 0 && m + 60000 > at)
        at = m + 60000;
    int64_t b = batch ? qc->batch_ring[qc->batch_i] : 0;
    if (b != 0 && b + 60000 > at)
        at = b + 60000;
    return at;
}

static void limiter_take(struct qconn *qc, int64_t now, bool batch)
{
    const struct gw_config *cfg = qc->q->cfg;
    if (batch) {
        qc->batch_ring[qc->batch_i] = now;
        qc->batch_i = (qc->batch_i + 1) % (size_t)cfg->qbo_batch_per_min;
    }
    qc->sec_ring[qc->sec_i] = now;
    qc->sec_i = (qc->sec_i + 1) % (size_t)cfg->qbo_rate_per_sec;
    qc->min_ring[qc->min_i] = now;
    qc->min_i = (qc->min_i + 1) % (size_t)cfg->qbo_rate_per_min;
    qc->active++;
}

static void http_done(const struct http_response *resp, void *arg);

static void pump(struct qconn *qc)
{
    int64_t now = gw_now_ms();
    while (qc->queue_head != NULL && qc->active < qc->q->cfg->qbo_max_concurrent) {
        bool batch = qc->queue_head->kind == CALL_BATCH;
        int64_t at = limiter_next(qc, now, batch);
        if (at > now) {
            int64_t wait = at - now;
            struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
            evtimer_add(qc->timer, &tv);
            return;
        }
        struct call *call = qc->queue_head;
        qc->queue_head = call->next;
        if (qc->queue_head == NULL)
            qc->queue_tail = NULL;
        call->next = NULL;
        limiter_take(qc, now, batch);

        char auth[4200];
        const char *access = tok(qc, "access_token") ?: "";
        sig_sha256(access, strlen(access), call->token_used);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", access);
        const char *headers[] = {auth, "Accept: application/json",
                                 call->body ? "Content-Type: application/json" : NULL, NULL};
        struct http_request req = {call->method,
                                   call->url,
                                   headers,
                                   call->body,
                                   call->body ? strlen(call->body) : 0,
                                   qc->q->cfg->qbo_timeout_s * 1000,
                                   10000};
        int rc = http_start(qc->q->http, &req, http_done, call);
        explicit_bzero(auth, sizeof auth);
        if (rc != 0) {
            qc->active--;
            struct qbo_result r = {.kind = QBO_RETRY};
            gw_strlcpy(r.error, "could not start the request", sizeof r.error);
            finish_call(call, &r);
        }
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* ---- calls ------------------------------------------------------------------ */

static void free_call(struct call *call)
{
    for (size_t i = 0; i < call->nops; i++)
        free_call(call->ops[i]);
    free(call->ops);
    free(call->url);
    free(call->body);
    free(call->requestid);
    json_decref(call->update);
    free(call);
}

static void batch_finish(struct call *batch, const struct qbo_result *r);

static void finish_call(struct call *call, struct qbo_result *r)
{
    if (call->kind == CALL_BATCH) {
        batch_finish(call, r);
        free_call(call);
        return;
    }
    if (r->request_text == NULL) /* ended before it went out: what it would have sent */
        r->request_text = call->body;
    call->cb(r, call->arg);
    free_call(call);
}

/* A call that will not go out because the gateway is stopping. */
static void not_sent(struct call *call)
{
    struct qbo_result r = {.kind = QBO_THROTTLED};
    int64_t soon = gw_now_ms() + 1000; /* due again in a second, or when a 429 pause ends */
    r.retry_at_ms = call->qc->paused_until_ms > soon ? call->qc->paused_until_ms : soon;
    gw_strlcpy(r.error, "not sent: the gateway is stopping", sizeof r.error);
    finish_call(call, &r);
}

/* Queue the call once a usable access token is at hand. */
static void start_call(struct call *call)
{
    struct qconn *qc = call->qc;
    int64_t now = gw_now_ms();
    if (call->q->draining) {
        not_sent(call);
        return;
    }
    if (qc->tokens == NULL || needs_reauth(qc))
        reload_tokens(qc);
    if (needs_reauth(qc)) {
        struct qbo_result r = {.kind = QBO_NO_AUTH};
        gw_errf(r.error, sizeof r.error,
                "connection %s is not authorised with QuickBooks: run `gateway tokens %s "
                "--refresh-token ...` or the OAuth connect flow",
                qc->c->name, qc->c->name);
        finish_call(call, &r);
        return;
    }
    json_int_t exp = json_integer_value(json_object_get(qc->tokens, "access_expires_ms"));
    if (tok(qc, "access_token") == NULL || exp - REFRESH_MARGIN_MS < now || qc->refreshing) {
        call->next = qc->auth_wait;
        qc->auth_wait = call;
        start_refresh(qc);
        return;
    }
    call->next = NULL;
    if (qc->queue_tail)
        qc->queue_tail->next = call;
    else
        qc->queue_head = call;
    qc->queue_tail = call;
    pump(qc);
}

static char *make_url(struct qbo *q, const struct gw_connection *c, const char *path,
                      const char *extra)
{
    char *url = NULL;
    const char *base = q->cfg->api_base;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (asprintf(&url, "%.*s/v3/company/%s/%s%sminorversion=" MINOR_VERSION "%s%s", (int)bl, base,
                 c->realm_id ? c->realm_id : "", path, strchr(path, '?') ? "&" : "?",
                 extra ? "&" : "", extra ? extra : "") < 0)
        return NULL;
    return url;
}

static struct call *new_call(struct qbo *q, const struct gw_connection *c, enum call_kind kind,
                             const char *method, char *url, qbo_cb cb, void *arg)
{
    struct qconn *qc = qconn_of(q, c);
    if (qc == NULL || url == NULL) {
        free(url);
        return NULL;
    }
    struct call *call = calloc(1, sizeof *call);
    call->q = q;
    call->qc = qc;
    call->kind = kind;
    call->method = method;
    call->url = url;
    call->cb = cb;
    call->arg = arg;
    return call;
}

static void entity_path(const char *entity, char *out, size_t outlen)
{
    size_t i = 0;
    for (; entity[i] && i + 1 < outlen; i++)
        out[i] = (char)(entity[i] >= 'A' && entity[i] <= 'Z' ? entity[i] + 32 : entity[i]);
    out[i] = '\0';
}

int qbo_read(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
             qbo_cb cb, void *arg)
{
    char path[256], ent[64];
    entity_path(entity, ent, sizeof ent);
    char *eid = http_escape(id);
    snprintf(path, sizeof path, "%s/%s", ent, eid ? eid : "");
    free(eid);
    struct call *call = new_call(q, c, CALL_READ, "GET", make_url(q, c, path, NULL), cb, arg);
    if (call == NULL)
        return -1;
    gw_strlcpy(call->entity, entity, sizeof call->entity);
    start_call(call);
    return 0;
}

int qbo_query(struct qbo *q, const struct gw_connection *c, const char *query, qbo_cb cb, void *arg)
{
    char *esc = http_escape(query);
    char *path = NULL;
    if (esc == NULL || asprintf(&path, "query?query=%s", esc) < 0)
        path = NULL;
    free(esc);
    if (path == NULL)
        return -1;
    struct call *call = new_call(q, c, CALL_QUERY, "GET", make_url(q, c, path, NULL), cb, arg);
    free(path);
    if (call == NULL)
        return -1;
    start_call(call);
    return 0;
}

/* Keys whose values are QuickBooks decimals (money, quantities, rates). */
static const char *const decimal_keys[] = {
    "Amount",      "UnitPrice",        "Qty",          "TaxInclusiveAmt",    "TotalTax",
    "TotalAmt",    "NetAmountTaxable", "TaxPercent",   "TaxInclusiveAmount", "DiscountRate",
    "DiscountAmt", "QtyOnHand",        "PurchaseCost", "UnitAmount",         "TaxAmount",
    NULL,
};

static bool decimal_text(const char *s, size_t n)
{
    size_t i = s[0] == '-' ? 1 : 0, digits = 0, dots = 0;
    for (; i < n; i++) {
        if (s[i] == '.' && dots++ == 0 && digits > 0)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return false;
        digits++;
    }
    return digits > 0 && s[n - 1] != '.';
}

static bool decimal_key(const char *k, size_t n)
{
    for (const char *const *d = decimal_keys; *d; d++)
        if (strlen(*d) == n && memcmp(*d, k, n) == 0)
            return true;
    return false;
}

void qbo_exact_numbers(char *text)
{
    /* In compact JSON a member is "Key":value, and no string holds an
     * unescaped quote: a quote that starts such a pair starts a key. */
    char *w = text, *r = text;
    while (*r) {
        char *key_end = *r == '"' ? strchr(r + 1, '"') : NULL;
        if (key_end == NULL || key_end[1] != ':' || key_end[2] != '"' ||
            !decimal_key(r + 1, (size_t)(key_end - r - 1))) {
            *w++ = *r++;
            continue;
        }
        char *v = key_end + 3, *end = strchr(v, '"');
        size_t head = (size_t)(key_end - r) + 2; /* "Key": */
        memmove(w, r, head);
        w += head;
        if (end != NULL && end - v <= 40 && decimal_text(v, (size_t)(end - v))) {
            /* "Key":"9.95" -> "Key":9.95 */
            memmove(w, v, (size_t)(end - v));
            w += end - v;
            r = end + 1;
        } else {
            r = key_end + 2; /* the value is copied as text */
        }
    }
    *w = '\0';
}

bool qbo_cents_of(json_t *v, int64_t *cents)
{
    char text[64], err[128];
    if (json_is_integer(v))
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(text, sizeof text, "%.15g", json_real_value(v));
    else if (json_is_string(v))
        gw_strlcpy(text, json_string_value(v), sizeof text);
    else
        return false;
    return mplus_cents_parse(text, cents, err, sizeof err) == 0;
}

bool qbo_period_closed(const struct qbo_result *r)
{
    return r->kind == QBO_FAULT && strcmp(r->code, "5010") == 0 &&
           (strcasestr(r->error, "period closed") != NULL ||
            strcasestr(r->error, "period has closed") != NULL);
}

int64_t qbo_cents_field(json_t *o, const char *k)
{
    int64_t v = 0;
    return qbo_cents_of(json_object_get(o, k), &v) ? v : 0;
}

/* ---- batches ------------------------------------------------------------------- */

/*
 * New Items go to QuickBooks' batch endpoint together: those asked for in one
 * loop turn (an event's claims commit in groups, so their creates come in
 * groups), up to batch_items a request. Each create gets the answer of its
 * own item, as if it had gone alone.
 *
 * A batch cannot carry its creates' requestids: it has a random one of its
 * own, and a create that fails with its batch comes back as its event's
 * rerun, which asks QuickBooks for the Item by SKU before it makes one
 * (products.c, lookup.c).
 */
static void batch_send(struct qconn *qc)
{
    struct call *head = qc->batch_head;
    size_t n = qc->nbatch;
    qc->batch_head = qc->batch_tail = NULL;
    qc->nbatch = 0;
    if (n <= 1) {
        if (head != NULL)
            start_call(head); /* alone: as it is, its own requestid */
        return;
    }
    struct call **ops = calloc(n, sizeof *ops);
    struct gw_out body = {0};
    size_t i = 0;
    for (struct call *c = head; c != NULL && ops != NULL; c = c->next, i++) {
        char lead[96];
        int m = snprintf(lead, sizeof lead, "%s{\"bId\":\"%zu\",\"operation\":\"create\",\"%s\":",
                         i ? "," : "{\"BatchItemRequest\":[", i, c->entity);
        gw_out_bytes(&body, lead, (size_t)m);
        gw_out_bytes(&body, c->body, strlen(c->body));
        gw_out_char(&body, '}');
        ops[i] = c;
    }
    gw_out_bytes(&body, "]}", 2);
    char *text = gw_out_finish(&body, NULL);
    /* A requestid of its own: the batch sent again (after a 401) is answered
     * once, and creates that regroup later are never answered with an old
     * batch's answer. */
    char extra[64] = "";
    unsigned char h[16];
    if (sig_random(h, sizeof h) == 0) {
        size_t k = (size_t)snprintf(extra, sizeof extra, "requestid=b-");
        for (size_t j = 0; j < sizeof h; j++) /* "b-" and 32 hex digits: QuickBooks takes 36 */
            k += (size_t)snprintf(extra + k, sizeof extra - k, "%02x", h[j]);
    }
    struct call *batch =
        text && ops ? new_call(qc->q, qc->c, CALL_BATCH, "POST",
                               make_url(qc->q, qc->c, "batch", extra[0] ? extra : NULL), NULL, NULL)
                    : NULL;
    if (batch == NULL) {
        free(text);
        free(ops);
        for (struct call *c = head, *next; c != NULL; c = next) {
            next = c->next;
            struct qbo_result r = {.kind = QBO_RETRY};
            gw_strlcpy(r.error, "could not make the batch request", sizeof r.error);
            finish_call(c, &r);
        }
        return;
    }
    for (i = 0; i < n; i++)
        ops[i]->next = NULL;
    gw_strlcpy(batch->entity, "batch", sizeof batch->entity);
    batch->body = text;
    batch->ops = ops;
    batch->nops = n;
    start_call(batch);
}

static void on_batch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batch_send(arg);
}

static void batch_gather(struct call *call)
{
    struct qconn *qc = call->qc;
    call->next = NULL;
    if (qc->batch_tail)
        qc->batch_tail->next = call;
    else
        qc->batch_head = call;
    qc->batch_tail = call;
    if (++qc->nbatch >= (size_t)qc->q->cfg->qbo_batch_items)
        batch_send(qc);
    else
        event_active(qc->batch_ev, EV_TIMEOUT, 0); /* after the turn's other callbacks */
}

/* One create's answer, out of its batch's: the entity, or the item's fault. */
static void batch_item(struct call *op, json_t *entry, const struct qbo_result *all,
                       struct qbo_result *one, json_t **body, char **text)
{
    memset(one, 0, sizeof *one);
    one->status = all->status;
    gw_strlcpy(one->intuit_tid, all->intuit_tid, sizeof one->intuit_tid);
    one->request_text = op->body;
    *body = NULL;
    *text =
        entry ? gw_json_text(entry, JSON_COMPACT | JSON_PRESERVE_ORDER, &one->response_len) : NULL;
    one->response_text = *text;
    json_t *obj = json_object_get(entry, op->entity);
    char code[16], msg[900];
    if (json_is_object(obj)) {
        one->kind = QBO_OK;
        *body = json_object();
        json_object_set(*body, op->entity, obj);
        one->body = *body;
    } else if (json_fault(entry, code, sizeof code, msg, sizeof msg)) {
        /* What QuickBooks calls its own failure is worth another try. */
        const char *type = json_string_value(get_ci(get_ci(entry, "Fault"), "type"));
        one->kind = type && strcasecmp(type, "SystemFault") == 0 ? QBO_RETRY : QBO_FAULT;
        gw_strlcpy(one->code, code, sizeof one->code);
        gw_errf(one->error, sizeof one->error, "HTTP %ld, batch item: %s", all->status, msg);
        gw_strlcpy(op->qc->last_error, one->error, sizeof op->qc->last_error);
    } else {
        one->kind = QBO_RETRY;
        gw_errf(one->error, sizeof one->error,
                "HTTP %ld: the batch answer holds no %s for this item", all->status, op->entity);
    }
}

/* The batch's answer to each of its creates (all of them the same when the
 * batch as a whole failed). */
static void batch_finish(struct call *batch, const struct qbo_result *r)
{
    json_t *answers = r->kind == QBO_OK ? json_object_get(r->body, "BatchItemResponse") : NULL;
    json_t *by_op[30] = {0};
    bool twice[30] = {false};
    size_t i;
    json_t *e;
    json_array_foreach(answers, i, e)
    {
        /* A bId as sent ("0" .. "29", no leading zero); one answered twice
         * answers nothing. */
        const char *bid = json_string_value(json_object_get(e, "bId"));
        uint64_t k;
        if (!gw_strtou64_plain(bid, &k) || k >= batch->nops || k >= 30)
            continue;
        twice[k] = by_op[k] != NULL;
        by_op[k] = e;
    }
    for (i = 0; i < batch->nops; i++) {
        struct call *op = batch->ops[i];
        batch->ops[i] = NULL;
        if (r->kind != QBO_OK) {
            /* The batch as a whole was refused: that says nothing of each
             * item, so each is tried again (its event's rerun). */
            struct qbo_result one = *r;
            if (one.kind == QBO_FAULT)
                one.kind = QBO_RETRY;
            one.request_text = op->body;
            finish_call(op, &one);
            continue;
        }
        if (twice[i])
            by_op[i] = NULL;
        struct qbo_result one;
        json_t *body;
        char *text;
        batch_item(op, by_op[i], r, &one, &body, &text);
        finish_call(op, &one);
        json_decref(body);
        free(text);
    }
    batch->nops = 0;
}

static char *dump_body(json_t *obj)
{
    char *text = gw_json_text(obj, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    if (text != NULL)
        qbo_exact_numbers(text);
    return text;
}

/* A write with body text (taken: freed here on every path), or with obj's
 * text when text is NULL. */
static int write_call(struct qbo *q, const struct gw_connection *c, enum call_kind kind,
                      const char *entity, json_t *obj, char *text, const char *requestid, qbo_cb cb,
                      void *arg)
{
    char ent[64], extra[160];
    entity_path(entity, ent, sizeof ent);
    char *rid = requestid ? http_escape(requestid) : NULL;
    size_t n = 0;
    extra[0] = '\0';
    if (rid)
        n = (size_t)snprintf(extra, sizeof extra, "requestid=%s", rid);
    free(rid);
    if ((kind == CALL_VOID || kind == CALL_DELETE) && n < sizeof extra)
        snprintf(extra + n, sizeof extra - n, "%soperation=%s", n ? "&" : "",
                 kind == CALL_VOID ? "void" : "delete");
    struct call *call =
        new_call(q, c, kind, "POST", make_url(q, c, ent, extra[0] ? extra : NULL), cb, arg);
    if (call == NULL) {
        free(text);
        return -1;
    }
    gw_strlcpy(call->entity, entity, sizeof call->entity);
    call->body = text ? text : gw_json_text(obj, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
    if (call->body == NULL) {
        free_call(call);
        return -1;
    }
    qbo_exact_numbers(call->body);
    call->requestid = requestid ? strdup(requestid) : NULL;
    if (kind == CALL_UPDATE) /* qbo_update's own copy: shared, not copied again */
        call->update = json_incref(obj);
    if (kind == CALL_CREATE && q->cfg->qbo_batch_items > 1 && strcmp(entity, "Item") == 0)
        batch_gather(call);
    else
        start_call(call);
    return 0;
}

int qbo_create(struct qbo *q, const struct gw_connection *c, const char *entity, json_t *obj,
               const char *requestid, qbo_cb cb, void *arg)
{
    return write_call(q, c, CALL_CREATE, entity, obj, NULL, requestid, cb, arg);
}

int qbo_create_text(struct qbo *q, const struct gw_connection *c, const char *entity, char *text,
                    const char *requestid, qbo_cb cb, void *arg)
{
    return write_call(q, c, CALL_CREATE, entity, NULL, text, requestid, cb, arg);
}

int qbo_update(struct qbo *q, const struct gw_connection *c, const char *entity, json_t *obj,
               const char *requestid, qbo_cb cb, void *arg)
{
    json_t *o = json_deep_copy(obj);
    json_object_set_new(o, "sparse", json_true());
    int rc = write_call(q, c, CALL_UPDATE, entity, o, NULL, requestid, cb, arg);
    json_decref(o);
    return rc;
}

/* A void or a delete: the body is the Id and SyncToken alone. */
static int id_call(struct qbo *q, const struct gw_connection *c, enum call_kind kind,
                   const char *entity, const char *id, const char *sync_token,
                   const char *requestid, qbo_cb cb, void *arg)
{
    json_t *o = json_pack("{s:s, s:s}", "Id", id, "SyncToken", sync_token);
    int rc = o ? write_call(q, c, kind, entity, o, NULL, requestid, cb, arg) : -1;
    json_decref(o);
    return rc;
}

int qbo_void(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
             const char *sync_token, const char *requestid, qbo_cb cb, void *arg)
{
    return id_call(q, c, CALL_VOID, entity, id, sync_token, requestid, cb, arg);
}

int qbo_delete(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
               const char *sync_token, const char *requestid, qbo_cb cb, void *arg)
{
    return id_call(q, c, CALL_DELETE, entity, id, sync_token, requestid, cb, arg);
}

int qbo_cdc(struct qbo *q, const struct gw_connection *c, const char *entities,
            const char *changed_since, qbo_cb cb, void *arg)
{
    char *e = http_escape(entities), *t = http_escape(changed_since), *path = NULL;
    if (e == NULL || t == NULL || asprintf(&path, "cdc?entities=%s&changedSince=%s", e, t) < 0)
        path = NULL;
    free(e);
    free(t);
    if (path == NULL)
        return -1;
    struct call *call = new_call(q, c, CALL_CDC, "GET", make_url(q, c, path, NULL), cb, arg);
    free(path);
    if (call == NULL)
        return -1;
    start_call(call);
    return 0;
}

/* 5010: read the entity again and send the same change with its SyncToken. */
static void stale_read_done(const struct qbo_result *r, void *arg)
{
    struct call *call = arg;
    if (r->kind != QBO_OK) {
        struct qbo_result copy = *r;
        finish_call(call, &copy);
        return;
    }
    json_t *fresh = json_object_get(r->body, call->entity);
    json_t *token = json_object_get(fresh, "SyncToken");
    if (!json_is_string(token)) {
        struct qbo_result f = {.kind = QBO_FAULT};
        gw_errf(f.error, sizeof f.error, "5010 stale object, and the re-read %s has no SyncToken",
                call->entity);
        finish_call(call, &f);
        return;
    }
    json_object_set(call->update, "SyncToken", token);
    free(call->body);
    call->body = dump_body(call->update);
    call->stale_retried = true;
    if (call->requestid != NULL) {
        /* QBO answers a repeated requestid with its first answer - the 5010
         * just received - so the re-applied change goes under an id of its
         * own, derived from the first (the same on every retry of the step). */
        char rid[64], extra[160], ent[64];
        snprintf(rid, sizeof rid, "%.47s-s", call->requestid);
        char *erid = http_escape(rid);
        snprintf(extra, sizeof extra, "requestid=%s", erid ? erid : "");
        free(erid);
        entity_path(call->entity, ent, sizeof ent);
        char *url = make_url(call->q, call->qc->c, ent, extra);
        if (url != NULL) {
            free(call->url);
            call->url = url;
            free(call->requestid);
            call->requestid = strdup(rid);
        }
    }
    gw_log(GW_LOG_INFO, call->qc->c->name, 0,
           "stale SyncToken on %s update: re-read and sent again", call->entity);
    start_call(call);
}

static void http_done(const struct http_response *resp, void *arg)
{
    struct call *call = arg;
    struct qconn *qc = call->qc;
    qc->active--;
    struct qbo_result r = {.kind = QBO_OK, .status = resp->status};
    gw_strlcpy(r.intuit_tid, resp->intuit_tid, sizeof r.intuit_tid);
    json_t *body = NULL;

    if (resp->transport_error) {
        r.kind = QBO_RETRY;
        gw_errf(r.error, sizeof r.error, "QuickBooks %s: %s",
                resp->timed_out ? "timed out" : "unreachable", resp->error);
    } else if (resp->status == 429) {
        int64_t pause = resp->retry_after_s >= 0 ? resp->retry_after_s * 1000 : THROTTLE_PAUSE_MS;
        qc->paused_until_ms = gw_now_ms() + pause;
        r.kind = QBO_THROTTLED;
        r.retry_at_ms = qc->paused_until_ms;
        char code[16] = "", msg[512] = "";
        qbo_parse_fault(resp->body, resp->body_len, code, sizeof code, msg, sizeof msg);
        gw_strlcpy(r.code, code, sizeof r.code);
        gw_errf(r.error, sizeof r.error, "HTTP 429 throttled%s%s; realm paused for %lld s",
                msg[0] ? ": " : "", msg, (long long)(pause / 1000));
        gw_log(GW_LOG_WARN, qc->c->name, 0, "QuickBooks throttled the realm: pausing %lld s",
               (long long)(pause / 1000));
    } else if (resp->status == 401 && !call->refreshed) {
        /* Expired or revoked access token: one refresh, then one more try. */
        call->refreshed = true;
        metrics_delivery(MA_QUICKBOOKS, MO_AUTH, resp->seconds);
        const char *access = tok(qc, "access_token") ?: "";
        unsigned char now_used[32];
        sig_sha256(access, strlen(access), now_used);
        /* Only the token that was refused is dropped: another call may have
         * refreshed it meanwhile. */
        if (memcmp(now_used, call->token_used, sizeof now_used) == 0)
            json_object_set_new(qc->tokens, "access_expires_ms", json_integer(0));
        pump(qc);
        start_call(call);
        return;
    } else {
        char code[16] = "", msg[900] = "";
        /* One parse serves the fault check and the answer. */
        json_t *parsed = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
        bool fault =
            body_fault(parsed, resp->body, resp->body_len, code, sizeof code, msg, sizeof msg);
        gw_strlcpy(r.code, code, sizeof r.code);
        if (resp->status >= 200 && resp->status < 300 && !fault) {
            body = parsed;
            parsed = NULL;
            if (body == NULL) {
                r.kind = QBO_RETRY;
                gw_errf(r.error, sizeof r.error, "HTTP %ld with a body that is not JSON",
                        resp->status);
            }
        } else if (resp->status == 400 && strcmp(code, "5010") == 0 && call->kind == CALL_UPDATE &&
                   !call->stale_retried) {
            pump(qc);
            if (qbo_read(call->q, qc->c, call->entity,
                         json_string_value(json_object_get(call->update, "Id")) ?: "",
                         stale_read_done, call) == 0) {
                metrics_delivery(MA_QUICKBOOKS, MO_FAULT, resp->seconds);
                json_decref(parsed);
                return;
            }
            r.kind = QBO_RETRY;
        } else {
            r.kind = resp->status >= 500 || resp->status == 401 || resp->status == 408 ? QBO_RETRY
                                                                                       : QBO_FAULT;
            gw_errf(r.error, sizeof r.error, "HTTP %ld%s%s", resp->status, fault ? " " : "",
                    fault ? msg : "");
        }
        json_decref(parsed); /* NULL when it became the answer */
    }
    if (r.kind == QBO_RETRY || r.kind == QBO_FAULT)
        gw_strlcpy(qc->last_error, r.error, sizeof qc->last_error);
    static const enum metric_outcome outcome_of[] = {[QBO_OK] = MO_OK,
                                                     [QBO_FAULT] = MO_FAULT,
                                                     [QBO_RETRY] = MO_RETRY,
                                                     [QBO_THROTTLED] = MO_THROTTLED,
                                                     [QBO_NO_AUTH] = MO_AUTH};
    metrics_delivery(MA_QUICKBOOKS, outcome_of[r.kind], resp->seconds);
    r.body = body;
    r.request_text = call->body;
    if (!resp->transport_error) {
        r.response_text = resp->body;
        r.response_len = resp->body_len;
    }
    pump(qc);
    finish_call(call, &r);
    json_decref(body);
}

/* ---- OAuth ------------------------------------------------------------------ */

char *qbo_authorize_url(struct qbo *q, const struct gw_connection *c)
{
    unsigned char rnd[32];
    struct oauth_state *st = calloc(1, sizeof *st);
    if (st == NULL || sig_random(rnd, sizeof rnd) != 0) {
        free(st);
        return NULL;
    }
    gw_hex(rnd, sizeof rnd, st->state);
    st->c = c;
    st->expires_ms = gw_now_ms() + STATE_TTL_MS;
    st->next = q->states;
    q->states = st;
    char *cid = http_escape(q->cfg->client_id ? q->cfg->client_id : "");
    char *redirect = http_escape(q->cfg->redirect_url ? q->cfg->redirect_url : "");
    char *url = NULL;
    if (asprintf(&url,
                 "%s?client_id=%s&response_type=code&scope=com.intuit.quickbooks.accounting"
                 "&redirect_uri=%s&state=%s",
                 q->cfg->oauth_authorize_url, cid ? cid : "", redirect ? redirect : "",
                 st->state) < 0)
        url = NULL;
    free(cid);
    free(redirect);
    return url;
}

int qbo_authorize_callback(struct qbo *q, const char *state, const char *code, const char *realm_id,
                           qbo_cb cb, void *arg)
{
    int64_t now = gw_now_ms();
    struct oauth_state **pp = &q->states, *found = NULL;
    while (*pp) {
        struct oauth_state *s = *pp;
        bool match = state && strlen(state) == 64 && sig_token_equal(s->state, state);
        if (match || s->expires_ms < now) {
            *pp = s->next;
            if (match && s->expires_ms >= now)
                found = s;
            else
                free(s);
            continue;
        }
        pp = &s->next;
    }
    if (found == NULL)
        return -1;
    const struct gw_connection *c = found->c;
    free(found);
    if (code == NULL || realm_id == NULL || (c->realm_id && strcmp(c->realm_id, realm_id) != 0))
        return -2;
    struct qconn *qc = qconn_of(q, c);
    char *ecode = http_escape(code), *eredir = http_escape(q->cfg->redirect_url ?: "");
    char *form = NULL;
    if (asprintf(&form, "grant_type=authorization_code&code=%s&redirect_uri=%s", ecode ?: "",
                 eredir ?: "") < 0)
        form = NULL;
    free(ecode);
    free(eredir);
    int rc = form ? post_token(qc, form, cb, arg, realm_id) : -1;
    free(form);
    return rc;
}

/* ---- status, lifecycle ----------------------------------------------------- */

json_t *qbo_status(struct qbo *q, const struct gw_connection *c)
{
    struct qconn *qc = qconn_of(q, c);
    json_t *o = json_object();
    if (qc == NULL)
        return o;
    if (qc->tokens == NULL)
        reload_tokens(qc);
    json_object_set_new(o, "authorised", json_boolean(!needs_reauth(qc)));
    if (qc->tokens) {
        char ts[GW_TS_LEN];
        json_int_t a = json_integer_value(json_object_get(qc->tokens, "access_expires_ms"));
        json_int_t r = json_integer_value(json_object_get(qc->tokens, "refresh_expires_ms"));
        if (a > 0) {
            gw_ts_format(a, ts, sizeof ts);
            json_object_set_new(o, "access_token_expires_at", json_string(ts));
        }
        if (r > 0) {
            gw_ts_format(r, ts, sizeof ts);
            json_object_set_new(o, "refresh_token_expires_at", json_string(ts));
        }
    }
    if (qc->paused_until_ms > gw_now_ms()) {
        char ts[GW_TS_LEN];
        gw_ts_format(qc->paused_until_ms, ts, sizeof ts);
        json_object_set_new(o, "throttled_until", json_string(ts));
    }
    if (qc->last_error[0])
        json_object_set_new(o, "last_error", json_string(qc->last_error));
    return o;
}

struct qbo *qbo_new(struct event_base *base, const struct gw_config *cfg, struct store *st,
                    struct committer *committer, struct http_client *http)
{
    struct qbo *q = calloc(1, sizeof *q);
    q->cfg = cfg;
    q->st = st;
    q->committer = committer;
    q->http = http;
    q->conns = calloc(cfg->nconns ? cfg->nconns : 1, sizeof *q->conns);
    for (size_t i = 0; i < cfg->nconns; i++) {
        struct qconn *qc = &q->conns[i];
        qc->q = q;
        qc->c = &cfg->conns[i];
        qc->sec_ring = calloc((size_t)cfg->qbo_rate_per_sec, sizeof *qc->sec_ring);
        qc->min_ring = calloc((size_t)cfg->qbo_rate_per_min, sizeof *qc->min_ring);
        qc->timer = evtimer_new(base, on_timer, qc);
        qc->batch_ring = calloc((size_t)cfg->qbo_batch_per_min, sizeof *qc->batch_ring);
        qc->batch_ev = event_new(base, -1, 0, on_batch, qc);
        reload_tokens(qc);
    }
    return q;
}

void qbo_drain(struct qbo *q)
{
    q->draining = true;
    for (size_t i = 0; i < q->cfg->nconns; i++) {
        struct qconn *qc = &q->conns[i];
        evtimer_del(qc->timer);
        event_del(qc->batch_ev);
        struct call *lists[] = {qc->batch_head, qc->queue_head};
        qc->batch_head = qc->batch_tail = qc->queue_head = qc->queue_tail = NULL;
        qc->nbatch = 0;
        for (size_t k = 0; k < 2; k++)
            for (struct call *c = lists[k], *next; c != NULL; c = next) {
                next = c->next;
                not_sent(c);
            }
    }
}

void qbo_free(struct qbo *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->cfg->nconns; i++) {
        struct qconn *qc = &q->conns[i];
        for (struct call *c = qc->queue_head, *n; c; c = n) {
            n = c->next;
            free_call(c);
        }
        for (struct call *c = qc->auth_wait, *n; c; c = n) {
            n = c->next;
            free_call(c);
        }
        json_decref(qc->tokens);
        for (struct call *c = qc->batch_head, *n; c; c = n) {
            n = c->next;
            free_call(c);
        }
        free(qc->sec_ring);
        free(qc->min_ring);
        free(qc->batch_ring);
        event_free(qc->timer);
        event_free(qc->batch_ev);
    }
    while (q->states) {
        struct oauth_state *n = q->states->next;
        free(q->states);
        q->states = n;
    }
    free(q->conns);
    free(q);
}
