/*
 * inbox.c - the inbox log (see inbox.h).
 *
 * Files are filled ahead of use (zeros, by a helper thread, or a done file
 * taken back): a record written into one changes no file size or block map,
 * so its fdatasync writes the data and nothing of the file system journal.
 * The log ends at the first record that is not the next seq whole, so
 * zeros, a torn write, or the records of a file's earlier life end it.
 *
 * Appends write whole pages: the page the log ends in is kept in memory and
 * written again with the new records, and the last page is padded with
 * zeros. A partial page write would first read the page from the disk
 * (the filler writes past the page cache), inside the commit.
 *
 * Record layout, little-endian:
 *   0  check     first 8 bytes of SHA-256 over bytes 8 .. end of body
 *   8  magic     "GWIB"
 *   12 length    of the body
 *   16 seq       1, 2, ... with no gaps across files
 *   24 received  ms since the epoch
 *   32 body
 */
#include "inbox.h"
#include "sig.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEAD     32
#define MAGIC    "GWIB"
#define MAX_BODY (INBOX_SEGMENT - HEAD)
#define PAGE     4096u

struct segment {
    uint64_t first; /* seq of its first record */
    int fd;
    uint64_t size; /* bytes of whole records: where the next one goes */
    bool filled;   /* filled ahead (else it grows with each write) */
};

/*
 * Records are read a block at a time: one pread brings in the records of a
 * burst together, not two preads each (head, then body).
 */
#define READ_BLOCK (64u * 1024u)

struct reader {
    int fd;
    uint64_t end;   /* bytes of the file that may be read: whole records */
    uint64_t first; /* the file's first seq: which file the block is of */
    char *buf;      /* the file's bytes at..at+len, and room for a NUL */
    size_t cap;
    uint64_t at;
    size_t len;
};

/* The file filled ahead, <dir>/spare.tmp. */
enum spare_state { SPARE_NONE, SPARE_FILLING, SPARE_READY };

struct pos {
    size_t seg;
    uint64_t off;
    uint64_t seq; /* of the record at seg/off */
};

struct inbox {
    char *dir;
    struct segment *segs;
    size_t nsegs, cap;
    uint64_t seg_bytes; /* size of a file */
    uint64_t next_seq;  /* of the next record appended */
    uint64_t done_seq;
    struct pos rd;            /* record done_seq + 1 */
    struct pos peek;          /* after the last record inbox_read gave */
    struct reader block;      /* what inbox_read reads records from */
    unsigned char tail[PAGE]; /* the last file's page at its size, up to it */
    int lock_fd;              /* <dir>/lock, held: one daemon writes the log */

    pthread_t filler;
    bool filler_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum spare_state spare;
    bool wanted; /* the inbox was used: keep a spare */
    bool stop;
};

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Header for a body; the check covers header bytes 8.. and the body. */
static bool make_head(unsigned char h[HEAD], uint64_t seq, int64_t received, const void *body,
                      size_t len)
{
    memcpy(h + 8, MAGIC, 4);
    put_le(h + 12, len, 4);
    put_le(h + 16, seq, 8);
    put_le(h + 24, (uint64_t)received, 8);
    unsigned char d[32];
    if (!sig_sha256_2(h + 8, HEAD - 8, len ? body : "", len, d))
        return false;
    memcpy(h, d, 8);
    return true;
}

/* Up to len bytes at off: how many there were before the end of the file,
 * or -1 on an error. */
