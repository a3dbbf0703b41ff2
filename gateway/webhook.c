/*
 * webhook.c - QuickBooks and MplusKASSA webhook bodies to events.
 *
 * Dedupe keys (DESIGN 4.4) are built here, as text, so an operator can read
 * them in `gateway show`; the store hashes them to fixed-size keys.
 */
#include "webhook.h"
#include "sig.h"
#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *fmt_key(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_key(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

char *webhook_change_key(const char *realm, const char *entity, const char *id,
                         const char *occurred)
{
    /* QuickBooks' LastUpdatedTime (what CDC rows carry) has whole seconds;
     * webhooks may add milliseconds: the key keeps the seconds. */
    return fmt_key("qbo-change|%s|%s|%s|%.19sZ", realm, entity, id, occurred);
}

/* A member looked up without regard to case (Intuit spells deletedId both ways). */
static json_t *get_ci(json_t *obj, const char *key)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strcasecmp(k, key) == 0)
            return v;
    }
    return NULL;
}

/* A string member, or an integer rendered as text into buf; NULL otherwise. */
static const char *get_text(json_t *obj, const char *key, char *buf, size_t buflen)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 256 &&
        strlen(json_string_value(v)) == json_string_length(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, buflen, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

/* Whole body unusable: one dead event keeping the raw bytes. */
static int add_malformed_body(const char *prefix, const char *connection, const char *source,
                              const char *body, size_t len, int64_t now_ms, const char *why,
                              struct gw_batch *out)
{
    unsigned char h[32];
    char hex[65];
    sig_sha256(body, len, h);
    gw_hex(h, 32, hex);
    char *key = fmt_key("%s|malformed|%s", prefix, hex);
    json_t *rec = event_new_record(connection, source, NULL, NULL, NULL, GW_DEAD, now_ms, NULL,
                                   "malformed", why, NULL);
    if (key == NULL || rec == NULL || batch_add(out, key, rec, GW_DEAD) < 0)
        return -1;
    out->ev[out->n - 1].raw = body;
    out->ev[out->n - 1].raw_len = len;
    return 0;
}

/* One entity of a body unusable: a dead event holding that entity. */
static int add_malformed_entity(const char *realm, const char *body, size_t len, size_t index,
                                json_t *entity, int64_t now_ms, const char *why,
                                const struct gw_config *cfg, struct gw_batch *out)
{
    unsigned char h[32];
    char hex[65];
    sig_sha256(body, len, h);
    gw_hex(h, 32, hex);
    char *key = fmt_key("qbo|malformed|%s|%zu", hex, index);
    const struct gw_connection *c = realm ? config_connection_by_realm(cfg, realm) : NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "entity %zu: %s", index, why);
    json_t *rec = event_new_record(c ? c->name : "", GW_SRC_QUICKBOOKS, NULL, NULL, NULL, GW_DEAD,
                                   now_ms, NULL, "malformed", msg, json_incref(entity));
    if (realm)
        json_object_set_new(rec, "realm_id", json_string(realm));
    if (key == NULL || rec == NULL)
        return -1;
    return batch_add(out, key, rec, GW_DEAD);
}

/* Route a QBO change to its connection by realm; unknown realms are skipped. */
static int add_qbo_event(const struct gw_config *cfg, const char *realm, const char *entity,
                         const char *entity_id, const char *operation, const char *occurred,
                         const char *deleted_id, json_t *payload, char *key, int64_t now_ms,
                         struct gw_batch *out)
{
    const struct gw_connection *c = config_connection_by_realm(cfg, realm);
    enum gw_state st = c ? GW_PENDING : GW_SKIPPED;
    json_t *rec =
        event_new_record(c ? c->name : "", GW_SRC_QUICKBOOKS, entity, entity_id, operation, st,
                         now_ms, occurred, c ? NULL : "unknown realm", NULL, json_incref(payload));
    if (rec == NULL) {
        free(key);
        return -1;
    }
    json_object_set_new(rec, "realm_id", json_string(realm));
    if (deleted_id)
        json_object_set_new(rec, "deleted_id", json_string(deleted_id));
    /* The change key only matters to CDC sweeps; without them it would cost
     * every webhook one more index entry for nothing. */
    if (occurred != NULL && cfg->cdc_interval_s > 0) {
        char *change = webhook_change_key(realm, entity, entity_id, occurred);
        if (change != NULL)
            json_object_set_new(rec, "change_key", json_string(change));
        free(change);
    }
    return batch_add(out, key, rec, st);
}

