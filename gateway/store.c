/*
 * store.c - LMDB environment, databases and transactions.
 *
 * Write transactions come from one thread of the daemon (the commit thread)
 * or from a CLI process; LMDB serialises them. MDB_NOTLS lets reads run from
 * any thread. Growing the map needs no transaction of this process to be
 * open, so readers and the resizer share a rwlock.
 */
#include "store.h"
#include "jsonout.h"
#include "sig.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct store {
    MDB_env *env;
    char data_file[4096];          /* absolute path of data.mdb, as /proc/self/maps names it */
    unsigned long map_lo, map_hi;  /* where the map is, for releasing its pages */
    size_t map_located_size;       /* map size when it was located */
    int64_t released_ms;           /* when the map's pages were last released */
    size_t ingested_since_release; /* new events stored since then */
    MDB_dbi events, dedupe, queue, entities, payloads, meta, bodies;
    size_t map_size, map_max;
    char path[4096]; /* the store's folder, as opened */
    pthread_rwlock_t resize_lock;
};

/* The databases of the environment: opened by env_open, copied by copy_live. */
static const struct {
    const char *name;
    size_t off; /* of its handle in struct store */
} dbs[] = {
    {"events", offsetof(struct store, events)},     {"dedupe", offsetof(struct store, dedupe)},
    {"queue", offsetof(struct store, queue)},       {"entities", offsetof(struct store, entities)},
    {"payloads", offsetof(struct store, payloads)}, {"meta", offsetof(struct store, meta)},
    {"bodies", offsetof(struct store, bodies)},
};
#define NDBS (sizeof dbs / sizeof dbs[0])

static MDB_dbi *dbi_of(struct store *st, size_t i)
{
    return (MDB_dbi *)((char *)st + dbs[i].off);
}

static void be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void be32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (!gw_strlcpy(buf, path, sizeof buf))
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Open the environment at path and its databases into st (map size as set). */
static int env_open(struct store *st, const char *path, char *err, size_t errlen)
{
    int rc = mdb_env_create(&st->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(st->env, NDBS);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(st->env, 256);
    if (rc == 0)
        rc = mdb_env_set_mapsize(st->env, st->map_size);
    if (rc == 0)
        /* NORDAHEAD (MADV_RANDOM on the map): a read maps the page it needs,
         * not its neighbours too, so the daemon's resident memory follows
         * the pages it uses rather than the size of the store. */
        rc = mdb_env_open(st->env, path, MDB_NOTLS | MDB_NORDAHEAD, 0600);
    if (rc != 0) {
        gw_errf(err, errlen, "storage path %s: cannot open the store: %s", path, mdb_strerror(rc));
        if (st->env)
            mdb_env_close(st->env);
        st->env = NULL;
        return STORE_EFAIL;
    }
    /* Another process may have grown the map: adopt the size on disk. */
    MDB_envinfo info;
    mdb_env_info(st->env, &info);
    if (info.me_mapsize > st->map_size)
        st->map_size = info.me_mapsize;
    int dead;
    mdb_reader_check(st->env, &dead);
    char real[4096];
    if (realpath(path, real) != NULL)
        snprintf(st->data_file, sizeof st->data_file, "%.4080s/data.mdb", real);
    gw_strlcpy(st->path, path, sizeof st->path);
    st->map_located_size = 0;

    MDB_txn *txn;
    rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    for (int i = 0; rc == MDB_MAP_RESIZED && i < 8; i++) {
        /* The serving daemon grew the map since: adopt its size. */
        mdb_env_set_mapsize(st->env, 0);
        mdb_env_info(st->env, &info);
        if (info.me_mapsize > st->map_size)
            st->map_size = info.me_mapsize;
        rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    }
    if (rc == 0) {
        for (size_t i = 0; rc == 0 && i < NDBS; i++)
            rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbi_of(st, i));
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0) {
        gw_errf(err, errlen, "storage path %s: cannot open databases: %s", path, mdb_strerror(rc));
        mdb_env_close(st->env);
        st->env = NULL;
        return STORE_EFAIL;
    }
    return 0;
}

int store_open(const char *path, size_t map_mb, size_t max_mb, struct store **out, char *err,
               size_t errlen)
{
    if (mkdir_p(path) < 0) {
        gw_errf(err, errlen, "storage path %s: cannot create: %s", path, strerror(errno));
        return STORE_EFAIL;
    }
    struct store *st = calloc(1, sizeof *st);
    if (st == NULL)
        return STORE_EFAIL;
    pthread_rwlock_init(&st->resize_lock, NULL);
    st->map_size = map_mb << 20;
    st->map_max = max_mb << 20;
    if (env_open(st, path, err, errlen) != 0) {
        pthread_rwlock_destroy(&st->resize_lock);
        free(st);
        return STORE_EFAIL;
    }
    *out = st;
    return 0;
}

/* Copy every record of the open store into a new environment at dir, by
 * cursor, so each page is built anew: LMDB copies a page whole, the bytes
 * between its nodes too, where a deleted or replaced value may linger. */
static int copy_live(struct store *st, const char *dir)
{
    MDB_env *env = NULL;
    MDB_txn *rd = NULL, *wr = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, NDBS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, st->map_size);
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_NOSYNC, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &rd);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &wr);
    for (size_t i = 0; rc == 0 && i < NDBS; i++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        if ((rc = mdb_dbi_open(wr, dbs[i].name, MDB_CREATE, &dbi)) != 0 ||
            (rc = mdb_cursor_open(rd, *dbi_of(st, i), &cur)) != 0)
            break;
        MDB_val k, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            if ((rc = mdb_put(wr, dbi, &k, &v, MDB_APPEND)) != 0)
                break;
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rd != NULL)
        mdb_txn_abort(rd);
    if (rc == 0)
        rc = mdb_txn_commit(wr);
    else if (wr != NULL)
        mdb_txn_abort(wr);
    if (rc == 0)
        rc = mdb_env_sync(env, 1);
    if (env != NULL)
        mdb_env_close(env);
    return rc;
}

