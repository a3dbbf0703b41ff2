/*
 * store.h - the durable store (LMDB; the only module that includes lmdb.h).
 *
 * Databases in one environment:
 *   events   be64(id)            -> event record (JSON text, without the id)
 *   dedupe   sha256(dedupe key)  -> be64(id)
 *   queue    be64(due_ms) be64(id) -> entity key: unfinished events by due time
 *   entities entity key 0 be64(id) -> empty: unfinished events per entity, in order
 *   payloads be64(id)            -> what came in: JSON, or the raw body of a malformed event
 *   meta     name                -> value (per-state counters, tokens, markers)
 *   bodies   be64(id) be32(attempt) -> the request and response bodies of that
 *                                 attempt's calls (the activity log), kept out of
 *                                 the record, as they are ("GWB1" frames; older
 *                                 stores: a JSON array); store_get_event joins them
 *
 * An event is queued while its state is pending, retrying or in_flight (an
 * in_flight event whose process died is simply due again), and listed under
 * its entity until it is finished, so the dispatcher can run one entity's
 * events one at a time, oldest first. store_txn_put_event keeps both indexes
 * and the per-state counters in step with the record; nothing else writes
 * them.
 *
 * Every function opens and ends its own transaction; no transaction outlives
 * a call. Several processes (the daemon and CLI commands) may use one store.
 * Functions return 0 or a negative STORE_E* code with a message in err.
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include "event.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_EFAIL     -1 /* storage error: cannot read or write */
#define STORE_ENOTFOUND -2

struct store;

/*
 * Open (creating when missing, mode 0700/0600) the store at path. map_mb is
 * the initial map size; the map grows on MDB_MAP_FULL up to max_mb.
 */
int store_open(const char *path, size_t map_mb, size_t max_mb, struct store **out, char *err,
               size_t errlen);
void store_close(struct store *st);

/*
 * The stored form of a dedupe key (DESIGN 4.4): the second the change
 * happened (occurred_at; 0 when unknown), big-endian, then 24 bytes of the
 * key's SHA-256. Keys of one moment sit together in the index, so a commit
 * of new events changes a few neighbouring pages instead of one random page
 * per event. A redelivery carries the same key and the same time.
 */
void store_dedupe_hash(const char *key, const char *occurred_at, unsigned char out[32]);

/* One new event for store_ingest. */
struct store_put {
    unsigned char key[32]; /* store_dedupe_hash of the dedupe key */
    const char *rec;       /* serialised record (borrowed); its due_ms is the queue time */
    size_t rec_len;
    const void *payload; /* what came in, kept apart from the record, or NULL (borrowed) */
    size_t payload_len;
    enum gw_state state;    /* pending events are queued */
    const char *entity_key; /* see event_entity_key; borrowed */
    int64_t due_ms;
    /* A second key naming the change itself (entity, id, time), shared by a
     * webhook and the CDC row of one change. It is recorded; when key2_dedupes
     * (a CDC row) it is also checked: already recorded makes a duplicate. */
    bool has_key2, key2_dedupes;
    unsigned char key2[32]; /* store_dedupe_hash of it */
    /* results */
    uint64_t id;    /* the new event's id, or the existing one for a duplicate */
    bool duplicate; /* the key was already stored: nothing written */
};

/*
 * Store a batch of new events in one durable (fsync'd) transaction: each
 * event whose key is new gets the next id, is counted and, when pending,
 * queued; a duplicate only reports the existing id. All or nothing.
 */
int store_ingest(struct store *st, struct store_put *puts, size_t n, char *err, size_t errlen);

/*
 * Write transactions. fn runs inside one write transaction that is committed
 * durably (fsync) when fn returns 0. When the map fills up, the transaction is
 * thrown away, the map grows and fn runs again from scratch: fn must not keep
 * effects outside the transaction between runs. fn returns 0 to commit, or a
 * negative STORE_E* code to abort.
 */
struct store_txn;
typedef int (*store_txn_fn)(struct store_txn *t, void *arg);
int store_write(struct store *st, store_txn_fn fn, void *arg, char *err, size_t errlen);

/* store_ingest inside a caller's transaction. */
int store_txn_ingest(struct store_txn *t, struct store_put *puts, size_t n);

/* The event as a new object with "id" added; STORE_ENOTFOUND when absent. */
int store_txn_get_event(struct store_txn *t, uint64_t id, json_t **out);

/* The fields of a record that the queue, entity index and counters follow. */
struct store_event_keys {
    enum gw_state state;
    int64_t due_ms;
    char ekey[400];
};
void store_event_keys(json_t *rec, struct store_event_keys *k);

/* Is the stored record of id exactly these bytes (nobody changed it since)? */
bool store_txn_event_is(struct store_txn *t, uint64_t id, const char *text, size_t len);

/*
 * Replace an event's record ("id" in rec is dropped). Counters, queue (at
 * rec's due_ms) and entity index follow the change from the stored record,
 * whose keys are old (NULL: read them from the store). When text_out is not
 * NULL it receives the serialised record written (malloc'd).
 */
int store_txn_put_event(struct store_txn *t, uint64_t id, json_t *rec,
                        const struct store_event_keys *old, char **text_out);

