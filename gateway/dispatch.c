/*
 * dispatch.c - the event state machine.
 *
 *   pending/retrying --claim--> in_flight --handler outcome--> done | skipped | dead
 *                                                         \--> retrying (due later)
 *
 * A claim and an outcome are each committed (group commit) before the next
 * step, so `gateway events` shows what is running, and a crash leaves an
 * in_flight event in the queue to be run again: the requestid of every QBO
 * create makes that second run harmless.
 */
#include "dispatch.h"
#include "clients.h"
#include "task.h"
#include "log.h"
#include "metrics.h"
#include "qbo.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_INTERVAL_MS    500 /* replays from other processes are seen within this */
#define CIRCUIT_MAX_OPEN_MS (10 * 60 * 1000)
#define AUTH_WAIT_MS        60000
/* An event waiting for authorisation is held by start_event while its
 * connection needs it, so its due time only says how soon it runs once a
 * `tokens` import or the OAuth callback has brought tokens back. */
#define AUTH_RECHECK_MS 1000
/* Places for offered payloads (dispatch_offer), by id: a catalogue page of
 * a thousand articles fits. One never taken, because its event waits behind
 * another, gives its place up this many ids later. */
#define OFFER_SLOTS 2048
#define OFFER_STALE (4 * OFFER_SLOTS)

enum circuit { CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN };
static const char *const circuit_names[] = {"closed", "open", "half_open"};

struct dconn {
    const struct gw_connection *c;
    int running;
    enum circuit circuit;
    int failures;             /* consecutive retryable failures */
    int refused;              /* Mplus logins refused in a row */
    int64_t refused_until_ms; /* no work before then: Mplus refused the login */
    int opened;               /* times opened in a row, for the cool-down */
    int64_t open_until_ms;
    bool probing;
    bool blocked; /* can take no event now: worked out at each scan */
};

enum phase { PH_CLAIM, PH_RUN, PH_FINISH };

struct running {
    struct commit_job job; /* first: claim and finish jobs */
    struct task task;
    struct dispatcher *d;
    struct running *prev, *next;
    struct dconn *dc;
    const struct flow *flow;
    enum phase phase;
    struct outcome outcome;
    bool probe;
    /* The stored record as we know it: its bytes and index keys. A claim or
     * finish that finds the same bytes in its transaction changes our parsed
     * copy instead of parsing again. */
    char *text;
    size_t text_len;
    struct store_event_keys keys;
    json_t *meta_writes; /* name -> value, written with the outcome */
    char *payload_text;  /* the payload as stored, parsed when a handler asks */
    size_t payload_len;
    json_t *payload;
    /* Results of the transaction in progress, adopted when it commits. */
    char *next_text;
    json_t *next_rec;
    struct store_event_keys next_keys;
};

struct dispatcher {
    const struct gw_config *cfg;
    struct store *st;
    struct committer *committer;
    struct gw_clients *clients;
    const struct flow *extra;
    struct event *timer, *kick_ev;
    struct running *head;
    size_t nrunning;
    size_t committing;      /* of them, those whose claim or outcome is being committed */
    struct event *flush_ev; /* flush_check, after the loop turn's callbacks */
    uint64_t *slots;        /* running ids (is_running) */
    size_t nslots;          /* a power of two, at least 4 x max_in_flight */
    struct dconn *conns;
    bool draining;
    unsigned rng;
    struct offer {
        uint64_t id;
        json_t *payload, *record;         /* as parsed */
        char *payload_text, *record_text; /* as stored */
        size_t payload_len, record_len;
    } offers[OFFER_SLOTS];
    size_t offer_bytes; /* of stored text, in the offers holding a payload */
};

/* ---- helpers ----------------------------------------------------------------- */

static struct dconn *dconn_of(struct dispatcher *d, const char *name)
{
    for (size_t i = 0; name && i < d->cfg->nconns; i++)
        if (strcmp(d->cfg->conns[i].name, name) == 0)
            return &d->conns[i];
    return NULL;
}

/*
 * The ids of running events, in an open-addressing set with linear probing:
 * every scan asks about each queued entry, and running events stay queued
 * until they finish. 0 marks a free slot (ids start at 1). A removal shifts
 * the entries after it back, so no tombstones pile up and a miss stops at
 * the first free slot.
 */