int store_compact(struct store *st, char *err, size_t errlen)
{
    char dir[4200], file[4300], lock[4300];
    snprintf(dir, sizeof dir, "%s.compact", st->path);
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    unlink(file);
    unlink(lock);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        gw_errf(err, errlen, "compacting the store: cannot create %s: %s", dir, strerror(errno));
        return STORE_EFAIL;
    }
    pthread_rwlock_wrlock(&st->resize_lock);
    int rc = copy_live(st, dir);
    if (rc != 0) {
        pthread_rwlock_unlock(&st->resize_lock);
        unlink(file);
        unlink(lock);
        rmdir(dir);
        gw_errf(err, errlen, "compacting the store: %s", mdb_strerror(rc));
        return STORE_EFAIL;
    }
    /* The new file holds only what is stored now: put it in place of the old. */
    mdb_env_close(st->env);
    st->env = NULL;
    rc = rename(file, st->data_file) == 0 ? 0 : STORE_EFAIL;
    unlink(lock);
    rmdir(dir);
    int dirfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd >= 0) {
        fsync(dirfd);
        close(dirfd);
    }
    char path[4096];
    gw_strlcpy(path, st->path, sizeof path);
    if (env_open(st, path, err, errlen) != 0)
        rc = STORE_EFAIL;
    else if (rc != 0)
        gw_errf(err, errlen, "compacting the store: cannot replace %s", st->data_file);
    pthread_rwlock_unlock(&st->resize_lock);
    return rc;
}

void store_close(struct store *st)
{
    if (st == NULL)
        return;
    mdb_env_close(st->env);
    pthread_rwlock_destroy(&st->resize_lock);
    free(st);
}

size_t store_map_size(struct store *st)
{
    return st->map_size;
}

size_t store_used_bytes(struct store *st)
{
    MDB_envinfo info;
    MDB_stat stat;
    if (mdb_env_info(st->env, &info) != 0 || mdb_env_stat(st->env, &stat) != 0)
        return 0;
    return (info.me_last_pgno + 1) * (size_t)stat.ms_psize;
}

int store_reader_check(struct store *st, int *dead)
{
    return mdb_reader_check(st->env, dead) == 0 ? 0 : STORE_EFAIL;
}

/* Begin a transaction, adopting a map another process grew. Caller holds the
 * resize lock (read side). */
static int txn_begin(struct store *st, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(st->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        /* Only legal with no transaction open in this process; the resize
         * lock's read side does not exclude other readers, so take the
         * write side briefly. */
        pthread_rwlock_unlock(&st->resize_lock);
        pthread_rwlock_wrlock(&st->resize_lock);
        mdb_env_set_mapsize(st->env, 0);
        MDB_envinfo info;
        mdb_env_info(st->env, &info);
        st->map_size = info.me_mapsize;
        pthread_rwlock_unlock(&st->resize_lock);
        pthread_rwlock_rdlock(&st->resize_lock);
        rc = mdb_txn_begin(st->env, NULL, flags, txn);
    }
    return rc;
}

/* Grow the map after MDB_MAP_FULL; false when the hard limit is reached. */
static bool grow_map(struct store *st)
{
    if (st->map_size >= st->map_max)
        return false;
    size_t next = st->map_size * 2;
    if (next > st->map_max)
        next = st->map_max;
    pthread_rwlock_wrlock(&st->resize_lock);
    int rc = mdb_env_set_mapsize(st->env, next);
    if (rc == 0)
        st->map_size = next;
    pthread_rwlock_unlock(&st->resize_lock);
    return rc == 0;
}

static int counter_add(MDB_txn *txn, MDB_dbi meta, enum gw_state s, int64_t delta)
{
    char name[32];
    snprintf(name, sizeof name, "count:%s", event_state_name(s));
    MDB_val k = {strlen(name), name}, v;
    uint64_t n = 0;
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 8)
        n = get_be64(v.mv_data);
    n = (int64_t)n + delta < 0 ? 0 : (uint64_t)((int64_t)n + delta);
    unsigned char buf[8];
    be64(buf, n);
    v.mv_size = 8;
    v.mv_data = buf;
    return mdb_put(txn, meta, &k, &v, 0);
}

static void release_map_pages_locked(struct store *st);

void store_dedupe_hash(const char *key, const char *occurred_at, unsigned char out[32])
{
    int64_t ms = 0;
    if (occurred_at == NULL || !gw_ts_parse(occurred_at, &ms) || ms < 0)
        ms = 0;
    unsigned char h[32];
    sig_sha256(key, strlen(key), h);
    be64(out, (uint64_t)(ms / 1000));
    memcpy(out + 8, h, 24);
}

/* A write transaction. The id counter and the per-state counts are kept
 * here and written once, just before the commit, however many batches and
 * changes the transaction holds. */
struct store_txn {
    struct store *st;
    MDB_txn *txn;
    uint64_t next_id; /* 0: not read yet */
    bool next_dirty;
    int64_t counts[GW_STATE_COUNT]; /* changes to the counters */
};

static const char next_name[] = "next_id";

/* The id the next new event gets. */
static int txn_next_id(struct store_txn *t, uint64_t *out)
{
    if (t->next_id == 0) {
        /* Ids are never given twice, even when purge removed the newest
         * events: the counter in meta wins; one past the last event is for
         * a store without it. Read in the transaction, so CLI processes
         * writing events never collide with the daemon. */
        MDB_val nk = {sizeof next_name - 1, (void *)next_name}, nv, k, v;
        if (mdb_get(t->txn, t->st->meta, &nk, &nv) == 0 && nv.mv_size == 8) {
            t->next_id = get_be64(nv.mv_data);
        } else {
            MDB_cursor *cur;
            int rc = mdb_cursor_open(t->txn, t->st->events, &cur);
            if (rc != 0)
                return rc;
            t->next_id = 1;
            if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
                t->next_id = get_be64(k.mv_data) + 1;
            mdb_cursor_close(cur);
        }
    }
    *out = t->next_id;
    return 0;
}

/* Write what the transaction kept aside (store_write, before the commit). */
static int txn_flush(struct store_txn *t)
{
    int rc = 0;
    for (int s = 0; s < GW_STATE_COUNT && rc == 0; s++)
        if (t->counts[s] != 0)
            rc = counter_add(t->txn, t->st->meta, s, t->counts[s]);
    if (rc == 0 && t->next_dirty) {
        unsigned char nb[8];
        be64(nb, t->next_id);
        MDB_val nk = {sizeof next_name - 1, (void *)next_name}, nv = {8, nb};
        rc = mdb_put(t->txn, t->st->meta, &nk, &nv, 0);
    }
    return rc;
}

bool store_state_queued(enum gw_state s)
{
    return s == GW_PENDING || s == GW_RETRYING || s == GW_IN_FLIGHT;
}

static void queue_key(unsigned char k[16], int64_t due_ms, uint64_t id)
{
    be64(k, (uint64_t)(due_ms < 0 ? 0 : due_ms));
    be64(k + 8, id);
}

