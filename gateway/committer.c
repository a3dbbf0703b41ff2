/*
 * committer.c - the commit thread and its hand-over to the loop.
 */
#include "committer.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct committer {
    struct store *st;
    long max_batch;
    struct event *done_ev;
    struct event *stage_ev; /* hands the staged jobs over, once per loop turn */
    struct commit_job *staged_head, *staged_tail;     /* loop thread: submitted this turn */
    long staged_n, staged_urgent;                     /* of them, and of those not lazy */
    bool staged_flush;                                /* committer_flush: at once, with them */
    struct commit_job *(*idle)(void *arg, bool busy); /* see committer_set_idle */
    void (*before)(void *arg, struct commit_job *head, unsigned n);
    void *before_arg;
    void *idle_arg;
    double idle_resume; /* after idle work failed, wait until then (commit thread) */
    double last_idle;   /* when idle work was last asked for (commit thread) */
    double idle_quiet;  /* seconds without jobs before idle work */
    double last_submit; /* when a job was last queued (under mu) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct commit_job *todo_head, *todo_tail; /* waiting for commit */
    long todo_n;                              /* jobs in todo */
    long todo_urgent;                         /* of which not lazy */
    bool todo_flush;                          /* committer_flush: commit them at once */
    double todo_since;                        /* when todo was last empty */
    double linger;                            /* how long lazy jobs wait (under mu) */
    struct commit_job *done_head, *done_tail; /* committed, waiting for done() */
    bool stop;
    bool failing; /* loop thread only */
};

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct group {
    struct commit_job *head;
};

static int apply_group(struct store_txn *t, void *arg)
{
    struct group *g = arg;
    for (struct commit_job *j = g->head; j; j = j->next) {
        if (j->logged)
            continue;
        int rc = j->apply(t, j);
        if (rc == 0 || rc == STORE_ENOTFOUND || rc == STORE_EFAIL)
            j->status = rc;
        else
            return rc;
    }
    return 0;
}

static void commit_group(struct committer *c, struct commit_job *head)
{
    unsigned n = 0;
    for (struct commit_job *j = head; j; j = j->next)
        n++;
    for (struct commit_job *j = head; j; j = j->next) {
        j->group_size = n; /* the before hook and apply see it */
        j->logged = false;
    }
    struct group g = {head};
    char err[GW_ERR_LEN];
    double t0 = mono_seconds();
    if (c->before != NULL)
        c->before(c->before_arg, head, n);
    bool txn = false;
    for (struct commit_job *j = head; j && !txn; j = j->next)
        txn = !j->logged;
    int rc = txn ? store_write(c->st, apply_group, &g, err, sizeof err) : 0;
    double dt = mono_seconds() - t0;
    if (rc != 0)
        log_error("commit of %u jobs failed: %s", n, err);
    for (struct commit_job *j = head; j; j = j->next) {
        if (rc != 0 && !j->logged)
            j->status = STORE_EFAIL;
        j->commit_seconds = dt;
        if (j->after != NULL)
            j->after(j);
    }
}

/* Hand committed jobs head..tail to the loop (mu held). */
static void hand_back(struct committer *c, struct commit_job *head, struct commit_job *tail)
{
    if (c->done_tail)
        c->done_tail->next = head;
    else
        c->done_head = head;
    c->done_tail = tail;
    event_active(c->done_ev, EV_READ, 0);
}

/* Ask for idle work and commit it on its own (mu held, released meanwhile).
 * true when there was some. */
static bool run_idle(struct committer *c, bool busy)
{
    double now = mono_seconds();
    if (c->idle == NULL || c->stop || now < c->idle_resume)
        return false;
    c->last_idle = now;
    pthread_mutex_unlock(&c->mu);
    struct commit_job *j = c->idle(c->idle_arg, busy);
    if (j != NULL) {
        j->next = NULL;
        commit_group(c, j);
        if (j->status != 0)
            c->idle_resume = mono_seconds() + 1.0; /* let a failing store be */
    }
    pthread_mutex_lock(&c->mu);
    if (j != NULL)
        hand_back(c, j, j);
    return j != NULL;
}

static void wait_for(struct committer *c, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
}