static size_t slot_of(const struct dispatcher *d, uint64_t id)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull) & (d->nslots - 1);
}

static bool is_running(struct dispatcher *d, uint64_t id)
{
    for (size_t i = slot_of(d, id), n = 0; n < d->nslots; i = (i + 1) & (d->nslots - 1), n++) {
        if (d->slots[i] == id)
            return true;
        if (d->slots[i] == 0)
            return false;
    }
    return false;
}

static void set_running(struct dispatcher *d, uint64_t id, bool on)
{
    size_t mask = d->nslots - 1, i = slot_of(d, id);
    for (size_t n = 0; n < d->nslots; i = (i + 1) & mask, n++) {
        if (on && d->slots[i] == 0) {
            d->slots[i] = id;
            return;
        }
        if (d->slots[i] == 0)
            return;
        if (!on && d->slots[i] == id)
            break;
    }
    if (on || d->slots[i] != id)
        return;
    d->slots[i] = 0;
    /* Move back every entry of the run after i whose home is not between
     * the hole and it, so each stays reachable from its home. */
    for (size_t j = (i + 1) & mask; d->slots[j] != 0; j = (j + 1) & mask) {
        size_t home = slot_of(d, d->slots[j]);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            d->slots[i] = d->slots[j];
            d->slots[j] = 0;
            i = j;
        }
    }
}

static double rnd01(struct dispatcher *d)
{
    return (double)rand_r(&d->rng) / ((double)RAND_MAX + 1.0);
}

int64_t dispatch_backoff_ms(const struct gw_config *cfg, unsigned attempt, double rnd)
{
    double cap = (double)cfg->retry_max_s * 1000.0;
    double exp = (double)cfg->retry_first_s * 1000.0 * pow(2.0, attempt > 0 ? attempt - 1 : 0);
    double span = exp < cap ? exp : cap;
    /* Full jitter, but never sooner than a second: a burst of failures must not
     * turn into a busy loop. */
    int64_t ms = (int64_t)(span * rnd);
    return ms < 1000 ? 1000 : ms;
}

static void remove_running(struct dispatcher *d, struct running *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        d->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    d->nrunning--;
    set_running(d, r->task.id, false);
    if (r->dc)
        r->dc->running--;
    json_decref(r->task.rec);
    json_decref(r->payload);
    free(r->payload_text);
    json_decref(r->task.steps);
    json_decref(r->task.calls);
    json_decref(r->meta_writes);
    json_decref(r->next_rec);
    free(r->text);
    free(r->next_text);
    free(r);
}

/*
 * Inside a transaction: the event's current record for a change - our copy
 * when the stored bytes are still the ones we know, else freshly read - and
 * the keys of the stored version. New reference.
 */
static int current_record(struct store_txn *t, struct running *r, json_t **rec,
                          struct store_event_keys *old)
{
    if (store_txn_event_is(t, r->task.id, r->text, r->text_len)) {
        *rec = json_incref(r->task.rec);
        *old = r->keys;
        return 0;
    }
    int rc = store_txn_get_event(t, r->task.id, rec);
    if (rc == 0)
        store_event_keys(*rec, old);
    return rc;
}

/*
 * The record to change, as a copy: a re-run of the transaction (the map grew)
 * must start from the record as stored, not as the first run left it.
 */
static int editable_record(struct store_txn *t, struct running *r, json_t **copy,
                           struct store_event_keys *old)
{
    json_t *rec;
    int rc = current_record(t, r, &rec, old);
    if (rc != 0)
        return rc;
    *copy = json_copy(rec);
    json_decref(rec);
    return 0;
}

/* Write rec and keep what was written until the commit says it holds. */
static int write_record(struct store_txn *t, struct running *r, json_t *rec,
                        const struct store_event_keys *old)
{
    char *text = NULL;
    int rc = store_txn_put_event(t, r->task.id, rec, old, &text);
    if (rc != 0)
        return rc;
    free(r->next_text);
    r->next_text = text;
    json_decref(r->next_rec);
    r->next_rec = json_incref(rec);
    store_event_keys(rec, &r->next_keys);
    return 0;
}

