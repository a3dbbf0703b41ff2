/*
 * committer.h - group commit. Work that must be durable before the loop goes
 * on (a webhook's events, an event's change of state) is queued as jobs; one
 * thread applies every job queued since its last commit in one write
 * transaction, commits it with a full sync, and hands the jobs back to the
 * loop thread, which calls their done callbacks in submission order. So the
 * disk's fsync rate bounds commits, not requests, and the loop never waits
 * for a disk.
 */
#ifndef GW_COMMITTER_H
#define GW_COMMITTER_H

#include "store.h"

#include <event2/event.h>

struct commit_job;

/*
 * apply runs on the commit thread inside the shared transaction, possibly
 * more than once (when the map grew): it must start from scratch each time.
 * It returns 0, STORE_ENOTFOUND or STORE_EFAIL for a failure of this job alone
 * (kept in job->status; the others still commit), or an LMDB error that
 * aborts the whole group (every job then gets status STORE_EFAIL).
 * done runs on the loop thread after the commit; the job belongs to it.
 */
struct commit_job {
    struct commit_job *next;
    int (*apply)(struct store_txn *t, struct commit_job *job);
    void (*done)(struct commit_job *job);
    int status; /* 0 committed, else STORE_E* */
    /* Set by the before hook: the job was made durable another way (status
     * says how that went); apply is not called. */
    bool logged;
    /* Optional, on the commit thread once the group's commit is done (status
     * says how); before done. */
    void (*after)(struct commit_job *job);
    double commit_seconds;
    unsigned group_size; /* jobs that shared the transaction */
    /* Set by the submitter: nobody waits on this job but the loop's own
     * work (an event's claim or outcome, a polled page), so it may wait up
     * to COMMIT_LINGER_S for others to share its commit. A job without it
     * (a webhook's, an operator's) is committed at once, with every lazy
     * job queued before it. */
    bool lazy;
};

/* How long a lazy job may wait for company: a busy flow's events, finishing
 * one by one, share a commit forty or fifty at a time instead of two or
 * three. A commit costs about 0.6 ms of CPU whatever it holds (two syncs,
 * the trees' branch pages, the free list); at 25 ms, commits took a quarter of
 * a catalogue's CPU. The wait costs an event at most this long on its way
 * through a call that takes longer (QuickBooks allows 8 requests a second),
 * and nothing when the loop has nothing to do but wait for the store: then
 * it says so (committer_flush). */
#define COMMIT_LINGER_S 0.1

struct committer;

struct committer *committer_start(struct event_base *base, struct store *st, long max_batch);
/* Queue a job (loop thread). */
void committer_submit(struct committer *c, struct commit_job *job);

/*
 * Called on the commit thread with each group (n jobs, head first) before
 * its transaction: it may make some jobs durable itself and mark them
 * logged. A group of logged jobs only needs no transaction.
 */
void committer_set_before(struct committer *c,
                          void (*before)(void *arg, struct commit_job *head, unsigned n),
                          void *arg);

/*
 * Work for the commit thread when it has time: idle (called on the commit
 * thread, between groups) returns a job to commit on its own, or NULL when
 * there is nothing to do. It is asked after quiet_seconds without jobs
 * (busy false), and, while jobs never stop coming, every 10 ms (busy true:
 * take a little, or nothing). Its done callback runs on the loop as usual.
 */
void committer_set_idle(struct committer *c, struct commit_job *(*idle)(void *arg, bool busy),
                        void *arg, double quiet_seconds);
/* Commit what is queued (and what this loop turn submitted) without waiting
 * for more company: the loop has nothing else to do until it is stored
 * (loop thread). */
void committer_flush(struct committer *c);
/* How long lazy jobs wait for company (COMMIT_LINGER_S unless set). */
void committer_set_linger(struct committer *c, double seconds);
/* Finish what is queued, call its done callbacks, stop the thread. */
void committer_stop(struct committer *c);

#endif
