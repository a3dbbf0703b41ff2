/*
 * activity.c - what an event's run asked of QuickBooks and Mplus, and what
 * they answered: the activity log `show ID` and the dashboard display per
 * attempt.
 *
 * Flows make their calls through task_qbo_* and task_mplus_call, which pass
 * them on to the clients and note each exchange in the task (t->calls, kept
 * with the attempt in the event's history): the system, the request (method
 * and path, or the Mplus operation), status, QuickBooks' intuit_tid or the
 * X-Request-Id sent to Mplus, the time taken, and both bodies as JSON text,
 * with values of secret-looking members replaced by "***" and each body cut
 * at activity_body_max bytes. Bodies go with the event's payload after
 * retention_days (a dead event's too, unless keep_dead_payloads).
 */
#include "clients.h"
#include "jsonout.h"
#include "mplus.h"
#include "qbo.h"
#include "task.h"
#include "util.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACTIVITY_BODY_MAX  2048 /* bytes of one body kept, without a setting */
#define ACTIVITY_CALLS_MAX 16   /* exchanges kept per attempt; later ones are counted */

/* Member names whose values never reach the log, in any letter case: those
 * holding one of these parts, and these names (SyncToken is no secret). */
struct word {
    const char *text; /* lower case */
    size_t len;
};
#define WORD(w)                                                                                    \
    {                                                                                              \
        w, sizeof w - 1                                                                            \
    }
static const struct word secret_parts[] = {
    WORD("password"), WORD("secret"),       WORD("authorization"), WORD("apikey"),
    WORD("api_key"),  WORD("access_token"), WORD("refresh_token"), {NULL, 0}};
static const struct word secret_names[] = {
    WORD("token"), WORD("id_token"), WORD("ident"), WORD("pin"), {NULL, 0}};

static bool secret_name(const char *name)
{
    for (size_t i = 0; secret_parts[i].text; i++)
        if (strcasestr(name, secret_parts[i].text) != NULL)
            return true;
    for (size_t i = 0; secret_names[i].text; i++)
        if (strcasecmp(name, secret_names[i].text) == 0)
            return true;
    return false;
}

json_t *activity_redacted(json_t *v)
{
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m)
        {
            json_object_set_new(out, k, secret_name(k) ? json_string("***") : activity_redacted(m));
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            json_array_append_new(out, activity_redacted(m));
        }
        return out;
    }
    return json_incref(v);
}

/* Bytes of one body the activity log keeps. */
static size_t body_max(const struct task *t)
{
    return t->clients && t->clients->body_max > 0 ? (size_t)t->clients->body_max
                                                  : ACTIVITY_BODY_MAX;
}

/* Text as the activity log keeps it: at most the task's activity_body_max
 * bytes, cut on a UTF-8 character boundary, saying how much there was.
 * utf8: the text is known to be UTF-8 (it parsed as JSON), so not checked. */
static json_t *cut_text(const struct task *t, const char *text, size_t len, bool utf8)
{
    size_t max = body_max(t);
    if (len <= max)
        return utf8 ? json_stringn_nocheck(text, len) : gw_json_stringn(text, len);
    size_t cut = max;
    while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
        cut--;
    char *buf = NULL;
    int n = asprintf(&buf, "%.*s… (%zu bytes)", (int)cut, text, len);
    json_t *out = n < 0  ? NULL
                  : utf8 ? json_stringn_nocheck(buf, (size_t)n)
                         : gw_json_stringn(buf, (size_t)n);
    free(buf);
    return out;
}

/* The body as JSON text of at most the task's activity_body_max bytes, or
 * NULL; sent to QuickBooks, decimals are written as numbers, as qbo.c sends
 * them. */
static json_t *body_text(const struct task *t, json_t *body, bool to_qbo)
{
    if (body == NULL)
        return NULL;
    json_t *clean = activity_redacted(body);
    size_t len;
    char *text = gw_json_text(clean, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY, &len);
    json_decref(clean);
    if (text == NULL)
        return NULL;
    if (to_qbo)
        qbo_exact_numbers(text);
    json_t *out = cut_text(t, text, to_qbo ? strlen(text) : len, false);
    free(text);
    return out;
}