/* The transaction committed: what it wrote is now the stored record. */
static void adopt_record(struct running *r)
{
    if (r->next_text == NULL)
        return;
    free(r->text);
    r->text = r->next_text;
    r->text_len = strlen(r->text);
    r->next_text = NULL;
    json_decref(r->task.rec);
    r->task.rec = r->next_rec;
    r->next_rec = NULL;
    r->keys = r->next_keys;
}

/* ---- outcomes -> states ------------------------------------------------------ */

static const char *const outcome_names[] = {"done",
                                            "skipped",
                                            "retry",
                                            "dead",
                                            "throttled",
                                            "waiting for authorisation",
                                            "waiting for the Mplus login",
                                            "waiting for another record"};

/* Apply the outcome to the record: the single place states change after a run. */
static void apply_outcome(struct dispatcher *d, json_t *rec, const struct outcome *o,
                          const struct task *t)
{
    json_t *steps = t ? t->steps : NULL;
    int64_t now = gw_now_ms();
    json_int_t attempts = json_integer_value(json_object_get(rec, "attempts"));
    bool counts = o->kind != OUTCOME_THROTTLED && o->kind != OUTCOME_WAIT_AUTH &&
                  o->kind != OUTCOME_LOGIN_REFUSED;
    if (counts)
        attempts++;
    json_object_set_new(rec, "attempts", json_integer(attempts));
    if (o->kind == OUTCOME_WAIT) /* ended before it wrote anything (task_is_rerun) */
        json_object_set_new(rec, "waits",
                            json_integer(json_integer_value(json_object_get(rec, "waits")) + 1));

    enum gw_state next;
    const char *reason = o->reason[0] ? o->reason : NULL;
    const char *error = o->error[0] ? o->error : NULL;
    int64_t due = 0;
    switch (o->kind) {
    case OUTCOME_DONE:
        next = GW_DONE;
        error = NULL;
        break;
    case OUTCOME_SKIPPED:
        next = GW_SKIPPED;
        break;
    case OUTCOME_DEAD:
        next = GW_DEAD;
        break;
    case OUTCOME_RETRY:
    case OUTCOME_WAIT: {
        int64_t wait = dispatch_backoff_ms(d->cfg, (unsigned)attempts, rnd01(d));
        due = now + wait;
        if (o->not_before_ms > due || (o->kind == OUTCOME_WAIT && o->not_before_ms > 0))
            due = o->not_before_ms;
        const char *first = json_string_value(json_object_get(rec, "received_at"));
        int64_t received = now;
        if (first)
            gw_ts_parse(first, &received);
        if (d->cfg->retry_give_up_s > 0 && due - received > d->cfg->retry_give_up_s * 1000) {
            next = GW_DEAD;
            reason = "retries exhausted";
        } else {
            next = GW_RETRYING;
            reason = NULL;
        }
        break;
    }
    case OUTCOME_WAIT_AUTH:
    case OUTCOME_LOGIN_REFUSED: /* held with its connection (conn_can_start) */
        next = GW_RETRYING;
        due = o->not_before_ms > now ? o->not_before_ms : now + AUTH_RECHECK_MS;
        reason = NULL;
        break;
    case OUTCOME_THROTTLED:
    default:
        next = GW_RETRYING;
        due = o->not_before_ms > now ? o->not_before_ms : now + AUTH_WAIT_MS;
        reason = NULL;
        break;
    }
    char ts[GW_TS_LEN];
    gw_ts_format(now, ts, sizeof ts);
    json_t *entry = json_pack("{s:s, s:s, s:I}", "at", ts, "outcome", outcome_names[o->kind],
                              "attempt", (json_int_t)attempts);
    if (o->reason[0])
        json_object_set_new(entry, "reason", json_string(o->reason));
    if (o->error[0])
        json_object_set_new(entry, "error", json_string(o->error));
    if (steps && json_array_size(steps) > 0)
        json_object_set(entry, "steps", steps);
    if (t && t->calls && json_array_size(t->calls) > 0)
        json_object_set(entry, "calls", t->calls);
    if (t && t->calls_dropped > 0)
        json_object_set_new(entry, "calls_not_kept", json_integer(t->calls_dropped));
    /* The record is a shallow copy: the stored original stays as it was. */
    event_history_append(rec, entry);

    json_object_set_new(rec, "state", json_string(event_state_name(next)));
    json_object_set_new(rec, "reason", reason ? json_string(reason) : json_null());
    json_object_set_new(rec, "last_error", error ? json_string(error) : json_null());
    if (due > 0) {
        json_object_set_new(rec, "due_ms", json_integer((json_int_t)due));
        gw_ts_format(due, ts, sizeof ts);
        json_object_set_new(rec, "next_attempt_at", json_string(ts));
    } else {
        json_object_del(rec, "due_ms");
        json_object_del(rec, "next_attempt_at");
    }
}