static ssize_t read_upto(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static bool read_full(int fd, void *buf, size_t len, uint64_t off)
{
    return read_upto(fd, buf, len, off) == (ssize_t)len;
}

/* The file's bytes off..off+need, read when the block lacks them; NULL past
 * the end or on a read error. Valid until the next call. */
static unsigned char *reader_get(struct reader *rd, uint64_t off, size_t need)
{
    if (off >= rd->at && off + need <= rd->at + rd->len)
        return (unsigned char *)rd->buf + (off - rd->at);
    if (off > rd->end || need > rd->end - off)
        return NULL;
    size_t want = need > READ_BLOCK ? need : READ_BLOCK;
    if (want > rd->end - off)
        want = (size_t)(rd->end - off);
    if (want + 1 > rd->cap) {
        char *b = realloc(rd->buf, want + 1);
        if (b == NULL)
            return NULL;
        rd->buf = b;
        rd->cap = want + 1;
    }
    rd->len = 0;
    ssize_t got = read_upto(rd->fd, rd->buf, want, off);
    if (got < 0)
        return NULL;
    rd->at = off;
    rd->len = (size_t)got;
    return rd->len >= need ? (unsigned char *)rd->buf : NULL;
}

/*
 * The record at off, expecting seq: true and its parts when it is whole and
 * sound; false at the end of the log (or a torn tail). Its body is followed
 * by the byte after it in the block (or the room for a NUL), which the
 * caller may set to NUL while it uses the body.
 */
static bool read_rec(struct reader *rd, uint64_t off, uint64_t seq, char **body, size_t *len,
                     int64_t *received)
{
    unsigned char *h = reader_get(rd, off, HEAD);
    if (h == NULL || memcmp(h + 8, MAGIC, 4) != 0 || get_le(h + 16, 8) != seq)
        return false;
    size_t n = (size_t)get_le(h + 12, 4);
    if (n > MAX_BODY || (h = reader_get(rd, off, HEAD + n)) == NULL)
        return false;
    unsigned char want[HEAD];
    int64_t at = (int64_t)get_le(h + 24, 8);
    if (!make_head(want, seq, at, h + HEAD, n) || memcmp(want, h, 8) != 0)
        return false;
    *body = (char *)h + HEAD;
    *len = n;
    *received = at;
    return true;
}

/* Walk a file's sound records from its start: the offset after them, and
 * the seq after the last one. Stops early at seq stop (its offset). */
static uint64_t scan(int fd, uint64_t first, uint64_t stop, uint64_t *next_seq)
{
    struct reader rd = {.fd = fd, .end = UINT64_MAX}; /* up to the end of the file */
    char *body;
    size_t len;
    int64_t received;
    uint64_t off = 0, seq = first;
    while (seq != stop && read_rec(&rd, off, seq, &body, &len, &received)) {
        off += HEAD + len;
        seq++;
    }
    free(rd.buf);
    *next_seq = seq;
    return off;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* First seqs of the log files in dir, sorted; *n of them (0 when none). */
static int list_segments(const char *dir, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first = 0;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".log") != 0)
            continue;
        bool ok = true;
        for (int i = 0; i < 16 && ok; i++) {
            char c = e->d_name[i];
            int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            ok = v >= 0;
            first = (first << 4) | (uint64_t)(v < 0 ? 0 : v);
        }
        if (!ok)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *m = realloc(*out, cap * sizeof *m);
            if (m == NULL) {
                closedir(d);
                return -1;
            }
            *out = m;
        }
        (*out)[(*n)++] = first;
    }
    closedir(d);
    if (*n > 0)
        qsort(*out, *n, sizeof **out, cmp_u64);
    return 0;
}