/* ASCII letters in lower case; other bytes as they are. */
static unsigned char folded(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

/* Whether text (left bytes) starts with w in any letter case. */
static bool word_at(const char *text, size_t left, const struct word *w)
{
    if (left < w->len)
        return false;
    for (size_t i = 0; i < w->len; i++)
        if (folded((unsigned char)text[i]) != (unsigned char)w->text[i])
            return false;
    return true;
}

/* Per byte, the secret parts that start with it (bits 0-7), the secret
 * names (bits 8-15, tried after a quote), and bit 16 for a quote or a
 * backslash. Per first letter of a part, its possible second letters (bit
 * k: 'a' + k). Made once, from the tables above. */
enum { QUOTE_OR_ESCAPE = 1u << 16 };
static uint32_t first[256], second[256];
static pthread_once_t starts_made = PTHREAD_ONCE_INIT;

static void make_starts(void)
{
    _Static_assert(sizeof secret_parts / sizeof *secret_parts <= 9, "a part per bit");
    _Static_assert(sizeof secret_names / sizeof *secret_names <= 9, "a name per bit");
    for (unsigned k = 0; secret_parts[k].text; k++) {
        unsigned char c = (unsigned char)secret_parts[k].text[0];
        unsigned char d = (unsigned char)secret_parts[k].text[1];
        first[c] |= 1u << k;
        first[toupper(c)] |= 1u << k;
        second[c] |= 1u << (d - 'a');
        second[toupper(c)] |= 1u << (d - 'a');
    }
    for (unsigned k = 0; secret_names[k].text; k++) {
        unsigned char c = (unsigned char)secret_names[k].text[0];
        first[c] |= 0x100u << k;
        first[toupper(c)] |= 0x100u << k;
    }
    first['"'] |= QUOTE_OR_ESCAPE;
    first['\\'] |= QUOTE_OR_ESCAPE;
}

/*
 * One pass over the text, comparing with the tables above only where one of
 * their words can start: at the first two letters of a secret part, and at a
 * quote (a secret name is a whole member name). Bytes that start nothing are
 * skipped in a tight loop. A letter can hide in JSON text only as a \u
 * escape, so a text with one counts as possibly secret and is parsed and
 * redacted.
 */
bool activity_may_hold_secret(const char *text, size_t len)
{
    pthread_once(&starts_made, make_starts);
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < len; i++) {
        uint32_t at = first[t[i]];
        if ((at & (QUOTE_OR_ESCAPE | 0xFF)) == 0)
            continue;
        unsigned char c = t[i];
        if (c == '\\') {
            if (i + 1 < len && t[i + 1] == 'u')
                return true;
        } else if (c == '"') {
            if (i + 1 == len)
                break;
            for (unsigned m = first[t[i + 1]] >> 8 & 0xFF; m != 0; m &= m - 1) {
                const struct word *w = &secret_names[__builtin_ctz(m)];
                size_t end = i + 1 + w->len; /* the closing quote */
                if (end < len && t[end] == '"' && word_at(text + i + 1, len - i - 1, w))
                    return true;
            }
        } else if (i + 1 < len && (unsigned)(folded(t[i + 1]) - 'a') < 26 &&
                   (second[c] >> (folded(t[i + 1]) - 'a') & 1)) {
            for (unsigned m = at & 0xFF; m != 0; m &= m - 1)
                if (word_at(text + i, len - i, &secret_parts[__builtin_ctz(m)]))
                    return true;
        }
    }
    return false;
}

/* A QuickBooks body as it went over the wire, when nothing in it could be a
 * member activity_redacted() hides: the text itself, with no parse, copy or
 * second dump. NULL sends the caller down the redacting path. */
static json_t *wire_text(const struct task *t, const char *text, size_t len, bool utf8)
{
    /* Only what the log keeps is looked at: a member cut off is not logged. */
    size_t kept = len < body_max(t) ? len : body_max(t);
    if (text == NULL || len == 0 || activity_may_hold_secret(text, kept))
        return NULL;
    return cut_text(t, text, len, utf8);
}

/* One exchange on its way: the entry to complete and whom to answer. */
struct pending {
    struct task *t;
    json_t *entry;
    json_t *sent;   /* a QuickBooks request's body, until its answer says how it was sent */
    bool sent_text; /* a body given as text with nothing to redact: the answer has all of it */
    int64_t started_ms;
    qbo_cb qcb;
    mplus_cb mcb;
    void *arg;
};

