/* Unit tests: the commit thread - lazy jobs wait for company, and a job that
 * is not lazy is committed at once, taking the waiting ones along. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <string.h>

#include "committer.h"
#include "store.h"
#include "util.h"
#include "testutil.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return temp_dir_make(dir, sizeof dir, "committer");
}

static int teardown(void **state)
{
    (void)state;
    return temp_dir_remove(dir);
}

struct test_job {
    struct commit_job job; /* first */
    int applied, done;
    unsigned group; /* jobs in its commit */
};

static int job_apply(struct store_txn *t, struct commit_job *job)
{
    (void)t;
    ((struct test_job *)job)->applied++;
    return 0;
}

static void job_done(struct commit_job *job)
{
    struct test_job *j = (struct test_job *)job;
    j->done++;
    j->group = job->group_size;
}

/* Run the loop for about ms milliseconds. */
static void run_loop(struct event_base *base, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* A loop, a store named name in the test's directory, and a committer whose
 * lazy jobs linger long enough that they still wait when the loop looks. */
static struct committer *start_batch(struct event_base **base, struct store **st, const char *name,
                                     long max_batch)
{
    evthread_use_pthreads();
    *base = event_base_new();
    char path[300], err[GW_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (store_open(path, 8, 64, st, err, sizeof err) != 0)
        fail_msg("%s", err);
    struct committer *c = committer_start(*base, *st, max_batch);
    assert_non_null(c);
    committer_set_linger(c, 30.0);
    return c;
}

static struct committer *start(struct event_base **base, struct store **st, const char *name)
{
    return start_batch(base, st, name, 512);
}

static void test_lazy_jobs_wait_and_urgent_takes_them_along(void **state)
{
    (void)state;
    struct event_base *base;
    struct store *st;
    struct committer *c = start(&base, &st, "store");

    struct test_job lazy[2] = {{.job = {.apply = job_apply, .done = job_done, .lazy = true}},
                               {.job = {.apply = job_apply, .done = job_done, .lazy = true}}};
    committer_submit(c, &lazy[0].job);
    run_loop(base, 100);
    committer_submit(c, &lazy[1].job);
    run_loop(base, 200);
    assert_int_equal(lazy[0].done + lazy[1].done, 0); /* waiting for company */
    assert_int_equal(lazy[0].applied + lazy[1].applied, 0);

    struct test_job urgent = {.job = {.apply = job_apply, .done = job_done}};
    committer_submit(c, &urgent.job);
    for (int i = 0; i < 100 && urgent.done == 0; i++)
        run_loop(base, 50);
    assert_int_equal(urgent.done, 1);
    /* One commit for all three, the lazy ones first, as submitted. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lazy[i].done, 1);
        assert_int_equal(lazy[i].applied, 1);
        assert_int_equal(lazy[i].group, 3);
    }
    assert_int_equal(urgent.group, 3);

    /* With the default wait, a lazy job alone is committed on its own. */
    committer_set_linger(c, COMMIT_LINGER_S);
    struct test_job alone = {.job = {.apply = job_apply, .done = job_done, .lazy = true}};
    committer_submit(c, &alone.job);
    for (int i = 0; i < 100 && alone.done == 0; i++)
        run_loop(base, 50);
    assert_int_equal(alone.done, 1);
    assert_int_equal(alone.group, 1);

    committer_stop(c);
    store_close(st);
    event_base_free(base);
}

/* A flush commits what waits, and what the same loop turn submits, without
 * waiting for more company. */
static void test_flush_commits_waiting_jobs_at_once(void **state)
{
    (void)state;
    struct event_base *base;
    struct store *st;
    struct committer *c = start(&base, &st, "store-flush");

    /* Handed over already: the flush reaches the commit thread. */
    struct test_job early = {.job = {.apply = job_apply, .done = job_done, .lazy = true}};
    committer_submit(c, &early.job);
    run_loop(base, 100);
    assert_int_equal(early.done, 0); /* waiting for company */
    committer_flush(c);
    for (int i = 0; i < 100 && early.done == 0; i++)
        run_loop(base, 50);
    assert_int_equal(early.done, 1);
    assert_int_equal(early.group, 1);

    /* Submitted in this turn: the flush goes with them. */
    struct test_job turn[2] = {{.job = {.apply = job_apply, .done = job_done, .lazy = true}},
                               {.job = {.apply = job_apply, .done = job_done, .lazy = true}}};
    committer_submit(c, &turn[0].job);
    committer_flush(c);
    committer_submit(c, &turn[1].job);
    for (int i = 0; i < 100 && turn[1].done == 0; i++)
        run_loop(base, 50);
    assert_int_equal(turn[0].done + turn[1].done, 2);
    assert_int_equal(turn[0].group, 2);

    /* Nothing queued: a flush changes nothing for a later job. */
    committer_flush(c);
    struct test_job later = {.job = {.apply = job_apply, .done = job_done, .lazy = true}};
    committer_submit(c, &later.job);
    run_loop(base, 200);
    assert_int_equal(later.done, 0);

    committer_stop(c); /* finishes what is queued */
    assert_int_equal(later.done, 1);
    store_close(st);
    event_base_free(base);
}

/* Lazy jobs that join a waiting one do not wake the commit thread, but a
 * full batch does: it is committed at once, not at the end of the wait. */
static void test_full_batch_goes_at_once(void **state)
{
    (void)state;
    struct event_base *base;
    struct store *st;
    struct committer *c = start_batch(&base, &st, "store-batch", 3);
    struct test_job j[3];
    for (int i = 0; i < 3; i++) {
        j[i] = (struct test_job){.job = {.apply = job_apply, .done = job_done, .lazy = true}};
        committer_submit(c, &j[i].job);
        run_loop(base, 100); /* each in a loop turn of its own */
        if (i < 2)
            assert_int_equal(j[0].done, 0); /* waiting for company */
    }
    for (int i = 0; i < 100 && j[2].done == 0; i++)
        run_loop(base, 50);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(j[i].done, 1);
        assert_int_equal(j[i].group, 3);
    }
    committer_stop(c);
    store_close(st);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lazy_jobs_wait_and_urgent_takes_them_along),
        cmocka_unit_test(test_flush_commits_waiting_jobs_at_once),
        cmocka_unit_test(test_full_batch_goes_at_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
