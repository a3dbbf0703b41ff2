/* Unit tests: the inbox log (append, read in order, done, reopen, torn tail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inbox.h"
#include "util.h"
#include "testutil.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return temp_dir_make(dir, sizeof dir, "inbox");
}

static int teardown(void **state)
{
    (void)state;
    return temp_dir_remove(dir);
}
struct seen {
    char bodies[16][32];
    uint64_t seqs[16];
    int64_t received[16];
    size_t n;
    int fail_at; /* fail on this record (1-based); 0 never */
};

static int collect(const struct inbox_rec *r, void *arg)
{
    struct seen *s = arg;
    if (s->fail_at != 0 && (int)s->n + 1 == s->fail_at)
        return 7;
    assert_true(r->len < sizeof s->bodies[0] && s->n < 16);
    memcpy(s->bodies[s->n], r->body, r->len);
    s->bodies[s->n][r->len] = '\0';
    s->seqs[s->n] = r->seq;
    s->received[s->n++] = r->received_ms;
    return 0;
}

static void append(struct inbox *ib, const char *a, const char *b)
{
    char err[GW_ERR_LEN];
    struct inbox_item it[2] = {{1000, a, strlen(a)}, {2000, b, b ? strlen(b) : 0}};
    assert_int_equal(inbox_append(ib, it, b ? 2 : 1, err, sizeof err), 0);
}

static void test_append_read_done_reopen(void **state)
{
    (void)state;
    char err[GW_ERR_LEN], sub[300];
    snprintf(sub, sizeof sub, "%s/a", dir);
    struct inbox *ib, *other;
    assert_int_equal(inbox_open(sub, 0, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 0);
    /* One writer: a second daemon on the same store is refused. */
    assert_int_equal(inbox_open(sub, 0, &other, err, sizeof err), -1);
    assert_non_null(strstr(err, "another gateway is serving this store"));
    append(ib, "one", "");
    append(ib, "three", NULL);
    assert_int_equal(inbox_pending(ib), 3);
    assert_int_equal(inbox_oldest_ms(ib), 1000);

    /* Read without taking: the same records come again until done. */
    struct seen s = {0};
    int fn_rc;
    uint64_t last = 0;
    assert_int_equal(inbox_read(ib, 2, collect, &s, &fn_rc, &last), 2);
    assert_int_equal(last, 2);
    memset(&s, 0, sizeof s);
    s.fail_at = 2;
    assert_int_equal(inbox_read(ib, 10, collect, &s, &fn_rc, &last), -1);
    assert_int_equal(fn_rc, 7);
    memset(&s, 0, sizeof s);
    assert_int_equal(inbox_read(ib, 2, collect, &s, &fn_rc, &last), 2);
    assert_string_equal(s.bodies[0], "one");
    assert_string_equal(s.bodies[1], "");
    assert_int_equal(s.seqs[1], 2);
    assert_int_equal(s.received[1], 2000);
    inbox_done(ib, last);
    assert_int_equal(inbox_pending(ib), 1);

    /* Another process counts what is left. */
    uint64_t n;
    assert_int_equal(inbox_count(sub, 2, &n), 0);
    assert_int_equal(n, 1);
    inbox_close(ib);

    /* Reopened where the store says it is done: the rest, then new ones
     * numbered after it. */
    assert_int_equal(inbox_open(sub, 2, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 1);
    append(ib, "four", NULL);
    memset(&s, 0, sizeof s);
    assert_int_equal(inbox_read(ib, 10, collect, &s, &fn_rc, &last), 2);
    assert_string_equal(s.bodies[0], "three");
    assert_string_equal(s.bodies[1], "four");
    assert_int_equal(last, 4);
    inbox_done(ib, last);
    assert_int_equal(inbox_pending(ib), 0);
    assert_int_equal(inbox_oldest_ms(ib), 0);
    inbox_close(ib);
    assert_int_equal(inbox_count(sub, 4, &n), 0);
    assert_int_equal(n, 0);
}

/* The size of the only log file in sub, and its path. */
static off_t log_file(const char *sub, char *path, size_t len)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s'/*.log", sub);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(path, (int)len, p));
    pclose(p);
    path[strcspn(path, "\n")] = '\0';
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_torn_tail_ends_the_log(void **state)
{
    (void)state;
    char err[GW_ERR_LEN], sub[300], path[400];
    snprintf(sub, sizeof sub, "%s/torn", dir);
    struct inbox *ib;
    assert_int_equal(inbox_open(sub, 0, &ib, err, sizeof err), 0);
    append(ib, "kept", NULL);
    inbox_close(ib);
    off_t size = log_file(sub, path, sizeof path);

    /* A crash in the middle of the next write: half a record, and a whole
     * one whose body no longer matches its check. */
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x01\x02\x03GWIB\x05\0\0\0", 12), 12);
    close(fd);
    assert_int_equal(inbox_open(sub, 0, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 1);
    append(ib, "next", NULL); /* written over the torn bytes */
    struct seen s = {0};
    int fn_rc;
    uint64_t last;
    assert_int_equal(inbox_read(ib, 10, collect, &s, &fn_rc, &last), 2);
    assert_string_equal(s.bodies[0], "kept");
    assert_string_equal(s.bodies[1], "next");
    inbox_close(ib);

    /* A flipped byte in the last body: that record is not sound, so the log
     * ends before it. */
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, size + 32 + 1), 1);
    close(fd);
    assert_int_equal(inbox_open(sub, 0, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 1);
    inbox_close(ib);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_done_reopen),
        cmocka_unit_test(test_torn_tail_ends_the_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