/* entities key: entity key, a NUL, be64(id). */
static int entity_key(const char *ekey, uint64_t id, unsigned char *buf, size_t buflen, size_t *len)
{
    size_t n = strlen(ekey);
    if (n + 9 > buflen || n + 9 > 511)
        return MDB_BAD_VALSIZE;
    memcpy(buf, ekey, n + 1);
    be64(buf + n + 1, id);
    *len = n + 9;
    return 0;
}

static int index_add(struct store_txn *t, uint64_t id, enum gw_state state, int64_t due_ms,
                     const char *ekey)
{
    if (!store_state_queued(state))
        return 0;
    unsigned char qk[16], ek[520];
    size_t elen;
    int rc = entity_key(ekey, id, ek, sizeof ek, &elen);
    if (rc != 0)
        return rc;
    queue_key(qk, due_ms, id);
    MDB_val k = {16, qk}, v = {strlen(ekey), (void *)ekey};
    if ((rc = mdb_put(t->txn, t->st->queue, &k, &v, 0)) != 0)
        return rc;
    MDB_val ekv = {elen, ek}, empty = {0, NULL};
    return mdb_put(t->txn, t->st->entities, &ekv, &empty, 0);
}

static int index_del(struct store_txn *t, uint64_t id, enum gw_state state, int64_t due_ms,
                     const char *ekey)
{
    if (!store_state_queued(state))
        return 0;
    unsigned char qk[16], ek[520];
    size_t elen;
    queue_key(qk, due_ms, id);
    MDB_val k = {16, qk};
    int rc = mdb_del(t->txn, t->st->queue, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (entity_key(ekey, id, ek, sizeof ek, &elen) != 0)
        return 0;
    MDB_val ekv = {elen, ek};
    rc = mdb_del(t->txn, t->st->entities, &ekv, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_txn_ingest(struct store_txn *t, struct store_put *puts, size_t n)
{
    struct store *st = t->st;
    MDB_txn *txn = t->txn;
    uint64_t next_id;
    int rc = txn_next_id(t, &next_id);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct store_put *p = &puts[i];
        /* A large batch (a full poll page) reads many pages through the map
         * in one transaction: let them go as it goes. Pages it changes are
         * private copies until the commit, so nothing is lost. */
        if (i > 0 && i % 128 == 0)
            release_map_pages_locked(st);
        unsigned char idbuf[8];
        be64(idbuf, next_id);
        MDB_val dk = {32, p->key}, dv = {8, idbuf};
        if (p->has_key2 && p->key2_dedupes) {
            MDB_val k2 = {32, p->key2}, v2;
            rc = mdb_get(txn, st->dedupe, &k2, &v2);
            if (rc == 0) {
                p->duplicate = true;
                p->id = v2.mv_size == 8 ? get_be64(v2.mv_data) : 0;
                continue;
            }
            if (rc != MDB_NOTFOUND)
                return rc;
        }
        rc = mdb_put(txn, st->dedupe, &dk, &dv, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            p->duplicate = true;
            p->id = dv.mv_size == 8 ? get_be64(dv.mv_data) : 0;
            continue;
        }
        if (rc != 0)
            return rc;
        if (p->has_key2) {
            MDB_val k2 = {32, p->key2}, v2 = {8, idbuf};
            if ((rc = mdb_put(txn, st->dedupe, &k2, &v2, 0)) != 0)
                return rc;
        }
        p->duplicate = false;
        p->id = next_id++;
        MDB_val ek = {8, idbuf}, ev = {p->rec_len, (void *)p->rec};
        if ((rc = mdb_put(txn, st->events, &ek, &ev, MDB_APPEND)) != 0)
            return rc;
        if (p->payload != NULL) {
            MDB_val rv = {p->payload_len, (void *)p->payload};
            if ((rc = mdb_put(txn, st->payloads, &ek, &rv, MDB_APPEND)) != 0)
                return rc;
        }
        if ((rc = index_add(t, p->id, p->state, p->due_ms, p->entity_key ? p->entity_key : "")) !=
            0)
            return rc;
        t->counts[p->state]++;
        t->next_id = next_id;
        t->next_dirty = true;
        st->ingested_since_release++;
    }
    return 0;
}

int store_txn_get_event(struct store_txn *t, uint64_t id, json_t **out)
{
    unsigned char idbuf[8];
    be64(idbuf, id);
    MDB_val k = {8, idbuf}, v;
    int rc = mdb_get(t->txn, t->st->events, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc != 0)
        return rc;
    json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        return STORE_EFAIL;
    }
    json_object_set_new(rec, "id", json_integer((json_int_t)id));
    *out = rec;
    return 0;
}

void store_event_keys(json_t *rec, struct store_event_keys *k)
{
    int s = event_state_parse(json_string_value(json_object_get(rec, "state")) ?: "");
    k->state = s < 0 ? GW_DEAD : (enum gw_state)s;
    k->due_ms = (int64_t)json_integer_value(json_object_get(rec, "due_ms"));
    event_entity_key(rec, k->ekey, sizeof k->ekey);
}

bool store_txn_event_is(struct store_txn *t, uint64_t id, const char *text, size_t len)
{
    unsigned char idbuf[8];
    be64(idbuf, id);
    MDB_val k = {8, idbuf}, v;
    return text != NULL && mdb_get(t->txn, t->st->events, &k, &v) == 0 && v.mv_size == len &&
           memcmp(v.mv_data, text, len) == 0;
}

/* ---- the calls' bodies, apart from the record ----------------------------------------
 *
 * The activity log's request and response bodies are most of a record's
 * size, and the dispatcher reads and writes records all the time: they are
 * kept in their own database, bodies: be64(id) be32(attempt) -> [{request,
 * response}] in the order of that attempt's calls, and joined again when an
 * event is read in full (store_get_event).
 */
static void body_key(unsigned char out[12], uint64_t id, uint32_t attempt)
{
    be64(out, id);
    be32(out + 8, attempt);
}

/*
 * A value of bodies is "GWB1", then per call a byte saying which bodies follow
 * (1 request, 2 response) and each as a 32-bit big-endian length and its
 * bytes: the texts as they are, never escaped into JSON strings, which cost
 * more than the rest of an outcome's commit. Values a release before this
 * one wrote are the JSON array itself; both read the same.
 */
#define BODIES_MAGIC "GWB1"
static const char *const body_names[] = {"request", "response"};

/* A body of a call: its request or response text (the activity log keeps
 * them as text), or NULL. */
static json_t *body_of(json_t *call, int k)
{
    json_t *x = json_object_get(call, body_names[k]);
    return json_is_string(x) && json_string_length(x) <= UINT32_MAX ? x : NULL;
}

/* The bodies of calls ([{..., request, response}]) as a value; NULL when
 * memory ran out. */
static unsigned char *frame_bodies(json_t *calls, size_t *len)
{
    size_t n = 4, i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        n++;
        for (int k = 0; k < 2; k++)
            n += body_of(c, k) ? 4 + json_string_length(body_of(c, k)) : 0;
    }
    unsigned char *out = malloc(n), *w = out;
    if (out == NULL)
        return NULL;
    memcpy(w, BODIES_MAGIC, 4);
    w += 4;
    json_array_foreach(calls, i, c)
    {
        unsigned char *flags = w++;
        *flags = 0;
        for (int k = 0; k < 2; k++) {
            json_t *x = body_of(c, k);
            if (x == NULL)
                continue;
            *flags |= (unsigned char)(1 << k);
            size_t m = json_string_length(x);
            be32(w, (uint32_t)m);
            memcpy(w + 4, json_string_value(x), m);
            w += 4 + m;
        }
    }
    *len = n;
    return out;
}

