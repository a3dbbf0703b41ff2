/* Shared helpers for the unit tests: reading fixture files. */
#ifndef GW_TESTUTIL_H
#define GW_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Whole file as a new NUL-terminated buffer; aborts the test run if absent. */
static inline char *read_fixture(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", GW_FIXTURES, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "missing fixture %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        abort();
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* A fresh directory under /tmp for a test group (mkdtemp), and its removal. */
static inline int temp_dir_make(char *dir, size_t len, const char *tag)
{
    snprintf(dir, len, "/tmp/gw-test-%s-XXXXXX", tag);
    return mkdtemp(dir) ? 0 : -1;
}

static inline int temp_dir_remove(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

#endif