/* How long a connection pauses after its n-th pause in a row:
 * circuit_open_s, doubling, at most CIRCUIT_MAX_OPEN_MS. */
static int64_t hold_ms(const struct dispatcher *d, int n)
{
    int64_t ms = (int64_t)d->cfg->circuit_open_s * 1000 << (n < 5 ? n : 5);
    return ms > CIRCUIT_MAX_OPEN_MS ? CIRCUIT_MAX_OPEN_MS : ms;
}

static void circuit_after(struct dispatcher *d, struct running *r)
{
    struct dconn *dc = r->dc;
    if (dc == NULL || r->flow == NULL)
        return;
    if (r->probe)
        dc->probing = false;
    enum outcome_kind k = r->outcome.kind;
    if (k == OUTCOME_LOGIN_REFUSED) {
        /* Like an open circuit, but no attempt is spent and the events wait
         * however long it takes: a wrong ident/secret needs a person. */
        int64_t now = gw_now_ms();
        if (now >= dc->refused_until_ms) { /* not for others refused in the same hold */
            int64_t ms = hold_ms(d, dc->refused++);
            gw_log(GW_LOG_ERROR, dc->c->name, 0,
                   "Mplus refused the login (mplus_ident/mplus_secret): this connection's work "
                   "waits %lld s, then tries again; no attempts are spent",
                   (long long)(ms / 1000));
            dc->refused_until_ms = now + ms;
        }
    } else if (k == OUTCOME_RETRY) {
        dc->failures++;
        if (dc->circuit == CIRCUIT_HALF_OPEN ||
            (dc->circuit == CIRCUIT_CLOSED && dc->failures >= d->cfg->circuit_failures)) {
            int64_t ms = hold_ms(d, dc->opened);
            dc->circuit = CIRCUIT_OPEN;
            dc->opened++;
            dc->open_until_ms = gw_now_ms() + ms;
            gw_log(GW_LOG_WARN, dc->c->name, 0,
                   "circuit open after %d failures in a row: pausing this connection for %lld s",
                   dc->failures, (long long)(ms / 1000));
        }
    } else if (k == OUTCOME_DONE || k == OUTCOME_SKIPPED || k == OUTCOME_DEAD) {
        if (dc->circuit != CIRCUIT_CLOSED)
            gw_log(GW_LOG_INFO, dc->c->name, 0, "circuit closed: the connection works again");
        if (dc->refused > 0)
            gw_log(GW_LOG_INFO, dc->c->name, 0, "Mplus accepts the login again");
        dc->refused = 0;
        dc->refused_until_ms = 0;
        dc->circuit = CIRCUIT_CLOSED;
        dc->failures = 0;
        dc->opened = 0;
    }
}

static int finish_apply(struct store_txn *t, struct commit_job *job)
{
    struct running *r = (struct running *)job;
    json_t *copy;
    struct store_event_keys old;
    int rc = editable_record(t, r, &copy, &old);
    if (rc != 0)
        return rc;
    apply_outcome(r->d, copy, &r->outcome, &r->task);
    rc = write_record(t, r, copy, &old);
    json_decref(copy);
    /* What the flow learnt (id map) is kept only with a final outcome. */
    const char *name;
    json_t *value;
    if (r->outcome.kind == OUTCOME_DONE || r->outcome.kind == OUTCOME_SKIPPED ||
        r->outcome.kind == OUTCOME_DEAD)
        json_object_foreach(r->meta_writes, name, value)
        {
            if (rc == 0)
                rc = store_txn_meta_put(t, name, value);
        }
    return rc;
}