/* A value of bodies as [{request, response}], or NULL when it does not read. */
static json_t *load_bodies(const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    if (len < 4 || memcmp(p, BODIES_MAGIC, 4) != 0)
        return json_loadb(data, len, 0, NULL);
    json_t *bodies = json_array();
    for (p += 4; bodies != NULL && p < end;) {
        unsigned flags = *p++;
        json_t *b = flags & ~3u ? NULL : json_object();
        for (int k = 0; b != NULL && k < 2; k++) {
            if (!(flags & (1u << k)))
                continue;
            size_t left = (size_t)(end - p), m = left >= 4 ? get_be32(p) : 0;
            json_t *x = left >= 4 && m <= left - 4 ? json_stringn((const char *)p + 4, m) : NULL;
            if (x == NULL || json_object_set_new(b, body_names[k], x) != 0) {
                json_decref(b);
                b = NULL;
            } else {
                p += 4 + m;
            }
        }
        if (b == NULL || json_array_append_new(bodies, b) != 0) {
            json_decref(bodies);
            bodies = NULL;
        }
    }
    return bodies;
}

/* rec with the bodies of its calls stored apart: *lean a copy without them
 * (NULL when rec holds none). */
static int split_bodies(struct store_txn *t, uint64_t id, json_t *rec, json_t **lean)
{
    *lean = NULL;
    json_t *history = json_object_get(rec, "history");
    size_t i, j;
    json_t *h, *c;
    json_array_foreach(history, i, h)
    {
        json_t *calls = json_object_get(h, "calls");
        bool any = false;
        json_array_foreach(calls, j, c) any =
            any || json_object_get(c, "request") || json_object_get(c, "response");
        if (!any)
            continue;
        /* Only what changes is copied: the attempts, and the calls of this
         * one without their bodies; the rest is rec's own, shared. */
        if (*lean == NULL) {
            *lean = json_copy(rec);
            json_object_set_new(*lean, "history", json_copy(history));
        }
        size_t len = 0;
        char *text = (char *)frame_bodies(calls, &len);
        json_t *mine = json_array(), *attempt = json_copy(h);
        json_array_foreach(calls, j, c)
        {
            json_t *call = json_copy(c);
            json_object_del(call, "request");
            json_object_del(call, "response");
            json_array_append_new(mine, call);
        }
        json_object_set_new(attempt, "calls", mine);
        json_array_set_new(json_object_get(*lean, "history"), i, attempt);
        unsigned char kb[12];
        body_key(kb, id, (uint32_t)json_integer_value(json_object_get(h, "attempt")));
        MDB_val k = {sizeof kb, kb}, v = {len, text};
        int rc = text ? mdb_put(t->txn, t->st->bodies, &k, &v, 0) : ENOMEM;
        free(text);
        if (rc != 0) {
            json_decref(*lean);
            *lean = NULL;
            return rc;
        }
    }
    return 0;
}

/* Delete every body of event id; how many. */
static size_t drop_bodies(MDB_txn *txn, MDB_dbi dbi, const unsigned char idk[8])
{
    MDB_cursor *cur;
    size_t n = 0;
    if (mdb_cursor_open(txn, dbi, &cur) != 0)
        return 0;
    unsigned char start[12] = {0};
    memcpy(start, idk, 8);
    MDB_val k = {sizeof start, start}, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size == 12 && memcmp(k.mv_data, idk, 8) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT)) {
        if (mdb_cursor_del(cur, 0) != 0)
            break;
        n++;
    }
    mdb_cursor_close(cur);
    return n;
}

/* Join the stored bodies into rec's calls. */
static void join_bodies(struct store *st, MDB_txn *txn, uint64_t id, json_t *rec)
{
    size_t i, j;
    json_t *h, *c;
    json_array_foreach(json_object_get(rec, "history"), i, h)
    {
        json_t *calls = json_object_get(h, "calls");
        if (json_array_size(calls) == 0)
            continue;
        unsigned char kb[12];
        body_key(kb, id, (uint32_t)json_integer_value(json_object_get(h, "attempt")));
        MDB_val k = {sizeof kb, kb}, v;
        if (mdb_get(txn, st->bodies, &k, &v) != 0)
            continue;
        json_t *bodies = load_bodies(v.mv_data, v.mv_size);
        json_array_foreach(calls, j, c)
        {
            json_t *b = json_array_get(bodies, j);
            if (json_object_get(b, "request"))
                json_object_set(c, "request", json_object_get(b, "request"));
            if (json_object_get(b, "response"))
                json_object_set(c, "response", json_object_get(b, "response"));
        }
        json_decref(bodies);
    }
}

