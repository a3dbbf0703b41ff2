/*
 * qbo.h - the QuickBooks Online client: OAuth 2.0 tokens, the accounting
 * API calls the flows need, fault parsing, and the per-realm limits.
 *
 * Every call is asynchronous and ends in exactly one callback with a
 * classified result. Calls of one connection pass a limiter below Intuit's
 * (per second, per minute, concurrent); a 429 pauses the realm. The access
 * token is refreshed before it expires and once on a 401; refreshes are one
 * at a time per connection, and a rotated refresh token is committed to the
 * store before it is used.
 */
#ifndef GW_QBO_H
#define GW_QBO_H

#include "committer.h"
#include "config.h"
#include "http.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum qbo_kind {
    QBO_OK,
    QBO_FAULT,     /* permanent: validation or business fault; error says which */
    QBO_RETRY,     /* transient: transport error, timeout, 5xx, 401 after a refresh */
    QBO_THROTTLED, /* 429: the realm is paused until retry_at_ms; costs no attempt */
    QBO_NO_AUTH,   /* no usable tokens: the connection needs (re)authorisation */
};

struct qbo_result {
    enum qbo_kind kind;
    long status;         /* HTTP status, 0 if none */
    json_t *body;        /* parsed JSON response, borrowed during the callback; may be NULL */
    char code[16];       /* first fault code ("6240"), or "" */
    char error[1024];    /* readable: status, fault type, code, message and detail of each error */
    int64_t retry_at_ms; /* throttled: when the realm may go on */
    char intuit_tid[64]; /* of the last answer, or "" */
    /* As they went over the wire (borrowed during the callback), or NULL:
     * the request body sent, and the answer's body (response_len bytes). */
    const char *request_text;
    const char *response_text;
    size_t response_len;
};

typedef void (*qbo_cb)(const struct qbo_result *r, void *arg);

struct qbo;

struct qbo *qbo_new(struct event_base *base, const struct gw_config *cfg, struct store *st,
                    struct committer *committer, struct http_client *http);
void qbo_free(struct qbo *q);
/*
 * SIGTERM: calls that have not gone out (waiting for the limiter, a 429
 * pause or a batch to fill), and any asked for from now on, end at once as
 * QBO_THROTTLED, "not sent": their events go back to the queue without
 * losing an attempt. Calls on the wire end as they do, and so do calls
 * waiting for a token refresh on the wire (when it ends).
 */
void qbo_drain(struct qbo *q);

/* GET /v3/company/{realm}/{entity}/{id} */
int qbo_read(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
             qbo_cb cb, void *arg);
/* GET .../query?query=... (build literals with qbo_quote) */
int qbo_query(struct qbo *q, const struct gw_connection *c, const char *query, qbo_cb cb,
              void *arg);
/* POST .../{entity}?requestid=... ; requestid must be the same on every retry of one step. */
int qbo_create(struct qbo *q, const struct gw_connection *c, const char *entity, json_t *obj,
               const char *requestid, qbo_cb cb, void *arg);
/* The same with the body as compact JSON text, which it takes (freed on every path). */
int qbo_create_text(struct qbo *q, const struct gw_connection *c, const char *entity, char *text,
                    const char *requestid, qbo_cb cb, void *arg);
/*
 * Sparse update: obj holds Id, SyncToken and the fields to change. On a 5010
 * stale object the entity is read again and the same fields are sent once
 * more with the fresh SyncToken, at once.
 */
int qbo_update(struct qbo *q, const struct gw_connection *c, const char *entity, json_t *obj,
               const char *requestid, qbo_cb cb, void *arg);
/* POST .../{entity}?operation=void with Id and SyncToken (SalesReceipt, Invoice, Payment...). */
int qbo_void(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
             const char *sync_token, const char *requestid, qbo_cb cb, void *arg);

/* The fault of a write dated in a period QuickBooks' books are closed for
 * (Preferences.AccountingInfoPrefs.BookCloseDate): 5010 "Account Period
 * Closed", as integrators report it; a stale object is a 5010 too. */
bool qbo_period_closed(const struct qbo_result *r);

/* POST .../{entity}?operation=delete with Id and SyncToken (transactions). */
int qbo_delete(struct qbo *q, const struct gw_connection *c, const char *entity, const char *id,
               const char *sync_token, const char *requestid, qbo_cb cb, void *arg);

/*
 * Money never passes through a double: flows give decimal fields (Amount,
 * UnitPrice, Qty, TotalTax, ...) as decimal text, "9.95", and the request
 * body carries them as the JSON numbers QuickBooks wants, digit for digit.
 * This rewrites "Key":"9.95" to "Key":9.95 in a compact JSON text, in place,
 * for those keys only and only when the text is a plain decimal.
 */
void qbo_exact_numbers(char *text);

/* GET .../cdc?entities=...&changedSince=... */
int qbo_cdc(struct qbo *q, const struct gw_connection *c, const char *entities,
            const char *changed_since, qbo_cb cb, void *arg);

/*
 * Cents of a QuickBooks amount as an answer holds it (a JSON number, parsed
 * as a double that keeps the answer's at most 15 significant digits, so its
 * shortest text is the answer's own), or of decimal text. False when it is
 * not money.
 */
bool qbo_cents_of(json_t *v, int64_t *cents);
/* The same of member k of o; 0 when absent or not money. */
int64_t qbo_cents_field(json_t *o, const char *k);

/* The rows of a query answer: QueryResponse.<entity> (borrowed), or NULL. */
json_t *qbo_rows(json_t *body, const char *entity);

/* A query string literal: quotes and backslashes escaped. New string. */
char *qbo_quote(const char *s);

/*
 * The condition "field = 'value'" (new string). QuickBooks refuses some
 * characters in a query even inside a literal (curly quotes, en and em
 * dash); a value with them becomes "field LIKE 'pattern'" with % in their
 * place and *exact false: the caller keeps only the rows whose field equals
 * value.
 */
char *qbo_where_equals(const char *field, const char *value, bool *exact);

/*
 * Parse a QuickBooks error response (JSON Fault or fault, one or more
 * errors; or the XML throttle body) into code and a readable message.
 * Returns false when body holds no fault.
 */
bool qbo_parse_fault(const char *body, size_t len, char *code, size_t codelen, char *msg,
                     size_t msglen);

/* OAuth: the authorisation URL for a connection (state is issued and kept). New string. */
char *qbo_authorize_url(struct qbo *q, const struct gw_connection *c);
/* OAuth callback: check state, exchange the code, store the tokens. cb gets QBO_OK or an error. */
int qbo_authorize_callback(struct qbo *q, const char *state, const char *code, const char *realm_id,
                           qbo_cb cb, void *arg);

/* Status for one connection: token expiry, needs re-authorisation, paused. New object. */
json_t *qbo_status(struct qbo *q, const struct gw_connection *c);
/* Is the connection waiting for re-authorisation? (re-reads the store now and then) */
bool qbo_needs_auth(struct qbo *q, const struct gw_connection *c);

/* Store tokens for a connection (the `tokens` command uses this without a daemon). */
int qbo_tokens_put(struct store *st, const char *conn, json_t *tokens, char *err, size_t errlen);
/* Token response (access_token, refresh_token, expires_in...) to our stored form. New object. */
json_t *qbo_tokens_from_response(json_t *resp, const char *realm_id, int64_t now_ms);
/* Meta key of a connection's tokens. */
void qbo_tokens_key(const char *conn, char *out, size_t outlen);

#endif
