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
    assert_int_equal(inbox_open(sub, 0, 0, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 0);
    /* One writer: a second daemon on the same store is refused. */
    assert_int_equal(inbox_open(sub, 0, 0, &other, err, sizeof err), -1);
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
    assert_int_equal(inbox_open(sub, 2, 0, &ib, err, sizeof err), 0);
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
    assert_int_equal(inbox_open(sub, 0, 0, &ib, err, sizeof err), 0);
    append(ib, "kept", NULL);
    inbox_close(ib);
    /* Appends write whole pages: the file is one page of zeros after the
     * record (a 32-byte head and the body). */
    assert_int_equal(log_file(sub, path, sizeof path), 4096);
    off_t size = 32 + 4;

    /* A crash in the middle of the next write: half a record, and a whole
     * one whose body no longer matches its check. */
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\x01\x02\x03GWIB\x05\0\0\0", 12, size), 12);
    close(fd);
    assert_int_equal(inbox_open(sub, 0, 0, &ib, err, sizeof err), 0);
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
    assert_int_equal(inbox_open(sub, 0, 0, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), 1);
    inbox_close(ib);
}

/* Body i of the page test: its length and bytes follow from i. */
static size_t page_body(unsigned i, char *buf)
{
    size_t len = (i * 997u) % 3000u;
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (i + k) % 26);
    return len;
}

struct page_check {
    unsigned next;                         /* index of the body expected next */
    size_t (*body)(unsigned i, char *buf); /* body i */
};

/* A body of the interleaved test: every fifth is larger than the block the
 * inbox reads at a time; the rest as in the page test. */
static size_t mixed_body(unsigned i, char *buf)
{
    if (i % 5 != 4)
        return page_body(i, buf);
    size_t len = 70000u + i;
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('A' + (i + k) % 26);
    return len;
}

/* Each record is the next body whole, NUL-terminated. */
static int check_page_body(const struct inbox_rec *r, void *arg)
{
    struct page_check *c = arg;
    static char want[80000];
    size_t len = c->body(c->next++, want);
    assert_int_equal(r->len, len);
    assert_memory_equal(r->body, want, len);
    assert_int_equal(r->body[r->len], '\0');
    return 0;
}

/* Append n bodies (body's), numbered from *total on. */
static void append_bodies(struct inbox *ib, unsigned *total, size_t n,
                          size_t (*body)(unsigned i, char *buf))
{
    static char bodies[5][80000];
    struct inbox_item it[5];
    char err[GW_ERR_LEN];
    assert_true(n <= 5);
    for (size_t i = 0; i < n; i++)
        it[i] = (struct inbox_item){*total + i, bodies[i], body(*total + (unsigned)i, bodies[i])};
    assert_int_equal(inbox_append(ib, it, n, err, sizeof err), 0);
    *total += (unsigned)n;
}

/* Appends of many sizes, one to five at a time, ending anywhere in a page,
 * with reopens between: every record reads back whole and in order (the
 * page kept in memory and the page read back on open are right). */
static void test_appends_across_pages(void **state)
{
    (void)state;
    char err[GW_ERR_LEN], sub[300];
    snprintf(sub, sizeof sub, "%s/pages", dir);
    struct inbox *ib;
    unsigned total = 0;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(inbox_open(sub, 0, 1u << 20, &ib, err, sizeof err), 0);
        for (int k = 0; k < 40; k++)
            append_bodies(ib, &total, 1 + (size_t)k % 5, page_body);
        inbox_close(ib);
    }
    assert_int_equal(inbox_open(sub, 0, 1u << 20, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), total);
    struct page_check c = {0, page_body};
    int fn_rc;
    uint64_t last;
    assert_int_equal(inbox_read(ib, total + 10, check_page_body, &c, &fn_rc, &last), total);
    assert_int_equal(c.next, total);
    inbox_close(ib);
}

/* Reads between appends to the same file, without a reopen: records
 * appended after a block was read, and records larger than a block, read
 * back whole, NUL-terminated, and in order. */
static void test_reads_between_appends(void **state)
{
    (void)state;
    char err[GW_ERR_LEN], sub[300];
    snprintf(sub, sizeof sub, "%s/mixed", dir);
    struct inbox *ib;
    assert_int_equal(inbox_open(sub, 0, 4u << 20, &ib, err, sizeof err), 0);
    struct page_check c = {0, mixed_body};
    unsigned total = 0;
    int fn_rc;
    uint64_t last;
    for (int k = 0; k < 30; k++) {
        append_bodies(ib, &total, 1 + (size_t)k % 3, mixed_body);
        /* Read part of what is there, sometimes all of it, and go on. */
        long want = (long)(total - c.next) - (k % 2);
        if (want > 0) {
            assert_int_equal(inbox_read(ib, (size_t)want, check_page_body, &c, &fn_rc, &last),
                             want);
            inbox_done(ib, last);
        }
    }
    long rest = (long)(total - c.next);
    assert_true(rest > 0);
    assert_int_equal(inbox_read(ib, total, check_page_body, &c, &fn_rc, &last), rest);
    assert_int_equal(c.next, total);
    assert_int_equal(last, total);
    inbox_close(ib);
}