static struct pending *pending_new(struct task *t, json_t *entry, void *arg)
{
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        json_decref(entry);
        return NULL;
    }
    p->t = t;
    p->entry = entry;
    p->arg = arg;
    p->started_ms = gw_now_ms();
    return p;
}

static void pending_record(struct pending *p)
{
    struct task *t = p->t;
    json_object_set_new(p->entry, "ms", json_integer((json_int_t)(gw_now_ms() - p->started_ms)));
    if (t->calls == NULL)
        t->calls = json_array();
    if (json_array_size(t->calls) < ACTIVITY_CALLS_MAX)
        json_array_append(t->calls, p->entry);
    else
        t->calls_dropped++;
    json_decref(p->entry);
}

static void set_text(json_t *entry, const char *key, const char *value)
{
    if (value != NULL && value[0] != '\0')
        json_object_set_new(entry, key, json_string(value));
}

/* The answer of either system into the entry, which joins the task's calls;
 * p is freed. */
static void pending_answered(struct pending *p, long status, const char *outcome, const char *error,
                             json_t *body, json_t *wire_answer)
{
    json_object_set_new(p->entry, "status", json_integer(status));
    set_text(p->entry, "outcome", outcome);
    set_text(p->entry, "error", error);
    json_t *answer = wire_answer ? wire_answer : body_text(p->t, body, false);
    if (answer != NULL)
        json_object_set_new(p->entry, "response", answer);
    json_decref(p->sent);
    pending_record(p);
    free(p);
}

/* ---- QuickBooks ---------------------------------------------------------------- */

static void qbo_answered(const struct qbo_result *res, void *arg)
{
    struct pending *p = arg;
    static const char *const kinds[] = {[QBO_OK] = "ok",
                                        [QBO_FAULT] = "fault",
                                        [QBO_RETRY] = "retry",
                                        [QBO_THROTTLED] = "throttled",
                                        [QBO_NO_AUTH] = "not authorised"};
    set_text(p->entry, "intuit_tid", res->intuit_tid);
    if (p->sent != NULL || p->sent_text) {
        json_t *sent = wire_text(p->t, res->request_text,
                                 res->request_text ? strlen(res->request_text) : 0, false);
        if (sent == NULL)
            sent = body_text(p->t, p->sent, true);
        if (sent != NULL)
            json_object_set_new(p->entry, "request", sent);
    }
    qbo_cb cb = p->qcb;
    void *cb_arg = p->arg;
    pending_answered(p, res->status, kinds[res->kind], res->error, res->body,
                     /* An answer that became res->body parsed whole: it is UTF-8. */
                     wire_text(p->t, res->response_text, res->response_len, res->body != NULL));
    cb(res, cb_arg);
}

/* The entry of a QuickBooks request: method, path below the company, body. */
static struct pending *qbo_pending(struct task *t, const char *method, const char *path,
                                   json_t *body, qbo_cb cb, void *arg)
{
    json_t *e =
        json_pack("{s:s, s:s, s:s}", "system", "quickbooks", "method", method, "path", path);
    struct pending *p = e ? pending_new(t, e, arg) : NULL;
    if (p != NULL) {
        p->qcb = cb;
        p->sent = json_incref(body); /* its text comes with the answer */
    }
    return p;
}