static void schedule_scan(struct dispatcher *d);

/* When every running event waits for its claim or outcome to be stored,
 * nothing else happens until the store has them: they need not linger. Seen
 * once the loop turn's callbacks are through (a claim done in the same turn
 * may yet start a call). */
static void flush_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dispatcher *d = arg;
    if (d->committing > 0 && d->committing == d->nrunning)
        committer_flush(d->committer);
}

static void check_flush(struct dispatcher *d)
{
    event_active(d->flush_ev, EV_READ, 0); /* once a turn, however often asked */
}

/* A claim or an outcome to the store. */
static void commit_for(struct dispatcher *d, struct running *r)
{
    d->committing++;
    committer_submit(d->committer, &r->job);
    check_flush(d);
}

static void finish_done(struct commit_job *job)
{
    struct running *r = (struct running *)job;
    struct dispatcher *d = r->d;
    d->committing--;
    if (job->status != 0)
        gw_log(GW_LOG_ERROR, r->dc ? r->dc->c->name : NULL, r->task.id,
               "could not store the outcome (%s); the event runs again",
               outcome_names[r->outcome.kind]);
    else if (r->outcome.kind == OUTCOME_DEAD)
        gw_log(GW_LOG_WARN, r->dc ? r->dc->c->name : NULL, r->task.id, "event dead: %s%s%s",
               r->outcome.reason, r->outcome.error[0] ? ": " : "", r->outcome.error);
    circuit_after(d, r);
    remove_running(d, r);
    check_flush(d);
    schedule_scan(d);
}

/* The task operations the dispatcher gives its flows (task.h). */
static void op_finish(struct task *t, const struct outcome *o)
{
    struct running *r = t->owner;
    r->phase = PH_FINISH;
    r->outcome = *o;
    r->job.apply = finish_apply;
    r->job.done = finish_done;
    r->job.lazy = true;
    commit_for(r->d, r);
}

static json_t *op_payload(struct task *t)
{
    struct running *r = t->owner;
    if (r->payload == NULL && r->payload_text != NULL)
        r->payload = json_loadb(r->payload_text, r->payload_len, JSON_DECODE_ANY, NULL);
    return r->payload;
}

static json_t *op_get_meta(struct task *t, const char *name)
{
    struct running *r = t->owner;
    json_t *pending = json_object_get(r->meta_writes, name);
    if (pending != NULL)
        return json_incref(pending);
    json_t *v = NULL;
    if (store_meta_get(r->d->st, name, &v, NULL, 0) != 0)
        return NULL;
    return v;
}

static void op_put_meta(struct task *t, const char *name, json_t *value)
{
    struct running *r = t->owner;
    if (r->meta_writes == NULL)
        r->meta_writes = json_object();
    json_object_set(r->meta_writes, name, value);
}

static const struct task_ops dispatch_task_ops = {op_finish, op_payload, op_get_meta, op_put_meta};

/* ---- claiming ------------------------------------------------------------------ */

static int claim_apply(struct store_txn *t, struct commit_job *job)
{
    struct running *r = (struct running *)job;
    json_t *copy;
    struct store_event_keys old;
    int rc = editable_record(t, r, &copy, &old);
    if (rc != 0)
        return rc;
    if (!store_state_queued(old.state)) {
        json_decref(copy); /* finished meanwhile (another process, a replay) */
        return STORE_ENOTFOUND;
    }
    char ts[GW_TS_LEN];
    gw_ts_format(gw_now_ms(), ts, sizeof ts);
    json_object_set_new(copy, "state", json_string("in_flight"));
    json_object_set_new(copy, "started_at", json_string(ts));
    rc = write_record(t, r, copy, &old);
    json_decref(copy);
    return rc;
}

