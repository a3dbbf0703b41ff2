/*
 * inbox.h - the inbox: an append-only log of webhook bodies that were
 * verified, made durable and answered, but are not events yet.
 *
 * In a burst, a group commit of QuickBooks webhooks is one write and one
 * fdatasync here, instead of a store transaction (scattered page writes and
 * two syncs). The bodies become events later, oldest first, in store
 * transactions that also record how far the inbox is done ("done_seq" in the
 * store's meta), so each record becomes events exactly once, crash or not.
 *
 * Files: <dir>/<first seq, 16 hex digits>.log, each up to INBOX_SEGMENT
 * bytes. A record: magic "GWIB", body length, sequence number and receive
 * time, the first 8 bytes of a SHA-256 over all that and the body, then the
 * body. A record cut short by a crash (never answered) ends the log and is
 * cut off when it opens. Whole files of done records are removed.
 *
 * One thread (the commit thread) uses an open inbox; other processes only
 * count (inbox_count).
 */
#ifndef GW_INBOX_H
#define GW_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INBOX_SEGMENT (64u << 20)

struct inbox;

/* Open (creating dir) with records up to done_seq already events; files of
 * segment_bytes (0: INBOX_SEGMENT). */
int inbox_open(const char *dir, uint64_t done_seq, size_t segment_bytes, struct inbox **out,
               char *err, size_t errlen);
void inbox_close(struct inbox *ib);

/* Records not yet events. */
uint64_t inbox_pending(const struct inbox *ib);

/* When the oldest record not yet an event came in (0 when none). */
int64_t inbox_oldest_ms(struct inbox *ib);

struct inbox_item {
    int64_t received_ms;
    const void *body;
    size_t len;
};

/* Append items with one write and one fdatasync: durable when it returns 0.
 * On failure nothing of them counts (the file is cut back). */
int inbox_append(struct inbox *ib, const struct inbox_item *items, size_t n, char *err,
                 size_t errlen);

struct inbox_rec {
    uint64_t seq;
    int64_t received_ms;
    const char *body; /* valid during the callback only */
    size_t len;
};

/*
 * Call fn for up to max records after the done ones, oldest first, without
 * marking them done. Returns the number read (0: none), or -1 when the log
 * cannot be read or fn failed (*fn_rc then holds fn's result). *last is the
 * last record's seq.
 */
long inbox_read(struct inbox *ib, size_t max, int (*fn)(const struct inbox_rec *r, void *arg),
                void *arg, int *fn_rc, uint64_t *last);

/* Records up to seq are events now (committed): go past them, and remove
 * files that hold nothing else. */
void inbox_done(struct inbox *ib, uint64_t seq);

/* For another process: records after done_seq in the log at dir. */
int inbox_count(const char *dir, uint64_t done_seq, uint64_t *n);

/* The store meta key that holds done_seq. */
#define INBOX_DONE_KEY "inbox.done_seq"

#endif