int store_txn_put_event(struct store_txn *t, uint64_t id, json_t *rec,
                        const struct store_event_keys *old, char **text_out)
{
    struct store_event_keys ok, nk;
    if (old == NULL) {
        json_t *stored;
        int rc = store_txn_get_event(t, id, &stored);
        if (rc != 0)
            return rc;
        store_event_keys(stored, &ok);
        json_decref(stored);
        old = &ok;
    }
    store_event_keys(rec, &nk);

    json_t *lean = NULL;
    int brc = split_bodies(t, id, rec, &lean);
    if (brc != 0)
        return brc;
    /* The stored record holds no id (it is the key): rec is copied only when it has one. */
    json_t *out = lean;
    if (out == NULL)
        out = json_object_get(rec, "id") != NULL ? json_copy(rec) : json_incref(rec);
    if (out != rec)
        json_object_del(out, "id");
    size_t len;
    char *text = gw_json_text(out, JSON_COMPACT | JSON_PRESERVE_ORDER, &len);
    json_decref(out);
    if (text == NULL)
        return STORE_EFAIL;
    unsigned char idbuf[8];
    be64(idbuf, id);
    MDB_val k = {8, idbuf}, v = {len, text};
    int rc = mdb_put(t->txn, t->st->events, &k, &v, 0);
    /* A claim keeps the event queued where it was: nothing to move. */
    bool same_place = store_state_queued(old->state) == store_state_queued(nk.state) &&
                      old->due_ms == nk.due_ms && strcmp(old->ekey, nk.ekey) == 0;
    if (rc == 0 && !same_place)
        rc = index_del(t, id, old->state, old->due_ms, old->ekey);
    if (rc == 0 && !same_place)
        rc = index_add(t, id, nk.state, nk.due_ms, nk.ekey);
    if (rc == 0 && old->state != nk.state) {
        t->counts[old->state]--;
        t->counts[nk.state]++;
    }
    if (rc == 0 && text_out != NULL)
        *text_out = text;
    else
        free(text);
    return rc;
}

int store_txn_meta_get(struct store_txn *t, const char *name, json_t **out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(t->txn, t->st->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_ENOTFOUND;
    if (rc != 0)
        return rc;
    *out = json_loadb(v.mv_data, v.mv_size, JSON_DECODE_ANY, NULL);
    return *out ? 0 : STORE_EFAIL;
}

int store_txn_meta_put(struct store_txn *t, const char *name, json_t *value)
{
    char *text = gw_json_text(value, JSON_COMPACT | JSON_ENCODE_ANY, NULL);
    if (text == NULL)
        return STORE_EFAIL;
    MDB_val k = {strlen(name), (void *)name}, v = {strlen(text), text};
    int rc = mdb_put(t->txn, t->st->meta, &k, &v, 0);
    free(text);
    return rc;
}

int store_txn_meta_del(struct store_txn *t, const char *name)
{
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_del(t->txn, t->st->meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Every page LMDB reads through its map stays mapped, so resident memory
 * would grow with the store. The map is a shared, read-only file mapping:
 * dropping its pages loses nothing (the page cache keeps them; the next read
 * maps them again), and keeps the daemon's footprint small.
 *
 * LMDB does not tell where its map is (me_mapaddr is only set for a fixed
 * map): find the mapping of data.mdb in /proc/self/maps.
 */
static void locate_map(struct store *st)
{
    st->map_lo = st->map_hi = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4608];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        int name = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name) < 2 || name == 0)
            continue;
        char *path = line + name;
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(path, st->data_file) == 0) {
            st->map_lo = lo;
            st->map_hi = hi;
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    st->map_located_size = st->map_size;
}

/* Caller holds the resize lock, which keeps the map where it is; a resize
 * moves it, so it is looked up again after one. */
static void release_map_pages_locked(struct store *st)
{
    if (st->map_located_size != st->map_size)
        locate_map(st);
    if (st->map_hi > st->map_lo)
        madvise((void *)st->map_lo, st->map_hi - st->map_lo, MADV_DONTNEED);
}

static void release_map_pages(struct store *st)
{
    pthread_rwlock_rdlock(&st->resize_lock);
    release_map_pages_locked(st);
    pthread_rwlock_unlock(&st->resize_lock);
}

int store_write(struct store *st, store_txn_fn fn, void *arg, char *err, size_t errlen)
{
    /* Each page fault maps its neighbours too (fault-around), so pages pile
     * up with every stored event: release after a thousand new events,
     * and at least every 250 ms. Releasing after every small commit would
     * cost the dispatcher and the ingress their pages over and over. */
    int64_t now = gw_now_ms();
    if (st->ingested_since_release >= 1024 || now - st->released_ms >= 250) {
        st->ingested_since_release = 0;
        st->released_ms = now;
        release_map_pages(st);
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        pthread_rwlock_rdlock(&st->resize_lock);
        struct store_txn t = {st, NULL, 0, false, {0}};
        int rc = txn_begin(st, 0, &t.txn);
        if (rc == 0) {
            rc = fn(&t, arg);
            if (rc == 0)
                rc = txn_flush(&t);
            if (rc == 0)
                rc = mdb_txn_commit(t.txn); /* full sync: durable when it returns */
            else
                mdb_txn_abort(t.txn);
        }
        pthread_rwlock_unlock(&st->resize_lock);
        if (rc == 0)
            return 0;
        if (rc == MDB_MAP_FULL && grow_map(st))
            continue; /* redo the whole transaction in the larger map */
        if (rc == STORE_ENOTFOUND) {
            gw_errf(err, errlen, "not found");
            return STORE_ENOTFOUND;
        }
        gw_errf(err, errlen, "store write failed: %s",
                rc > 0 || rc < -100 ? mdb_strerror(rc) : "bad record");
        return STORE_EFAIL;
    }
    gw_errf(err, errlen, "store write failed: the map keeps filling up");
    return STORE_EFAIL;
}

struct ingest_arg {
    struct store_put *puts;
    size_t n;
};

static int ingest_fn(struct store_txn *t, void *arg)
{
    struct ingest_arg *a = arg;
    return store_txn_ingest(t, a->puts, a->n);
}

int store_ingest(struct store *st, struct store_put *puts, size_t n, char *err, size_t errlen)
{
    struct ingest_arg a = {puts, n};
    return store_write(st, ingest_fn, &a, err, errlen);
}

/* Run fn inside a read transaction. */
static int with_read(struct store *st, int (*fn)(struct store *, MDB_txn *, void *), void *arg,
                     char *err, size_t errlen)
{
    pthread_rwlock_rdlock(&st->resize_lock);
    MDB_txn *txn;
    int rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&st->resize_lock);
        gw_errf(err, errlen, "store read failed: %s", mdb_strerror(rc));
        return STORE_EFAIL;
    }
    rc = fn(st, txn, arg);
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->resize_lock);
    if (rc == MDB_NOTFOUND) {
        gw_errf(err, errlen, "not found");
        return STORE_ENOTFOUND;
    }
    if (rc != 0) {
        gw_errf(err, errlen, "store read failed: %s",
                rc > 0 ? "unreadable record" : mdb_strerror(rc));
        return STORE_EFAIL;
    }
    return 0;
}

/* Copies of an event's record and payload, read in one transaction. */
struct text_arg {
    uint64_t id;
    bool want_record, want_payload;
    char *text, *payload;
    size_t len, payload_len;
};