static void seg_path(const char *dir, uint64_t first, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%016llx.log", dir, (unsigned long long)first);
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int add_segment(struct inbox *ib, uint64_t first, int fd, uint64_t size, bool filled)
{
    if (ib->nsegs == ib->cap) {
        size_t cap = ib->cap ? ib->cap * 2 : 8;
        struct segment *s = realloc(ib->segs, cap * sizeof *s);
        if (s == NULL)
            return -1;
        ib->segs = s;
        ib->cap = cap;
    }
    ib->segs[ib->nsegs++] = (struct segment){first, fd, size, filled};
    return 0;
}

static void spare_path(const char *dir, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/spare.tmp", dir);
}

/* Drop the first file: every record in it is done. It becomes the spare
 * when there is none (already filled, and its old records end the log). */
static void drop_first(struct inbox *ib)
{
    char path[PATH_MAX], spare[PATH_MAX];
    seg_path(ib->dir, ib->segs[0].first, path, sizeof path);
    spare_path(ib->dir, spare, sizeof spare);
    close(ib->segs[0].fd);
    pthread_mutex_lock(&ib->mu);
    if (ib->spare == SPARE_NONE && rename(path, spare) == 0)
        ib->spare = SPARE_READY;
    else
        unlink(path);
    pthread_mutex_unlock(&ib->mu);
    memmove(ib->segs, ib->segs + 1, (ib->nsegs - 1) * sizeof *ib->segs);
    ib->nsegs--;
    ib->rd.seg--;
    if (ib->peek.seg > 0)
        ib->peek.seg--;
}

/* Place pos at record seq (scanning the file that holds it). */
static void seek_seq(struct inbox *ib, uint64_t seq, struct pos *p)
{
    size_t i = 0;
    while (i + 1 < ib->nsegs && ib->segs[i + 1].first <= seq)
        i++;
    uint64_t at;
    p->seg = i;
    p->seq = seq;
    p->off = ib->nsegs ? scan(ib->segs[i].fd, ib->segs[i].first, seq, &at) : 0;
}

#define FILL_CHUNK (1u << 20)

/* Open the spare for filling: past the page cache when the file system
 * allows, so the zeros go out as they are written, not as one big flush
 * that the inbox's own syncs would wait behind. */
static int open_spare(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
    if (fd < 0 && errno == EINVAL)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    return fd;
}

/* Fill the spare with zeros whenever there is none, a chunk at a time with
 * a pause between, leaving the disk to the inbox's syncs. */
static void *filler_main(void *arg)
{
    struct inbox *ib = arg;
    pthread_setname_np(pthread_self(), "gw-inbox");
    void *zeros = NULL;
    if (posix_memalign(&zeros, 4096, FILL_CHUNK) != 0)
        return NULL;
    memset(zeros, 0, FILL_CHUNK);
    char path[PATH_MAX];
    spare_path(ib->dir, path, sizeof path);
    pthread_mutex_lock(&ib->mu);
    for (;;) {
        while (!ib->stop && (ib->spare != SPARE_NONE || !ib->wanted))
            pthread_cond_wait(&ib->cv, &ib->mu);
        if (ib->stop)
            break;
        ib->spare = SPARE_FILLING;
        pthread_mutex_unlock(&ib->mu);
        bool ok = false;
        int fd = open_spare(path);
        if (fd >= 0) {
            uint64_t off = 0;
            ok = true;
            while (ok && off < ib->seg_bytes) {
                size_t chunk = ib->seg_bytes - off < FILL_CHUNK ? ib->seg_bytes - off : FILL_CHUNK;
                ssize_t w = pwrite(fd, zeros, chunk, (off_t)off);
                ok = w > 0 || (w < 0 && errno == EINTR);
                off += w > 0 ? (uint64_t)w : 0;
                pthread_mutex_lock(&ib->mu);
                ok = ok && !ib->stop;
                pthread_mutex_unlock(&ib->mu);
                struct timespec pause = {0, 2000000};
                nanosleep(&pause, NULL);
            }
            ok = ok && fdatasync(fd) == 0;
            close(fd);
        }
        if (!ok)
            unlink(path);
        pthread_mutex_lock(&ib->mu);
        ib->spare = ok ? SPARE_READY : SPARE_NONE;
        if (!ok && !ib->stop) {
            /* A full disk, say: try again in a while; appends go on meanwhile. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 10;
            pthread_cond_timedwait(&ib->cv, &ib->mu, &ts);
        }
    }
    pthread_mutex_unlock(&ib->mu);
    free(zeros);
    return NULL;
}

void inbox_close(struct inbox *ib)
{
    if (ib == NULL)
        return;
    if (ib->filler_started) {
        pthread_mutex_lock(&ib->mu);
        ib->stop = true;
        pthread_cond_broadcast(&ib->cv);
        pthread_mutex_unlock(&ib->mu);
        pthread_join(ib->filler, NULL);
    }
    pthread_mutex_destroy(&ib->mu);
    pthread_cond_destroy(&ib->cv);
    if (ib->lock_fd > 0)
        close(ib->lock_fd);
    for (size_t i = 0; i < ib->nsegs; i++)
        close(ib->segs[i].fd);
    free(ib->segs);
    free(ib->dir);
    free(ib->block.buf);
    free(ib);
}

int inbox_open(const char *dir, uint64_t done_seq, size_t segment_bytes, struct inbox **out,
               char *err, size_t errlen)
{
    *out = NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        gw_errf(err, errlen, "inbox %s: %s", dir, strerror(errno));
        return -1;
    }
    struct inbox *ib = calloc(1, sizeof *ib);
    uint64_t *firsts = NULL;
    size_t n = 0;
    if (ib != NULL) {
        pthread_mutex_init(&ib->mu, NULL);
        pthread_cond_init(&ib->cv, NULL);
        /* Whole pages, so the filler can write past the page cache. */
        ib->seg_bytes = segment_bytes ? (segment_bytes + PAGE - 1) / PAGE * PAGE : INBOX_SEGMENT;
    }
    if (ib == NULL || (ib->dir = strdup(dir)) == NULL || list_segments(dir, &firsts, &n) != 0) {
        gw_errf(err, errlen, "inbox %s: %s", dir, strerror(errno ? errno : ENOMEM));
        free(firsts);
        inbox_close(ib);
        return -1;
    }
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    ib->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ib->lock_fd < 0 || flock(ib->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        gw_errf(err, errlen, "inbox %s: %s", dir,
                errno == EWOULDBLOCK ? "another gateway is serving this store" : strerror(errno));
        free(firsts);
        inbox_close(ib);
        return -1;
    }
    uint64_t next = done_seq + 1;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        seg_path(dir, firsts[i], path, sizeof path);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        uint64_t after = firsts[i];
        /* The log goes on where the sound records end: a torn tail (no
         * reply ever followed it) is written over. */
        uint64_t size = fd < 0 ? 0 : scan(fd, firsts[i], UINT64_MAX, &after);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 ||
            add_segment(ib, firsts[i], fd, size, (uint64_t)st.st_size >= ib->seg_bytes) != 0) {
            gw_errf(err, errlen, "inbox %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            free(firsts);
            inbox_close(ib);
            return -1;
        }
        if (after > next)
            next = after;
    }
    free(firsts);
    if (ib->nsegs > 0) {
        const struct segment *last = &ib->segs[ib->nsegs - 1];
        uint64_t in_page = last->size % PAGE;
        if (in_page > 0 && !read_full(last->fd, ib->tail, in_page, last->size - in_page)) {
            gw_errf(err, errlen, "inbox %s: cannot read its last page", dir);
            inbox_close(ib);
            return -1;
        }
    }
    ib->next_seq = next;
    ib->done_seq = done_seq;
    seek_seq(ib, done_seq + 1, &ib->rd);
    /* A spare half filled when the last run stopped is filled again. */
    char spare[PATH_MAX];
    spare_path(dir, spare, sizeof spare);
    unlink(spare);
    while (ib->nsegs > 1 && ib->rd.seg > 0)
        drop_first(ib);
    ib->peek = ib->rd;
    if (pthread_create(&ib->filler, NULL, filler_main, ib) == 0)
        ib->filler_started = true;
    *out = ib;
    return 0;
}

uint64_t inbox_pending(const struct inbox *ib)
{
    return ib->next_seq - 1 - ib->done_seq;
}

int64_t inbox_oldest_ms(struct inbox *ib)
{
    if (inbox_pending(ib) == 0)
        return 0;
    struct pos p = ib->rd;
    while (p.seg + 1 < ib->nsegs && p.off >= ib->segs[p.seg].size) {
        p.seg++;
        p.off = 0;
    }
    unsigned char h[HEAD];
    if (!read_full(ib->segs[p.seg].fd, h, HEAD, p.off))
        return 0;
    return (int64_t)get_le(h + 24, 8);
}

int inbox_append(struct inbox *ib, const struct inbox_item *items, size_t n, char *err,
                 size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].len > ib->seg_bytes - HEAD) {
            gw_errf(err, errlen, "inbox: a body of %zu bytes is too large", items[i].len);
            return -1;
        }
        total += HEAD + items[i].len;
    }
    if (n == 0)
        return 0;
    struct segment *s = ib->nsegs ? &ib->segs[ib->nsegs - 1] : NULL;
    pthread_mutex_lock(&ib->mu);
    ib->wanted = true; /* the inbox is in use: have a spare filled */
    bool ready = ib->spare == SPARE_READY;
    if (ib->spare == SPARE_NONE)
        pthread_cond_signal(&ib->cv);
    pthread_mutex_unlock(&ib->mu);
    /* A new file when this one is full, or, for a growing one, as soon as
     * a filled one is ready. */
    if (s == NULL || (s->size > 0 && s->size + total > ib->seg_bytes) ||
        (!s->filled && ready && s->size > 0)) {
        char path[PATH_MAX], spare[PATH_MAX];
        seg_path(ib->dir, ib->next_seq, path, sizeof path);
        spare_path(ib->dir, spare, sizeof spare);
        bool filled = false;
        pthread_mutex_lock(&ib->mu);
        if (ib->spare == SPARE_READY && rename(spare, path) == 0) {
            ib->spare = SPARE_NONE;
            filled = true;
            pthread_cond_signal(&ib->cv);
        }
        pthread_mutex_unlock(&ib->mu);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || sync_dir(ib->dir) != 0 || add_segment(ib, ib->next_seq, fd, 0, filled) != 0) {
            gw_errf(err, errlen, "inbox %s: %s", path, strerror(errno));
            if (fd >= 0) {
                close(fd);
                unlink(path);
            }
            return -1;
        }
        s = &ib->segs[ib->nsegs - 1];
    }
    /* The iovs: the page's records before this write, the records, zeros
     * to the end of the page. */
    static const unsigned char zeros[PAGE];
    uint64_t pre = s->size % PAGE, start = s->size - pre, end = s->size + total;
    size_t pad = (size_t)((PAGE - end % PAGE) % PAGE), niov = 2 * n + 2;
    unsigned char(*heads)[HEAD] = malloc(n * HEAD);
    struct iovec *iov = malloc(niov * sizeof *iov);
    int rc = -1;
    if (heads == NULL || iov == NULL) {
        gw_errf(err, errlen, "inbox: out of memory");
        goto out;
    }
    iov[0] = (struct iovec){ib->tail, (size_t)pre};
    for (size_t i = 0; i < n; i++) {
        if (!make_head(heads[i], ib->next_seq + i, items[i].received_ms, items[i].body,
                       items[i].len)) {
            gw_errf(err, errlen, "inbox: cannot checksum a record");
            goto out;
        }
        iov[1 + 2 * i] = (struct iovec){heads[i], HEAD};
        iov[2 + 2 * i] = (struct iovec){(void *)items[i].body, items[i].len};
    }
    iov[niov - 1] = (struct iovec){(void *)zeros, pad};
    /* The new last page, for the next append (kept only once durable). */
    unsigned char page[PAGE];
    size_t want = (size_t)(end % PAGE);
    for (size_t i = niov - 1, got = 0; got < want; i--) {
        size_t take = i == niov - 1 ? 0 : iov[i].iov_len;
        if (take > want - got)
            take = want - got;
        memcpy(page + want - got - take, (const char *)iov[i].iov_base + iov[i].iov_len - take,
               take);
        got += take;
    }
    /* One write (in IOV_MAX pieces), then one sync: durable together. */
    uint64_t off = start;
    size_t at = 0;
    while (at < niov) {
        size_t cnt = niov - at > IOV_MAX ? IOV_MAX : niov - at;
        ssize_t w = pwritev(s->fd, iov + at, (int)cnt, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            gw_errf(err, errlen, "inbox write: %s", w < 0 ? strerror(errno) : "no progress");
            goto undo;
        }
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (at < niov && left >= iov[at].iov_len)
            left -= iov[at++].iov_len;
        if (left > 0) {
            iov[at].iov_base = (char *)iov[at].iov_base + left;
            iov[at].iov_len -= left;
        }
    }
    if (fdatasync(s->fd) != 0) {
        gw_errf(err, errlen, "inbox sync: %s", strerror(errno));
        goto undo;
    }
    memcpy(ib->tail, page, want);
    s->size = end;
    ib->next_seq += n;
    rc = 0;
    goto out;