/* Small named values (tokens, markers, circuit state), JSON. */
int store_txn_meta_get(struct store_txn *t, const char *name, json_t **out);
int store_txn_meta_put(struct store_txn *t, const char *name, json_t *value);
/* Remove a meta value; one that is not there is no error. */
int store_txn_meta_del(struct store_txn *t, const char *name);
int store_meta_get(struct store *st, const char *name, json_t **out, char *err, size_t errlen);
/* Every meta value whose name starts with prefix, in name order, to cb
 * (name and value as stored, not NUL-terminated); cb returns non-zero to stop. */
typedef int (*store_meta_cb)(const char *name, size_t namelen, const char *value, size_t len,
                             void *arg);
int store_meta_scan(struct store *st, const char *prefix, store_meta_cb cb, void *arg, char *err,
                    size_t errlen);

/*
 * Visit queued events due at or before now_ms, earliest first, at most limit.
 * head says whether the event is the oldest unfinished one of its entity
 * (only then may it run); a head comes with its record and payload, read in
 * the same transaction. Return nonzero from cb to stop.
 */
struct store_due {
    uint64_t id;
    int64_t due_ms;
    bool head;
    /* For a head: its record and payload (NULL when none), valid during the call. */
    const char *rec, *payload;
    size_t rec_len, payload_len;
};
typedef int (*store_due_cb)(const struct store_due *e, void *arg);
/* skip (may be NULL) drops an entry before any work is spent on it. */
typedef bool (*store_skip_fn)(uint64_t id, const char *ekey, size_t ekey_len, void *arg);
int store_scan_due(struct store *st, int64_t now_ms, size_t limit, store_skip_fn skip,
                   store_due_cb cb, void *arg, char *err, size_t errlen);

/* One event as a new JSON object with its "id" added; STORE_ENOTFOUND if absent. */
int store_get_event(struct store *st, uint64_t id, json_t **out, char *err, size_t errlen);

/* An event's payload bytes, as a new malloc'd buffer; STORE_ENOTFOUND if none. */
int store_get_payload(struct store *st, uint64_t id, void **out, size_t *len, char *err,
                      size_t errlen);

/* Visit events newest first; the record text is valid only during the call.
 * Return nonzero from cb to stop. */
typedef int (*store_event_cb)(uint64_t id, const char *rec, size_t len, void *arg);
int store_scan_events(struct store *st, store_event_cb cb, void *arg, char *err, size_t errlen);
/* The same, from the newest event older than before (0: from the newest). */
int store_scan_events_before(struct store *st, uint64_t before, store_event_cb cb, void *arg,
                             char *err, size_t errlen);

/* Number of events in each state. */
int store_counts(struct store *st, uint64_t counts[GW_STATE_COUNT], char *err, size_t errlen);

/* Due time (ms) of the earliest event in the queue, 0 if none. */
int store_oldest_queued(struct store *st, int64_t *received_ms, char *err, size_t errlen);

/* Whether a state keeps an event in the queue. */
bool store_state_queued(enum gw_state s);

/*
 * Purge: delete done and skipped events received before before_ms, with their
 * dedupe keys and payloads. Dead events keep their record (an operator still
 * needs it) but lose their payload and the bodies of their calls, unless
 * keep_dead; unfinished events are kept whatever their age. From start_id
 * (0: the oldest); with max_visit, at most that many events are looked at and
 * next_id says where to go on (0: done), so a pass can be cut into small
 * transactions that never hold up ingest for long.
 */
struct purge_opts {
    int64_t before_ms;
    bool keep_dead;
    uint64_t start_id;
    size_t max_visit; /* 0: no bound */
};
struct purge_result {
    uint64_t events, payloads, dead_stripped;
    uint64_t next_id;
};
int store_txn_purge(struct store_txn *t, const struct purge_opts *o, struct purge_result *res);
int store_purge(struct store *st, const struct purge_opts *o, struct purge_result *res, char *err,
                size_t errlen);

/* Clear reader slots left by dead processes; *dead says how many. */
int store_reader_check(struct store *st, int *dead);

/* Current map size in bytes (for status), and how much of it holds pages. */
size_t store_map_size(struct store *st);
size_t store_used_bytes(struct store *st);

/*
 * GDPR: every occurrence of an e-mail address in the store (event records
 * and the calls they keep, payloads, id map and other meta values) is
 * replaced by "[forgotten]", matched without regard to case and never
 * inside a longer address. JSON stays JSON. Ids, states and the rest of
 * each record stay. With dry_run nothing is written; res counts the values
 * that hold it either way (events: the records and their calls' bodies).
 */
struct forget_result {
    size_t events, payloads, meta;
};
int store_txn_forget(struct store_txn *t, const char *address, bool dry_run,
                     struct forget_result *res);

/*
 * Rewrite the store file from what is stored now, record by record, and put
 * it in place of the old one, so data deleted or replaced is gone from the
 * file too: LMDB keeps freed pages as they were until it reuses them, and
 * copies pages whole (mdb_env_copy's compaction keeps the bytes between a
 * page's records). Readers and writers of this process wait for it;
 * another process that has the store open keeps reading the old file until
 * it opens it again.
 */
int store_compact(struct store *st, char *err, size_t errlen);

#endif