static void *committer_main(void *arg)
{
    struct committer *c = arg;
    pthread_setname_np(pthread_self(), "gw-commit");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->todo_head == NULL) {
            if (c->stop)
                break;
            if (c->idle == NULL) {
                pthread_cond_wait(&c->cv, &c->mu);
                continue;
            }
            /* Idle work waits for a quiet moment: requests that keep coming
             * closer together than that go first. */
            double quiet_left = c->idle_quiet - (mono_seconds() - c->last_submit);
            if (quiet_left > 0)
                wait_for(c, quiet_left);
            if (c->todo_head == NULL && !c->stop && !run_idle(c, false) && c->todo_head == NULL &&
                !c->stop)
                wait_for(c, 1.0);
            continue;
        }
        /* Lazy jobs wait a little for others to share their commit. */
        double linger = c->todo_since + c->linger - mono_seconds();
        if (c->todo_urgent == 0 && !c->todo_flush && c->todo_n < c->max_batch && linger > 0 &&
            !c->stop) {
            wait_for(c, linger);
            continue;
        }
        /* Never quiet: a little idle work every 10 ms all the same. */
        if (c->idle != NULL && mono_seconds() - c->last_idle >= 0.010)
            run_idle(c, true);
        struct commit_job *head = c->todo_head, *tail = head;
        long n = 1, urgent = !head->lazy;
        while (tail->next != NULL && n < c->max_batch) {
            tail = tail->next;
            n++;
            urgent += !tail->lazy;
        }
        c->todo_head = tail->next;
        c->todo_n -= n;
        c->todo_urgent -= urgent; /* what is left has waited since todo_since already */
        if (c->todo_head == NULL) {
            c->todo_tail = NULL;
            c->todo_flush = false;
        }
        tail->next = NULL;
        pthread_mutex_unlock(&c->mu);

        commit_group(c, head);

        pthread_mutex_lock(&c->mu);
        hand_back(c, head, tail);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void run_done(struct committer *c)
{
    pthread_mutex_lock(&c->mu);
    struct commit_job *j = c->done_head;
    c->done_head = c->done_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    unsigned left = 0;
    while (j != NULL) {
        struct commit_job *next = j->next;
        if (left == 0) {
            metrics_commit(j->group_size, j->commit_seconds);
            left = j->group_size;
        }
        left--;
        if (j->status == STORE_EFAIL && !c->failing) {
            c->failing = true;
            log_error("store cannot write: webhooks get 503 until it can");
        } else if (j->status == 0 && c->failing) {
            c->failing = false;
            log_info("store writes again");
        }
        j->done(j);
        j = next;
    }
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_done(arg);
}

/* Move the jobs submitted during this loop turn to the commit thread. */
static void hand_over(struct committer *c)
{
    struct commit_job *head = c->staged_head, *tail = c->staged_tail;
    if (head == NULL)
        return;
    long n = c->staged_n, urgent = c->staged_urgent;
    bool flush = c->staged_flush;
    c->staged_head = c->staged_tail = NULL;
    c->staged_n = c->staged_urgent = 0;
    c->staged_flush = false;
    pthread_mutex_lock(&c->mu);
    /* A commit thread lingering over lazy jobs wakes at its time anyway:
     * more lazy jobs join it without a wake-up (two context switches each,
     * for nothing). It is woken for the first jobs, which start its linger,
     * and for jobs that must not wait. */
    bool wake = c->todo_head == NULL || urgent > 0 || flush || c->todo_n + n >= c->max_batch;
    c->todo_flush = c->todo_flush || flush;
    c->last_submit = mono_seconds();
    if (c->todo_head == NULL)
        c->todo_since = c->last_submit;
    c->todo_n += n;
    c->todo_urgent += urgent;
    if (c->todo_tail)
        c->todo_tail->next = head;
    else
        c->todo_head = head;
    c->todo_tail = tail;
    if (wake)
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void on_stage(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_over(arg);
}

struct committer *committer_start(struct event_base *base, struct store *st, long max_batch)
{
    struct committer *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->st = st;
    c->max_batch = max_batch > 0 ? max_batch : 512;
    c->linger = COMMIT_LINGER_S;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->done_ev = event_new(base, -1, EV_PERSIST | EV_READ, on_done, c);
    c->stage_ev = event_new(base, -1, EV_PERSIST | EV_READ, on_stage, c);
    if (c->done_ev == NULL || c->stage_ev == NULL ||
        pthread_create(&c->thread, NULL, committer_main, c) != 0) {
        if (c->done_ev)
            event_free(c->done_ev);
        if (c->stage_ev)
            event_free(c->stage_ev);
        free(c);
        return NULL;
    }
    return c;
}

/*
 * Jobs are staged on the loop thread and handed over together once the loop
 * has run every callback that was ready with them (stage_ev, activated by the
 * first job of a turn, runs after those): the requests one read of the
 * sockets brought share a commit, and the hand-over takes one lock and one
 * wake-up instead of one per job.
 */
void committer_submit(struct committer *c, struct commit_job *job)
{
    job->next = NULL;
    job->status = 0;
    if (c->staged_tail) {
        c->staged_tail->next = job;
    } else {
        c->staged_head = job;
        event_active(c->stage_ev, EV_READ, 0);
    }
    c->staged_tail = job;
    c->staged_n++;
    c->staged_urgent += !job->lazy;
}

void committer_set_idle(struct committer *c, struct commit_job *(*idle)(void *arg, bool busy),
                        void *arg, double quiet_seconds)
{
    pthread_mutex_lock(&c->mu);
    c->idle = idle;
    c->idle_arg = arg;
    c->idle_quiet = quiet_seconds;
    pthread_mutex_unlock(&c->mu);
}

void committer_flush(struct committer *c)
{
    if (c->staged_head != NULL) {
        c->staged_flush = true; /* handed over with them at the end of the turn */
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->todo_head != NULL) {
        c->todo_flush = true;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

void committer_set_linger(struct committer *c, double seconds)
{
    pthread_mutex_lock(&c->mu);
    c->linger = seconds;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void committer_set_before(struct committer *c,
                          void (*before)(void *arg, struct commit_job *head, unsigned n), void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->before = before;
    c->before_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

void committer_stop(struct committer *c)
{
    if (c == NULL)
        return;
    hand_over(c);
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    run_done(c);
    event_free(c->done_ev);
    event_free(c->stage_ev);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}