static void lower(const char *in, char *out, size_t len)
{
    size_t i = 0;
    for (; in[i] && i + 1 < len; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = '\0';
}

/* A call that did not start answers nothing: the entry goes. */
static int started(int rc, struct pending *p)
{
    if (rc != 0) {
        json_decref(p->entry);
        json_decref(p->sent);
        free(p);
    }
    return rc;
}

int task_qbo_read(struct task *t, const char *entity, const char *id, qbo_cb cb, void *arg)
{
    char ent[64], path[200];
    lower(entity, ent, sizeof ent);
    snprintf(path, sizeof path, "/%s/%s", ent, id);
    struct pending *p = qbo_pending(t, "GET", path, NULL, cb, arg);
    if (p == NULL)
        return -1;
    return started(qbo_read(t->clients->qbo, t->conn, entity, id, qbo_answered, p), p);
}

int task_qbo_query(struct task *t, const char *query, qbo_cb cb, void *arg)
{
    char *path = NULL;
    if (asprintf(&path, "/query?query=%s", query) < 0)
        return -1;
    struct pending *p = qbo_pending(t, "GET", path, NULL, cb, arg);
    free(path);
    if (p == NULL)
        return -1;
    return started(qbo_query(t->clients->qbo, t->conn, query, qbo_answered, p), p);
}

static struct pending *write_pending(struct task *t, const char *entity, const char *what,
                                     json_t *obj, qbo_cb cb, void *arg)
{
    char ent[64], path[200];
    lower(entity, ent, sizeof ent);
    snprintf(path, sizeof path, "/%s%s", ent, what);
    return qbo_pending(t, "POST", path, obj, cb, arg);
}

/* A create with obj, or with its text (taken). A text that may hold a
 * secret is kept parsed, amounts still text, to be redacted as a tree. */
static int create(struct task *t, const char *entity, json_t *obj, char *text,
                  const char *requestid, qbo_cb cb, void *arg)
{
    json_t *parsed = NULL;
    if (text != NULL) {
        size_t len = strlen(text);
        if (activity_may_hold_secret(text, len < body_max(t) ? len : body_max(t)))
            obj = parsed = json_loadb(text, len, 0, NULL);
    }
    struct pending *p = write_pending(t, entity, "", obj, cb, arg);
    json_decref(parsed);
    if (p == NULL) {
        free(text);
        return -1;
    }
    p->sent_text = text != NULL && parsed == NULL;
    set_text(p->entry, "requestid", requestid);
    struct qbo *q = t->clients->qbo;
    return started(text ? qbo_create_text(q, t->conn, entity, text, requestid, qbo_answered, p)
                        : qbo_create(q, t->conn, entity, obj, requestid, qbo_answered, p),
                   p);
}

int task_qbo_create(struct task *t, const char *entity, json_t *obj, const char *requestid,
                    qbo_cb cb, void *arg)
{
    return create(t, entity, obj, NULL, requestid, cb, arg);
}

int task_qbo_create_text(struct task *t, const char *entity, char *text, const char *requestid,
                         qbo_cb cb, void *arg)
{
    return create(t, entity, NULL, text, requestid, cb, arg);
}

int task_qbo_update(struct task *t, const char *entity, json_t *obj, const char *requestid,
                    qbo_cb cb, void *arg)
{
    struct pending *p = write_pending(t, entity, " (sparse update)", obj, cb, arg);
    if (p == NULL)
        return -1;
    set_text(p->entry, "requestid", requestid);
    return started(qbo_update(t->clients->qbo, t->conn, entity, obj, requestid, qbo_answered, p),
                   p);
}

int task_qbo_void(struct task *t, const char *entity, const char *id, const char *sync_token,
                  const char *requestid, qbo_cb cb, void *arg)
{
    json_t *obj = json_pack("{s:s, s:s}", "Id", id, "SyncToken", sync_token);
    struct pending *p = write_pending(t, entity, "?operation=void", obj, cb, arg);
    json_decref(obj);
    if (p == NULL)
        return -1;
    set_text(p->entry, "requestid", requestid);
    return started(
        qbo_void(t->clients->qbo, t->conn, entity, id, sync_token, requestid, qbo_answered, p), p);
}

/* ---- Mplus ------------------------------------------------------------------- */

static void mplus_answered(const struct mplus_result *res, void *arg)
{
    struct pending *p = arg;
    static const char *const kinds[] = {[MPLUS_OK] = "ok",
                                        [MPLUS_FAULT] = "fault",
                                        [MPLUS_RETRY] = "retry",
                                        [MPLUS_AUTH] = "login refused"};
    set_text(p->entry, "request_id", res->request_id);
    set_text(p->entry, "result", res->code);
    mplus_cb cb = p->mcb;
    void *cb_arg = p->arg;
    pending_answered(p, res->status, kinds[res->kind], res->error, res->body, NULL);
    cb(res, cb_arg);
}

int task_mplus_call(struct task *t, const char *op, json_t *request, mplus_cb cb, void *arg)
{
    json_t *e = json_pack("{s:s, s:s}", "system", "mplus", "operation", op);
    json_t *sent = body_text(t, request, false);
    if (sent != NULL)
        json_object_set_new(e, "request", sent);
    struct pending *p = e ? pending_new(t, e, arg) : NULL;
    if (p == NULL)
        return -1;
    p->mcb = cb;
    return started(mplus_call(t->clients->mplus, t->conn, op, request, mplus_answered, p), p);
}