/* Files in sub matching a shell pattern. */
static int count_files(const char *sub, const char *pattern)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s'/%s 2>/dev/null | wc -l", sub, pattern);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

struct tally {
    uint64_t next; /* seq expected next */
    int bad;
};

static int check_order(const struct inbox_rec *r, void *arg)
{
    struct tally *t = arg;
    char want[64];
    snprintf(want, sizeof want, "body-%llu-%s", (unsigned long long)r->seq,
             "padding-padding-padding-padding");
    if (r->seq != t->next || r->len != strlen(want) || memcmp(r->body, want, r->len) != 0)
        t->bad++;
    t->next++;
    return 0;
}

static void append_n(struct inbox *ib, uint64_t first, int n)
{
    char err[GW_ERR_LEN];
    char bodies[8][64];
    struct inbox_item it[8];
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        snprintf(bodies[i], sizeof bodies[i], "body-%llu-%s", (unsigned long long)(first + i),
                 "padding-padding-padding-padding");
        it[i] = (struct inbox_item){(int64_t)(first + i), bodies[i], strlen(bodies[i])};
    }
    assert_int_equal(inbox_append(ib, it, (size_t)n, err, sizeof err), 0);
}

/* Files of one page: many rotations, the spare taken, done files given
 * back, and reading across files, before and after a reopen. */
static void test_rotation_and_reuse(void **state)
{
    (void)state;
    char err[GW_ERR_LEN], sub[300];
    snprintf(sub, sizeof sub, "%s/rot", dir);
    struct inbox *ib;
    assert_int_equal(inbox_open(sub, 0, 4096, &ib, err, sizeof err), 0);
    uint64_t seq = 1;
    /* About 80 bytes a record: 50 a file. Slowly enough for the filler to
     * have spares ready part of the time, and quickly for the rest. */
    for (int round = 0; round < 40; round++) {
        append_n(ib, seq, 8);
        seq += 8;
        if (round % 4 == 0)
            usleep(20000);
    }
    assert_int_equal(inbox_pending(ib), seq - 1);
    assert_true(count_files(sub, "*.log") >= 6);

    /* Everything, in order, across the files; then half of it done. */
    struct tally t = {1, 0};
    int fn_rc;
    uint64_t last = 0;
    assert_int_equal(inbox_read(ib, 1000, check_order, &t, &fn_rc, &last), (long)(seq - 1));
    assert_int_equal(t.bad, 0);
    assert_int_equal(last, seq - 1);
    t = (struct tally){1, 0};
    assert_int_equal(inbox_read(ib, 160, check_order, &t, &fn_rc, &last), 160);
    int before = count_files(sub, "*.log");
    inbox_done(ib, last);
    assert_int_equal(inbox_pending(ib), seq - 1 - 160);
    assert_true(count_files(sub, "*.log") < before);
    assert_int_equal(count_files(sub, "spare.tmp"), 1);
    uint64_t n;
    assert_int_equal(inbox_count(sub, 160, &n), 0);
    assert_int_equal(n, seq - 1 - 160);

    /* More appends go into reused files; old records in them end nothing
     * early and are never read as new ones. */
    for (int round = 0; round < 20; round++) {
        append_n(ib, seq, 8);
        seq += 8;
    }
    /* Read in this same open too: no block of a file given back is read
     * for the file that reuses it. */
    t = (struct tally){161, 0};
    assert_int_equal(inbox_read(ib, 10000, check_order, &t, &fn_rc, &last), (long)(seq - 1 - 160));
    assert_int_equal(t.bad, 0);
    inbox_close(ib);
    assert_int_equal(inbox_open(sub, 160, 4096, &ib, err, sizeof err), 0);
    assert_int_equal(inbox_pending(ib), seq - 1 - 160);
    t = (struct tally){161, 0};
    assert_int_equal(inbox_read(ib, 10000, check_order, &t, &fn_rc, &last), (long)(seq - 1 - 160));
    assert_int_equal(t.bad, 0);
    inbox_done(ib, last);
    assert_int_equal(inbox_pending(ib), 0);
    assert_int_equal(count_files(sub, "*.log"), 1);
    inbox_close(ib);
    assert_int_equal(inbox_count(sub, seq - 1, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_done_reopen),
        cmocka_unit_test(test_torn_tail_ends_the_log),
        cmocka_unit_test(test_appends_across_pages),
        cmocka_unit_test(test_reads_between_appends),
        cmocka_unit_test(test_rotation_and_reuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