static void claim_done(struct commit_job *job)
{
    struct running *r = (struct running *)job;
    struct dispatcher *d = r->d;
    d->committing--;
    if (job->status != 0) {
        remove_running(d, r);
        check_flush(d);
        return;
    }
    adopt_record(r);
    r->phase = PH_RUN;
    r->task.attempt = (unsigned)json_integer_value(json_object_get(r->task.rec, "attempts")) + 1;
    gw_log(GW_LOG_DEBUG, r->dc ? r->dc->c->name : NULL, r->task.id, "running flow %s",
           r->flow->name);
    r->flow->run(&r->task);
}

/* Whether dc can start one more event now: below its in-flight limit, its
 * circuit not open (one whose time is up becomes half open, for one probe),
 * authorised with QuickBooks, and Mplus not refusing its login. */
static bool conn_can_start(struct dispatcher *d, struct dconn *dc, int64_t now)
{
    if (dc->running >= d->cfg->max_in_flight_per_connection || now < dc->refused_until_ms)
        return false;
    if (dc->circuit == CIRCUIT_OPEN && now >= dc->open_until_ms)
        dc->circuit = CIRCUIT_HALF_OPEN;
    if (dc->circuit == CIRCUIT_OPEN || (dc->circuit == CIRCUIT_HALF_OPEN && dc->probing))
        return false;
    return !qbo_needs_auth(d->clients->qbo, dc->c);
}

/* ---- payloads offered by the poller -------------------------------------------- */

/* Give up offer place i (its payload, record and texts). */
static void drop_offer(struct dispatcher *d, size_t i)
{
    struct offer *o = &d->offers[i];
    if (o->payload == NULL)
        return;
    json_decref(o->payload);
    json_decref(o->record);
    free(o->payload_text);
    free(o->record_text);
    d->offer_bytes -= o->payload_len + o->record_len;
    memset(o, 0, sizeof *o);
}

void dispatch_offer(struct dispatcher *d, uint64_t id, json_t *payload, char **payload_text,
                    size_t payload_len, json_t *record, char **record_text, size_t record_len)
{
    if (d == NULL || payload == NULL || *payload_text == NULL || record == NULL ||
        *record_text == NULL)
        return;
    struct offer *o = &d->offers[id % OFFER_SLOTS];
    if (o->payload != NULL && o->id + OFFER_STALE > id)
        return; /* an older one, which runs first */
    size_t freed = o->payload != NULL ? o->payload_len + o->record_len : 0;
    if (d->offer_bytes - freed + payload_len + record_len > DISPATCH_OFFER_BYTES)
        return;
    drop_offer(d, id % OFFER_SLOTS);
    *o = (struct offer){id,           json_incref(payload), json_incref(record), *payload_text,
                        *record_text, payload_len,          record_len};
    *payload_text = *record_text = NULL;
    d->offer_bytes += payload_len + record_len;
    metrics_offer(false);
}

size_t dispatch_offered_bytes(const struct dispatcher *d)
{
    return d ? d->offer_bytes : 0;
}

/* Event id's offer, when the store still holds what it was made of: the
 * texts are compared (a forget may have rewritten them since). */
static struct offer *offer_of(struct dispatcher *d, uint64_t id, const char *rec, size_t rec_len,
                              const char *payload, size_t payload_len)
{
    struct offer *o = &d->offers[id % OFFER_SLOTS];
    if (o->payload == NULL || o->id != id || o->record_len != rec_len ||
        o->payload_len != payload_len || memcmp(o->record_text, rec, rec_len) != 0 ||
        memcmp(o->payload_text, payload, payload_len) != 0)
        return NULL;
    return o;
}

/* Event id's offer goes; its payload (a new reference) when use, else NULL. */
static json_t *take_offer(struct dispatcher *d, uint64_t id, bool use)
{
    struct offer *o = &d->offers[id % OFFER_SLOTS];
    if (o->payload == NULL || o->id != id)
        return NULL;
    json_t *p = use ? json_incref(o->payload) : NULL;
    drop_offer(d, id % OFFER_SLOTS);
    if (use)
        metrics_offer(true);
    return p;
}

void dispatch_drop_offers(struct dispatcher *d)
{
    for (size_t i = 0; d != NULL && i < OFFER_SLOTS; i++)
        drop_offer(d, i);
}