static char *copy_val(const MDB_val *v)
{
    char *p = malloc(v->mv_size + 1);
    if (p != NULL) {
        memcpy(p, v->mv_data, v->mv_size);
        p[v->mv_size] = '\0';
    }
    return p;
}

static int get_text_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct text_arg *a = arg;
    unsigned char idbuf[8];
    be64(idbuf, a->id);
    MDB_val k = {8, idbuf}, v;
    int rc;
    if (a->want_record) {
        if ((rc = mdb_get(txn, st->events, &k, &v)) != 0)
            return rc;
        if ((a->text = copy_val(&v)) == NULL)
            return ENOMEM;
        a->len = v.mv_size;
    }
    if (a->want_payload) {
        rc = mdb_get(txn, st->payloads, &k, &v);
        if (rc == MDB_NOTFOUND && a->want_record)
            return 0; /* an event without a payload */
        if (rc != 0)
            return rc;
        if ((a->payload = copy_val(&v)) == NULL)
            return ENOMEM;
        a->payload_len = v.mv_size;
    }
    return 0;
}

static int read_copies(struct store *st, struct text_arg *a, char *err, size_t errlen)
{
    int rc = with_read(st, get_text_fn, a, err, errlen);
    if (rc != 0) {
        free(a->text);
        free(a->payload);
        a->text = a->payload = NULL;
    }
    return rc;
}

struct join_arg {
    uint64_t id;
    json_t *rec;
};

static int join_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct join_arg *j = arg;
    join_bodies(st, txn, j->id, j->rec);
    return 0;
}

int store_get_event(struct store *st, uint64_t id, json_t **out, char *err, size_t errlen)
{
    struct text_arg a = {id, true, false, NULL, NULL, 0, 0};
    int rc = read_copies(st, &a, err, errlen);
    if (rc != 0)
        return rc;
    json_t *rec = json_loadb(a.text, a.len, 0, NULL);
    free(a.text);
    if (!json_is_object(rec)) {
        json_decref(rec);
        if (err != NULL)
            snprintf(err, errlen, "event %llu: unreadable record", (unsigned long long)id);
        return STORE_EFAIL;
    }
    json_object_set_new(rec, "id", json_integer((json_int_t)id));
    struct join_arg j = {id, rec};
    with_read(st, join_fn, &j, NULL, 0);
    *out = rec;
    return 0;
}

int store_get_payload(struct store *st, uint64_t id, void **out, size_t *len, char *err,
                      size_t errlen)
{
    struct text_arg a = {id, false, true, NULL, NULL, 0, 0};
    int rc = read_copies(st, &a, err, errlen);
    if (rc == 0) {
        *out = a.payload;
        *len = a.payload_len;
    }
    return rc;
}

struct scan_arg {
    store_event_cb cb;
    void *arg;
    uint64_t before;
};

static int scan_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct scan_arg *a = arg;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->events, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    unsigned char start[8];
    be64(start, a->before);
    if (a->before == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    } else {
        k = (MDB_val){sizeof start, start};
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        rc = rc == 0              ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
             : rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                  : rc;
    }
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        if (k.mv_size != 8)
            continue;
        if (a->cb(get_be64(k.mv_data), v.mv_data, v.mv_size, a->arg) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : (rc > 0 ? 0 : rc);
}

int store_scan_events(struct store *st, store_event_cb cb, void *arg, char *err, size_t errlen)
{
    return store_scan_events_before(st, 0, cb, arg, err, errlen);
}

int store_scan_events_before(struct store *st, uint64_t before, store_event_cb cb, void *arg,
                             char *err, size_t errlen)
{
    struct scan_arg a = {cb, arg, before};
    return with_read(st, scan_fn, &a, err, errlen);
}

static int counts_fn(struct store *st, MDB_txn *txn, void *arg)
{
    uint64_t *counts = arg;
    for (int s = 0; s < GW_STATE_COUNT; s++) {
        char name[32];
        snprintf(name, sizeof name, "count:%s", event_state_name(s));
        MDB_val k = {strlen(name), name}, v;
        counts[s] = mdb_get(txn, st->meta, &k, &v) == 0 && v.mv_size == 8 ? get_be64(v.mv_data) : 0;
    }
    return 0;
}

int store_counts(struct store *st, uint64_t counts[GW_STATE_COUNT], char *err, size_t errlen)
{
    return with_read(st, counts_fn, counts, err, errlen);
}

static int meta_get_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct store_txn t = {st, txn, 0, false, {0}};
    struct {
        const char *name;
        json_t *out;
    } *a = arg;
    int rc = store_txn_meta_get(&t, a->name, &a->out);
    return rc == STORE_ENOTFOUND ? MDB_NOTFOUND : rc;
}

int store_meta_get(struct store *st, const char *name, json_t **out, char *err, size_t errlen)
{
    struct {
        const char *name;
        json_t *out;
    } a = {name, NULL};
    int rc = with_read(st, meta_get_fn, &a, err, errlen);
    if (rc == 0)
        *out = a.out;
    return rc;
}

struct meta_scan_arg {
    const char *prefix;
    store_meta_cb cb;
    void *arg;
};

static int meta_scan_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct meta_scan_arg *a = arg;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->meta, &cur);
    if (rc != 0)
        return rc;
    size_t n = strlen(a->prefix);
    MDB_val k = {n, (void *)a->prefix}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < n || memcmp(k.mv_data, a->prefix, n) != 0)
            break;
        if (a->cb((const char *)k.mv_data, k.mv_size, (const char *)v.mv_data, v.mv_size, a->arg) !=
            0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

int store_meta_scan(struct store *st, const char *prefix, store_meta_cb cb, void *arg, char *err,
                    size_t errlen)
{
    struct meta_scan_arg a = {prefix, cb, arg};
    return with_read(st, meta_scan_fn, &a, err, errlen);
}

struct due_arg {
    int64_t now_ms;
    size_t limit;
    store_skip_fn skip;
    store_due_cb cb;
    void *arg;
};

/* Is id the first unfinished event of its entity? */
static bool entity_head(struct store *st, MDB_txn *txn, const MDB_val *ekey, uint64_t id)
{
    unsigned char buf[520];
    if (ekey->mv_size + 1 > sizeof buf - 8)
        return true;
    memcpy(buf, ekey->mv_data, ekey->mv_size);
    buf[ekey->mv_size] = '\0';
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, st->entities, &cur) != 0)
        return false;
    MDB_val k = {ekey->mv_size + 1, buf}, v;
    bool head = false;
    if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 && k.mv_size == ekey->mv_size + 9 &&
        memcmp(k.mv_data, buf, ekey->mv_size + 1) == 0)
        head = get_be64((const unsigned char *)k.mv_data + ekey->mv_size + 1) == id;
    mdb_cursor_close(cur);
    return head;
}