undo:
    /* Nothing counts: the next append writes over whatever got written. */
out:
    free(heads);
    free(iov);
    return rc;
}

long inbox_read(struct inbox *ib, size_t max, int (*fn)(const struct inbox_rec *r, void *arg),
                void *arg, int *fn_rc, uint64_t *last)
{
    struct pos p = ib->rd;
    long got = 0;
    *fn_rc = 0;
    while ((size_t)got < max && p.seq < ib->next_seq) {
        if (p.off >= ib->segs[p.seg].size) {
            if (p.seg + 1 >= ib->nsegs)
                return -1; /* records counted but not found: a broken log */
            p.seg++;
            p.off = 0;
            continue;
        }
        const struct segment *sg = &ib->segs[p.seg];
        struct reader *rd = &ib->block;
        if (rd->first != sg->first || rd->fd != sg->fd) {
            rd->first = sg->first;
            rd->fd = sg->fd;
            rd->len = 0;
        }
        rd->end = sg->size;
        struct inbox_rec r = {p.seq, 0, NULL, 0};
        char *body;
        if (!read_rec(rd, p.off, p.seq, &body, &r.len, &r.received_ms))
            return -1;
        char after = body[r.len];
        body[r.len] = '\0';
        r.body = body;
        *fn_rc = fn(&r, arg);
        body[r.len] = after;
        if (*fn_rc != 0)
            return -1;
        p.off += HEAD + r.len;
        *last = p.seq++;
        got++;
    }
    ib->peek = p;
    return got;
}

void inbox_done(struct inbox *ib, uint64_t seq)
{
    if (seq <= ib->done_seq)
        return;
    if (ib->peek.seq == seq + 1)
        ib->rd = ib->peek;
    else
        seek_seq(ib, seq + 1, &ib->rd);
    ib->done_seq = seq;
    while (ib->nsegs > 1 && ib->rd.seg > 0)
        drop_first(ib);
}

int inbox_count(const char *dir, uint64_t done_seq, uint64_t *n)
{
    uint64_t *firsts;
    size_t k;
    *n = 0;
    if (list_segments(dir, &firsts, &k) != 0)
        return -1;
    if (k == 0)
        return 0;
    char path[PATH_MAX];
    seg_path(dir, firsts[k - 1], path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t after = firsts[k - 1];
    if (fd >= 0) {
        scan(fd, firsts[k - 1], UINT64_MAX, &after);
        close(fd);
    }
    free(firsts);
    *n = after - 1 > done_seq ? after - 1 - done_seq : 0;
    return fd < 0 ? -1 : 0;
}