/* Start one event; returns false when its connection cannot take work now. */
static bool start_event(struct dispatcher *d, uint64_t id, json_t *rec, char *text, size_t len,
                        char **payload_text, size_t payload_len, bool offered)
{
    const char *cname = json_string_value(json_object_get(rec, "connection"));
    struct dconn *dc = dconn_of(d, cname);
    const struct flow *flow = flow_for(rec, dc ? dc->c : NULL, d->extra);
    bool probe = false;
    if (flow != NULL) {
        if (!conn_can_start(d, dc, gw_now_ms()))
            return false;
        if (dc->circuit == CIRCUIT_HALF_OPEN) {
            dc->probing = true;
            probe = true;
        }
    }
    struct running *r = calloc(1, sizeof *r);
    if (r == NULL)
        return false;
    r->text = text;
    r->text_len = len;
    store_event_keys(rec, &r->keys);
    r->d = d;
    r->dc = dc;
    r->flow = flow;
    r->probe = probe;
    r->task.id = id;
    r->task.rec = json_incref(rec);
    r->payload_text = *payload_text; /* taken over */
    *payload_text = NULL;
    r->payload_len = payload_len;
    r->payload = take_offer(d, id, offered);
    r->task.conn = dc ? dc->c : NULL;
    r->task.clients = d->clients;
    r->task.steps = json_array();
    r->task.ops = &dispatch_task_ops;
    r->task.owner = r;
    r->next = d->head;
    if (d->head)
        d->head->prev = r;
    d->head = r;
    d->nrunning++;
    set_running(d, id, true);
    if (dc)
        dc->running++;
    if (flow == NULL) {
        /* Nothing takes this event: say so, without spending a claim. */
        r->phase = PH_RUN;
        task_skip(&r->task, "no flow");
        return true;
    }
    r->phase = PH_CLAIM;
    r->job.apply = claim_apply;
    r->job.done = claim_done;
    r->job.lazy = true;
    commit_for(d, r);
    return true;
}

/* ---- scanning ------------------------------------------------------------------ */

/* Events to start, with copies of their record and payload (none when the
 * poller's offer holds both as stored). */
struct candidate {
    uint64_t id;
    char *text, *payload;
    size_t len, payload_len;
    struct offer *offer;
};

struct candidates {
    struct dispatcher *d;
    struct candidate list[256];
    size_t n, max;
};

/*
 * Passed over before any work is spent: events running now, and events of a
 * connection that cannot take one (circuit open, waiting for authorisation,
 * at its cap), so they never crowd out the events of other connections.
 */
static bool skip_entry(uint64_t id, const char *ekey, size_t ekey_len, void *arg)
{
    struct dispatcher *d = ((struct candidates *)arg)->d;
    if (is_running(d, id))
        return true;
    const char *bar = memchr(ekey, '|', ekey_len);
    size_t n = bar ? (size_t)(bar - ekey) : ekey_len;
    for (size_t i = 0; i < d->cfg->nconns; i++) {
        struct dconn *dc = &d->conns[i];
        if (strlen(dc->c->name) == n && memcmp(dc->c->name, ekey, n) == 0)
            return dc->blocked;
    }
    return false;
}

static char *copy_bytes(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c != NULL) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

static int due_cb(const struct store_due *e, void *arg)
{
    struct candidates *c = arg;
    if (!e->head || e->rec == NULL)
        return 0;
    struct candidate *k = &c->list[c->n];
    k->id = e->id;
    k->text = copy_bytes(e->rec, e->rec_len);
    k->len = e->rec_len;
    k->offer =
        e->payload ? offer_of(c->d, e->id, e->rec, e->rec_len, e->payload, e->payload_len) : NULL;
    k->payload = e->payload && !k->offer ? copy_bytes(e->payload, e->payload_len) : NULL;
    k->payload_len = e->payload_len;
    if (k->text != NULL)
        c->n++;
    else
        free(k->payload);
    return c->n >= c->max;
}