static int due_fn(struct store *st, MDB_txn *txn, void *arg)
{
    struct due_arg *a = arg;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->queue, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    size_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < a->limit;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        if (k.mv_size != 16)
            continue;
        int64_t due = (int64_t)get_be64(k.mv_data);
        if (due > a->now_ms)
            break;
        uint64_t id = get_be64((const unsigned char *)k.mv_data + 8);
        if (a->skip != NULL && a->skip(id, v.mv_data, v.mv_size, a->arg))
            continue;
        struct store_due e = {id, due, entity_head(st, txn, &v, id), NULL, NULL, 0, 0};
        if (e.head) {
            unsigned char idbuf[8];
            be64(idbuf, id);
            MDB_val ik = {8, idbuf}, rv;
            if (mdb_get(txn, st->events, &ik, &rv) != 0)
                continue;
            e.rec = rv.mv_data;
            e.rec_len = rv.mv_size;
            if (mdb_get(txn, st->payloads, &ik, &rv) == 0) {
                e.payload = rv.mv_data;
                e.payload_len = rv.mv_size;
            }
        }
        if (a->cb(&e, a->arg) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return 0;
}

int store_scan_due(struct store *st, int64_t now_ms, size_t limit, store_skip_fn skip,
                   store_due_cb cb, void *arg, char *err, size_t errlen)
{
    struct due_arg a = {now_ms, limit, skip, cb, arg};
    return with_read(st, due_fn, &a, err, errlen);
}

static int oldest_fn(struct store *st, MDB_txn *txn, void *arg)
{
    int64_t *ms = arg;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->queue, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    *ms = 0;
    /* The queue is ordered by due time: the first entry is the earliest due. */
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 16)
        *ms = (int64_t)get_be64(k.mv_data);
    mdb_cursor_close(cur);
    return 0;
}

int store_oldest_queued(struct store *st, int64_t *received_ms, char *err, size_t errlen)
{
    return with_read(st, oldest_fn, received_ms, err, errlen);
}

/* A dead event's record without the bodies of its calls (the activity
 * log's request and response), marked so; NULL when it has none left. */
static json_t *without_bodies(json_t *rec)
{
    if (json_is_true(json_object_get(rec, "bodies_purged")))
        return NULL;
    json_t *copy = json_deep_copy(rec);
    size_t i, j;
    json_t *h, *c;
    json_array_foreach(json_object_get(copy, "history"), i, h)
    {
        json_array_foreach(json_object_get(h, "calls"), j, c)
        {
            json_object_del(c, "request");
            json_object_del(c, "response");
        }
    }
    json_object_set_new(copy, "bodies_purged", json_true());
    return copy;
}

int store_txn_purge(struct store_txn *t, const struct purge_opts *o, struct purge_result *res)
{
    struct store *st = t->st;
    MDB_txn *txn = t->txn;
    memset(res, 0, sizeof *res);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->events, &cur);
    if (rc != 0)
        return rc;
    unsigned char start[8];
    be64(start, o->start_id);
    MDB_val k = {8, start}, v;
    int64_t dropped[GW_STATE_COUNT] = {0};
    size_t visited = 0;
    for (int op = o->start_id ? MDB_SET_RANGE : MDB_FIRST; rc == 0; op = MDB_NEXT) {
        rc = mdb_cursor_get(cur, &k, &v, op);
        if (rc != 0)
            break;
        if (o->max_visit && visited++ >= o->max_visit) {
            res->next_id = get_be64(k.mv_data); /* go on from here in the next transaction */
            break;
        }
        json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        const char *received = json_string_value(json_object_get(rec, "received_at"));
        int state = event_state_parse(json_string_value(json_object_get(rec, "state")) ?: "");
        int64_t ms;
        if (received == NULL || !gw_ts_parse(received, &ms) || ms >= o->before_ms) {
            json_decref(rec);
            /* Ids grow with time: everything after this is newer. */
            if (received != NULL)
                break;
            continue;
        }
        MDB_val rk = k;
        if (state == GW_DONE || state == GW_SKIPPED) {
            static const char *const keys[] = {"dedupe_key", "change_key"};
            for (size_t i = 0; i < 2; i++) {
                const char *dkey = json_string_value(json_object_get(rec, keys[i]));
                if (dkey == NULL)
                    continue;
                unsigned char h[32];
                store_dedupe_hash(dkey, json_string_value(json_object_get(rec, "occurred_at")), h);
                MDB_val dk = {32, h};
                mdb_del(txn, st->dedupe, &dk, NULL);
            }
            if (mdb_del(txn, st->payloads, &rk, NULL) == 0)
                res->payloads++;
            unsigned char gone[8];
            memcpy(gone, rk.mv_data, sizeof gone);
            drop_bodies(txn, st->bodies, gone);
            rc = mdb_cursor_del(cur, 0);
            dropped[state]++;
            res->events++;
        } else if (state == GW_DEAD && !o->keep_dead) {
            /* The record stays for the operator; what came in and went out goes. */
            json_t *bare = without_bodies(rec);
            if (bare != NULL) {
                /* The key is copied: a put of another size moves the page it is on. */
                unsigned char idk[8];
                memcpy(idk, rk.mv_data, sizeof idk);
                MDB_val ik = {sizeof idk, idk};
                if (mdb_del(txn, st->payloads, &ik, NULL) == 0)
                    res->payloads++;
                drop_bodies(txn, st->bodies, idk);
                char *text = gw_json_text(bare, JSON_COMPACT | JSON_PRESERVE_ORDER, NULL);
                MDB_val nv = {text ? strlen(text) : 0, text};
                rc = text ? mdb_cursor_put(cur, &ik, &nv, MDB_CURRENT) : ENOMEM;
                free(text);
                json_decref(bare);
                res->dead_stripped++;
            }
        }
        json_decref(rec);
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    for (int s = 0; s < GW_STATE_COUNT; s++)
        t->counts[s] -= dropped[s];
    return rc;
}

struct purge_arg {
    const struct purge_opts *o;
    struct purge_result res;
};

/* One transaction; it may run again after the map grew, so it counts anew. */
static int purge_fn(struct store_txn *t, void *arg)
{
    struct purge_arg *a = arg;
    return store_txn_purge(t, a->o, &a->res);
}