static int parse_legacy(const struct gw_config *cfg, json_t *root, const char *body, size_t len,
                        int64_t now_ms, struct gw_batch *out)
{
    json_t *notes = json_object_get(root, "eventNotifications");
    if (!json_is_array(notes))
        return add_malformed_body("qbo", "", GW_SRC_QUICKBOOKS, body, len, now_ms,
                                  "eventNotifications is not an array", out);
    size_t i, j, index = 0;
    json_t *note, *ent;
    json_array_foreach(notes, i, note)
    {
        char rbuf[32];
        const char *realm =
            json_is_object(note) ? get_text(note, "realmId", rbuf, sizeof rbuf) : NULL;
        json_t *dce = json_is_object(note) ? json_object_get(note, "dataChangeEvent") : NULL;
        json_t *ents = json_is_object(dce) ? json_object_get(dce, "entities") : NULL;
        if (realm == NULL || !json_is_array(ents)) {
            if (add_malformed_entity(realm, body, len, index++, note, now_ms,
                                     "expected realmId and dataChangeEvent.entities", cfg, out) < 0)
                return -1;
            continue;
        }
        json_array_foreach(ents, j, ent)
        {
            char ibuf[32], tbuf[32], dbuf[32], ts[GW_TS_LEN];
            const char *name = json_is_object(ent) ? get_text(ent, "name", NULL, 0) : NULL;
            const char *id = json_is_object(ent) ? get_text(ent, "id", ibuf, sizeof ibuf) : NULL;
            const char *op = json_is_object(ent) ? get_text(ent, "operation", NULL, 0) : NULL;
            const char *lu =
                json_is_object(ent) ? get_text(ent, "lastUpdated", tbuf, sizeof tbuf) : NULL;
            if (name == NULL || id == NULL || op == NULL || lu == NULL) {
                if (add_malformed_entity(realm, body, len, index++, ent, now_ms,
                                         "expected name, id, operation and lastUpdated", cfg,
                                         out) < 0)
                    return -1;
                continue;
            }
            if (!gw_ts_normalise(lu, ts, sizeof ts)) {
                if (add_malformed_entity(realm, body, len, index++, ent, now_ms,
                                         "lastUpdated is not a timestamp", cfg, out) < 0)
                    return -1;
                continue;
            }
            index++;
            json_t *dv = get_ci(ent, "deletedId");
            const char *deleted = NULL;
            if (json_is_string(dv))
                deleted = json_string_value(dv);
            else if (json_is_integer(dv))
                deleted =
                    (snprintf(dbuf, sizeof dbuf, "%lld", (long long)json_integer_value(dv)), dbuf);
            char *key = fmt_key("qbo|%s|%s|%s|%s|%s", realm, name, id, op, ts);
            if (key == NULL)
                return -1;
            json_t *payload = json_pack("{s:s, s:O}", "realmId", realm, "entity", ent);
            int rc =
                add_qbo_event(cfg, realm, name, id, op, ts, deleted, payload, key, now_ms, out);
            json_decref(payload);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

/* "qbo.salesreceipt.created.v1" -> entity "SalesReceipt", operation "Create". */
static bool split_ce_type(const char *type, char *entity, size_t elen, char *op, size_t oplen)
{
    static const char *const entities[] = {
        "Account",       "Bill",          "BillPayment",   "Budget",       "Class",
        "CreditMemo",    "Currency",      "Customer",      "Department",   "Deposit",
        "Employee",      "Estimate",      "Invoice",       "Item",         "JournalCode",
        "JournalEntry",  "Payment",       "PaymentMethod", "Preferences",  "Purchase",
        "PurchaseOrder", "RefundReceipt", "SalesReceipt",  "TaxAgency",    "Term",
        "TimeActivity",  "Transfer",      "Vendor",        "VendorCredit",
    };
    static const struct {
        const char *ce, *op;
    } ops[] = {
        {"created", "Create"}, {"updated", "Update"}, {"deleted", "Delete"},  {"merged", "Merge"},
        {"void", "Void"},      {"voided", "Void"},    {"emailed", "Emailed"},
    };
    if (strncmp(type, "qbo.", 4) != 0)
        return false;
    const char *e = type + 4;
    const char *dot = strchr(e, '.');
    if (dot == NULL || dot == e)
        return false;
    const char *o = dot + 1;
    const char *dot2 = strchr(o, '.');
    size_t el = (size_t)(dot - e), ol = dot2 ? (size_t)(dot2 - o) : strlen(o);
    if (el >= elen || ol == 0 || ol >= oplen)
        return false;
    memcpy(entity, e, el);
    entity[el] = '\0';
    for (size_t i = 0; i < sizeof entities / sizeof entities[0]; i++)
        if (strcasecmp(entity, entities[i]) == 0)
            gw_strlcpy(entity, entities[i], elen);
    char opbuf[32];
    if (ol >= sizeof opbuf)
        return false;
    memcpy(opbuf, o, ol);
    opbuf[ol] = '\0';
    gw_strlcpy(op, opbuf, oplen);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcasecmp(opbuf, ops[i].ce) == 0)
            gw_strlcpy(op, ops[i].op, oplen);
    return true;
}

static int parse_cloudevents(const struct gw_config *cfg, json_t *root, const char *body,
                             size_t len, int64_t now_ms, struct gw_batch *out)
{
    size_t i;
    json_t *ce;
    json_array_foreach(root, i, ce)
    {
        char ebuf[32], abuf[32], entity[64], op[32], ts[GW_TS_LEN];
        const char *id = json_is_object(ce) ? get_text(ce, "id", NULL, 0) : NULL;
        const char *type = json_is_object(ce) ? get_text(ce, "type", NULL, 0) : NULL;
        const char *eid =
            json_is_object(ce) ? get_text(ce, "intuitentityid", ebuf, sizeof ebuf) : NULL;
        const char *realm =
            json_is_object(ce) ? get_text(ce, "intuitaccountid", abuf, sizeof abuf) : NULL;
        if (id == NULL || type == NULL || eid == NULL || realm == NULL) {
            if (add_malformed_entity(realm, body, len, i, ce, now_ms,
                                     "expected id, type, intuitentityid and intuitaccountid", cfg,
                                     out) < 0)
                return -1;
            continue;
        }
        if (!split_ce_type(type, entity, sizeof entity, op, sizeof op)) {
            if (add_malformed_entity(realm, body, len, i, ce, now_ms,
                                     "type is not qbo.<entity>.<operation>.v1", cfg, out) < 0)
                return -1;
            continue;
        }
        const char *t = get_text(ce, "time", NULL, 0);
        const char *occurred = t && gw_ts_normalise(t, ts, sizeof ts) ? ts : NULL;
        const char *deleted = NULL;
        json_t *data = get_ci(ce, "data");
        json_t *dv = json_is_object(data) ? get_ci(data, "deletedId") : NULL;
        char dbuf[32];
        if (json_is_string(dv))
            deleted = json_string_value(dv);
        else if (json_is_integer(dv))
            deleted =
                (snprintf(dbuf, sizeof dbuf, "%lld", (long long)json_integer_value(dv)), dbuf);
        char *key = fmt_key("qbo-ce|%s|%s", realm, id);
        if (key == NULL)
            return -1;
        if (add_qbo_event(cfg, realm, entity, eid, op, occurred, deleted, ce, key, now_ms, out) < 0)
            return -1;
    }
    return 0;
}

int webhook_parse_qbo(const struct gw_config *cfg, const char *body, size_t len, int64_t now_ms,
                      struct gw_batch *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc;
    if (root == NULL) {
        char why[256];
        snprintf(why, sizeof why, "not JSON: %s at line %d column %d", jerr.text, jerr.line,
                 jerr.column);
        return add_malformed_body("qbo", "", GW_SRC_QUICKBOOKS, body, len, now_ms, why, out);
    }
    if (json_is_object(root) && json_object_get(root, "eventNotifications") != NULL)
        rc = parse_legacy(cfg, root, body, len, now_ms, out);
    else if (json_is_array(root) && json_array_size(root) > 0)
        rc = parse_cloudevents(cfg, root, body, len, now_ms, out);
    else
        rc =
            add_malformed_body("qbo", "", GW_SRC_QUICKBOOKS, body, len, now_ms,
                               "neither an eventNotifications object nor a CloudEvents array", out);
    json_decref(root);
    return rc;
}

/* True when event_name is a till event the gateway acts on. */
static bool webhook_mplus_event_syncs(const char *event_name)
{
    return strcmp(event_name, "completeSession") == 0 || strcmp(event_name, "creditSession") == 0;
}

int webhook_parse_mplus(const struct gw_connection *conn, const char *event_name, const char *body,
                        size_t len, int64_t now_ms, struct gw_batch *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    char prefix[96];
    snprintf(prefix, sizeof prefix, "mplus|%s", conn->name);
    if (root == NULL || !json_is_object(root)) {
        char why[256];
        if (root == NULL)
            snprintf(why, sizeof why, "not JSON: %s at line %d column %d", jerr.text, jerr.line,
                     jerr.column);
        else
            snprintf(why, sizeof why, "expected a JSON object");
        json_decref(root);
        return add_malformed_body(prefix, conn->name, GW_SRC_MPLUS, body, len, now_ms, why, out) < 0
                   ? -1
                   : MPLUS_MALFORMED;
    }
    /* An error request wraps the event we answered badly in "original". */
    json_t *ev_body = root;
    json_t *orig = json_object_get(root, "original");
    if (json_is_object(orig))
        ev_body = orig;
    json_t *event = json_object_get(ev_body, "event");
    if (!json_is_object(event)) {
        json_decref(root);
        return add_malformed_body(prefix, conn->name, GW_SRC_MPLUS, body, len, now_ms,
                                  "no event object in the callback", out) < 0
                   ? -1
                   : MPLUS_MALFORMED;
    }
    if (!webhook_mplus_event_syncs(event_name)) {
        json_decref(root);
        return MPLUS_IGNORED;
    }
    char cbuf[32], nbuf[32], ts[GW_TS_LEN];
    json_t *session = json_object_get(ev_body, "session");
    json_t *sender = json_object_get(ev_body, "sender");
    const char *session_id =
        json_is_object(session) ? get_text(session, "sessionId", NULL, 0) : NULL;
    const char *counter = get_text(event, "eventCounter", cbuf, sizeof cbuf);
    const char *instance =
        json_is_object(sender) ? get_text(sender, "instanceId", nbuf, sizeof nbuf) : NULL;
    const char *stamp = get_text(event, "eventTimestamp", NULL, 0);
    const char *occurred = stamp && gw_ts_normalise(stamp, ts, sizeof ts) ? ts : NULL;
    char *key = fmt_key("mplus|%s|%s|%s|%s|%s", conn->name, session_id ? session_id : "",
                        event_name, counter ? counter : "", instance ? instance : "");
    json_t *rec = event_new_record(conn->name, GW_SRC_MPLUS, "session", session_id, event_name,
                                   GW_PENDING, now_ms, occurred, NULL, NULL, json_incref(ev_body));
    json_t *mplus_error = json_object_get(root, "error");
    if (orig == ev_body && mplus_error != NULL)
        json_object_set(rec, "mplus_error", mplus_error);
    json_decref(root);
    if (key == NULL || rec == NULL) {
        free(key);
        json_decref(rec);
        return -1;
    }
    return batch_add(out, key, rec, GW_PENDING) < 0 ? -1 : MPLUS_STORED;
}