static void scan(struct dispatcher *d)
{
    if (d->draining || d->nrunning >= (size_t)d->cfg->max_in_flight)
        return;
    /* Enough candidates to fill the free slots, with room for some that a
     * busy connection turns away. */
    size_t free_slots = (size_t)d->cfg->max_in_flight - d->nrunning;
    int64_t now = gw_now_ms();
    for (size_t i = 0; i < d->cfg->nconns; i++)
        d->conns[i].blocked = !conn_can_start(d, &d->conns[i], now);
    struct candidates c = {.d = d, .n = 0, .max = 2 * free_slots + 8};
    if (c.max > sizeof c.list / sizeof c.list[0])
        c.max = sizeof c.list / sizeof c.list[0];
    char err[GW_ERR_LEN];
    if (store_scan_due(d->st, gw_now_ms(), 4096, skip_entry, due_cb, &c, err, sizeof err) != 0) {
        log_error("dispatcher cannot read the queue: %s", err);
        return;
    }
    for (size_t i = 0; i < c.n; i++) {
        struct candidate *k = &c.list[i];
        json_t *rec = NULL;
        if (d->nrunning < (size_t)d->cfg->max_in_flight)
            rec = k->offer ? json_incref(k->offer->record) : json_loadb(k->text, k->len, 0, NULL);
        /* start_event keeps the texts when it starts the event. */
        if (rec == NULL || !start_event(d, k->id, rec, k->text, k->len, &k->payload, k->payload_len,
                                        k->offer != NULL))
            free(k->text);
        free(k->payload);
        json_decref(rec);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    scan(arg);
}

static void schedule_scan(struct dispatcher *d)
{
    if (!d->draining)
        event_active(d->kick_ev, EV_READ, 0);
}

void dispatch_kick(struct dispatcher *d)
{
    schedule_scan(d);
}

struct dispatcher *dispatch_new(struct event_base *base, const struct gw_config *cfg,
                                struct store *st, struct committer *committer,
                                struct gw_clients *clients, const struct flow *extra_flows)
{
    struct dispatcher *d = calloc(1, sizeof *d);
    d->cfg = cfg;
    d->st = st;
    d->committer = committer;
    d->clients = clients;
    d->extra = extra_flows;
    d->rng = (unsigned)gw_now_ms();
    d->conns = calloc(cfg->nconns ? cfg->nconns : 1, sizeof *d->conns);
    for (d->nslots = 64; d->nslots < 4 * (size_t)cfg->max_in_flight; d->nslots *= 2)
        ;
    d->slots = calloc(d->nslots, sizeof *d->slots);
    for (size_t i = 0; i < cfg->nconns; i++)
        d->conns[i].c = &cfg->conns[i];
    d->timer = event_new(base, -1, EV_PERSIST, on_timer, d);
    d->kick_ev = event_new(base, -1, EV_READ, on_timer, d);
    d->flush_ev = event_new(base, -1, EV_READ, flush_check, d);
    struct timeval tv = {0, SCAN_INTERVAL_MS * 1000};
    event_add(d->timer, &tv);
    schedule_scan(d);
    return d;
}

void dispatch_drain(struct dispatcher *d)
{
    d->draining = true;
    event_del(d->timer);
}

bool dispatch_idle(const struct dispatcher *d)
{
    return d->nrunning == 0;
}

json_t *dispatch_status(struct dispatcher *d, const struct gw_connection *c)
{
    struct dconn *dc = dconn_of(d, c->name);
    if (dc == NULL)
        return json_object();
    json_t *o = json_pack("{s:s, s:i, s:i}", "circuit", circuit_names[dc->circuit],
                          "failures_in_a_row", dc->failures, "in_flight", dc->running);
    char ts[GW_TS_LEN];
    if (dc->circuit == CIRCUIT_OPEN) {
        gw_ts_format(dc->open_until_ms, ts, sizeof ts);
        json_object_set_new(o, "circuit_open_until", json_string(ts));
    }
    if (dc->refused > 0) {
        gw_ts_format(dc->refused_until_ms, ts, sizeof ts);
        json_object_set_new(o, "mplus_login_refused_until", json_string(ts));
    }
    return o;
}

void dispatch_free(struct dispatcher *d)
{
    if (d == NULL)
        return;
    while (d->head)
        remove_running(d, d->head);
    event_free(d->timer);
    event_free(d->kick_ev);
    event_free(d->flush_ev);
    dispatch_drop_offers(d);
    free(d->conns);
    free(d->slots);
    free(d);
}