/* Through store_write, so a full map grows as for any other write. */
int store_purge(struct store *st, const struct purge_opts *o, struct purge_result *res, char *err,
                size_t errlen)
{
    struct purge_arg a = {o, {0}};
    int rc = store_write(st, purge_fn, &a, err, errlen);
    if (rc == 0)
        *res = a.res;
    else
        memset(res, 0, sizeof *res);
    return rc;
}

/* ---- forgetting a person ------------------------------------------------------- */

#define FORGOTTEN "[forgotten]"

/* Where the address starts in text at or after from (case-insensitive, not
 * inside a longer address), or -1. */
static long address_at(const char *text, size_t len, size_t from, const char *addr, size_t n)
{
    for (size_t i = from; n > 0 && i + n <= len; i++) {
        if (strncasecmp(text + i, addr, n) != 0)
            continue;
        unsigned char before = i > 0 ? (unsigned char)text[i - 1] : ' ';
        unsigned char after = i + n < len ? (unsigned char)text[i + n] : ' ';
        if (isalnum(before) || strchr("._%+-", before) != NULL || isalnum(after) ||
            (after == '.' && i + n + 1 < len && isalnum((unsigned char)text[i + n + 1])) ||
            after == '-')
            continue;
        return (long)i;
    }
    return -1;
}

/* text with every occurrence of the address replaced (new, NUL-terminated), or NULL when none. */
static char *redacted(const char *text, size_t len, const char *addr, size_t *outlen)
{
    size_t n = strlen(addr);
    long at = address_at(text, len, 0, addr, n);
    if (at < 0)
        return NULL;
    size_t cap = len + 1, used = 0, from = 0;
    char *out = malloc(cap);
    while (out != NULL && at >= 0) {
        size_t need = used + ((size_t)at - from) + sizeof FORGOTTEN + (len - (size_t)at);
        if (need > cap) {
            char *grown = realloc(out, cap = need);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + used, text + from, (size_t)at - from);
        used += (size_t)at - from;
        memcpy(out + used, FORGOTTEN, sizeof FORGOTTEN - 1);
        used += sizeof FORGOTTEN - 1;
        from = (size_t)at + n;
        at = address_at(text, len, from, addr, n);
    }
    if (out == NULL)
        return NULL;
    if (used + (len - from) + 1 > cap) {
        char *grown = realloc(out, used + (len - from) + 1);
        if (grown == NULL) {
            free(out);
            return NULL;
        }
        out = grown;
    }
    memcpy(out + used, text + from, len - from);
    used += len - from;
    out[used] = '\0';
    *outlen = used;
    return out;
}

/* Every string in v with the address replaced; true when one was. */
static bool redact_json(json_t *v, const char *addr)
{
    bool changed = false;
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x) changed |= redact_json(x, addr);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) changed |= redact_json(x, addr);
    } else if (json_is_string(v)) {
        size_t n;
        char *r = redacted(json_string_value(v), json_string_length(v), addr, &n);
        if (r != NULL) {
            json_string_setn(v, r, n);
            free(r);
            changed = true;
        }
    }
    return changed;
}

/* The value without the address (new), or NULL when it holds none. JSON
 * stays JSON (strings redacted, the rest as it was); anything else is
 * redacted as bytes. */
static char *forget_value(const MDB_val *v, const char *addr, bool framed_ok, size_t *outlen)
{
    size_t n;
    char *raw = redacted(v->mv_data, v->mv_size, addr, &n);
    if (raw == NULL)
        return NULL;
    if (framed_ok && v->mv_size >= 4 && memcmp(v->mv_data, BODIES_MAGIC, 4) == 0) {
        /* Bodies as they are: redacted in each, framed again. */
        json_t *bodies = load_bodies(v->mv_data, v->mv_size);
        char *framed = NULL;
        if (bodies != NULL && redact_json(bodies, addr))
            framed = (char *)frame_bodies(bodies, outlen);
        json_decref(bodies);
        if (framed != NULL) {
            free(raw);
            return framed;
        }
    }
    json_t *j = json_loadb(v->mv_data, v->mv_size, JSON_DECODE_ANY, NULL);
    if (j != NULL && redact_json(j, addr)) {
        char *text = gw_json_text(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY, NULL);
        json_decref(j);
        if (text != NULL && address_at(text, strlen(text), 0, addr, strlen(addr)) < 0) {
            free(raw);
            *outlen = strlen(text);
            return text;
        }
        free(text); /* an escaped form in the text: redact the bytes */
    } else {
        json_decref(j);
    }
    *outlen = n;
    return raw;
}

static int forget_db(MDB_txn *txn, MDB_dbi dbi, bool framed_ok, const char *addr, bool dry_run,
                     size_t *count)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    struct change {
        void *key;
        size_t klen;
        char *val;
        size_t vlen;
    } *changes = NULL;
    size_t nchanges = 0, cap = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t vlen;
        char *val = forget_value(&v, addr, framed_ok, &vlen);
        if (val == NULL)
            continue;
        (*count)++;
        if (dry_run) {
            free(val);
            continue;
        }
        if (nchanges == cap) {
            struct change *grown = realloc(changes, (cap = cap ? cap * 2 : 16) * sizeof *changes);
            if (grown == NULL) {
                free(val);
                rc = ENOMEM;
                break;
            }
            changes = grown;
        }
        void *key = malloc(k.mv_size);
        if (key == NULL) {
            free(val);
            rc = ENOMEM;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        changes[nchanges++] = (struct change){key, k.mv_size, val, vlen};
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    for (size_t i = 0; i < nchanges; i++) {
        MDB_val ck = {changes[i].klen, changes[i].key}, cv = {changes[i].vlen, changes[i].val};
        if (rc == 0)
            rc = mdb_put(txn, dbi, &ck, &cv, 0);
        free(changes[i].key);
        free(changes[i].val);
    }
    free(changes);
    return rc;
}

int store_txn_forget(struct store_txn *t, const char *address, bool dry_run,
                     struct forget_result *res)
{
    memset(res, 0, sizeof *res);
    if (address == NULL || strlen(address) < 3 || strchr(address, '@') == NULL)
        return STORE_EFAIL;
    int rc = forget_db(t->txn, t->st->events, false, address, dry_run, &res->events);
    if (rc == 0)
        rc = forget_db(t->txn, t->st->payloads, false, address, dry_run, &res->payloads);
    if (rc == 0)
        rc = forget_db(t->txn, t->st->meta, false, address, dry_run, &res->meta);
    if (rc == 0)
        rc = forget_db(t->txn, t->st->bodies, true, address, dry_run, &res->events);
    return rc;
}
