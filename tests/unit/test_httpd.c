/* Unit tests: the webhook listener's request head and chunked body parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

#define MAX_HEAD 8192
#define MAX_BODY 1024

/* Parse text (copied: the parser writes into its buffer). */
static int parse(const char *text, struct httpd_req *r, char **keep)
{
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    memcpy(buf, text, n + 1);
    int rc = httpd_parse_head(buf, n, MAX_HEAD, MAX_BODY, r);
    if (keep != NULL)
        *keep = buf;
    else
        free(buf);
    return rc;
}

static void test_head_intuit_post(void **state)
{
    (void)state;
    struct httpd_req r;
    char *buf;
    const char *text = "POST /webhooks/quickbooks?x=1 HTTP/1.1\r\n"
                       "Host: gw.example\r\n"
                       "Content-Type: application/json\r\n"
                       "intuit-signature:   abc=  \r\n"
                       "Content-Length: 12\r\n"
                       "\r\n"
                       "{\"a\":\"body\"}";
    assert_int_equal(parse(text, &r, &buf), 1);
    assert_int_equal(r.method, HTTPD_POST);
    assert_int_equal(r.minor, 1);
    assert_string_equal(r.path, "/webhooks/quickbooks");
    assert_int_equal(r.nheaders, 4);
    /* Names match in any case; values lose their surrounding blanks. */
    assert_string_equal(httpd_header(&r, "INTUIT-SIGNATURE"), "abc=");
    assert_string_equal(httpd_header(&r, "content-type"), "application/json");
    assert_null(httpd_header(&r, "X-Missing"));
    assert_int_equal(r.content_length, 12);
    assert_false(r.chunked);
    assert_true(r.keep_alive);
    assert_int_equal(r.head_len, strlen(text) - 12);
    free(buf);
}

static void test_head_incomplete_leaves_buffer(void **state)
{
    (void)state;
    const char *text = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Le";
    char buf[64];
    strcpy(buf, text);
    struct httpd_req r;
    assert_int_equal(httpd_parse_head(buf, strlen(buf), MAX_HEAD, MAX_BODY, &r), 0);
    assert_string_equal(buf, text);
}

static void test_head_keep_alive_rules(void **state)
{
    (void)state;
    struct httpd_req r;
    assert_int_equal(parse("GET /healthz HTTP/1.0\r\n\r\n", &r, NULL), 1);
    assert_false(r.keep_alive);
    assert_int_equal(parse("GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r, NULL), 1);
    assert_true(r.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &r, NULL), 1);
    assert_false(r.keep_alive);
    /* Bare LF line ends, and a stray CRLF before the request line. */
    assert_int_equal(parse("\r\nHEAD /x HTTP/1.1\nExpect: 100-continue\n\n", &r, NULL), 1);
    assert_int_equal(r.method, HTTPD_HEAD);
    assert_true(r.expect_continue);
    assert_int_equal(parse("DELETE /x HTTP/1.1\r\n\r\n", &r, NULL), 1);
    assert_int_equal(r.method, HTTPD_OTHER);
}

static void test_head_refusals(void **state)
{
    (void)state;
    struct httpd_req r;
    static const struct {
        const char *text;
        int status;
    } cases[] = {
        {"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 413},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST /a HTTP/2.0\r\n\r\n", 505},
        {"POST /a HTTP/1.1 extra\r\n\r\n", 400},
        {"POST a HTTP/1.1\r\n\r\n", 400},
        {"PO(ST /a HTTP/1.1\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\n folded: x\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400},
        {"POST /a HTTP/1.1\r\nNoColon\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse(cases[i].text, &r, NULL);
        if (rc != cases[i].status)
            fail_msg("case %zu: got %d, want %d", i, rc, cases[i].status);
    }
    /* A head that does not end within max_head. */
    char big[MAX_HEAD + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(httpd_parse_head(big, sizeof big, MAX_HEAD, MAX_BODY, &r), 431);
    /* Too many fields. */
    char many[4096] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < HTTPD_MAX_HEADERS + 1; i++)
        strcat(many, "X: y\r\n");
    strcat(many, "\r\n");
    assert_int_equal(parse(many, &r, NULL), 431);
}

static void test_dechunk(void **state)
{
    (void)state;
    char buf[128];
    size_t blen, used;
    const char *enc = "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: t\r\n\r\nNEXT";
    strcpy(buf, enc);
    assert_int_equal(httpd_dechunk(buf, strlen(buf), MAX_BODY, &blen, &used), 1);
    assert_int_equal(blen, 12);
    assert_memory_equal(buf, "hello, world", 12);
    assert_int_equal(used, strlen(enc) - 4);

    /* Incomplete at every cut: "not yet", and the buffer untouched. */
    for (size_t cut = 0; cut < strlen(enc) - 4; cut++) {
        strcpy(buf, enc);
        assert_int_equal(httpd_dechunk(buf, cut, MAX_BODY, &blen, &used), 0);
        assert_string_equal(buf, enc);
    }
    strcpy(buf, "zz\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(httpd_dechunk(buf, strlen(buf), MAX_BODY, &blen, &used), 400);
    strcpy(buf, "5\r\nhelloXX0\r\n\r\n");
    assert_int_equal(httpd_dechunk(buf, strlen(buf), MAX_BODY, &blen, &used), 400);
    strcpy(buf, "401\r\n");
    assert_int_equal(httpd_dechunk(buf, strlen(buf), MAX_BODY, &blen, &used), 413);
    strcpy(buf, "ffffffffffffffffff\r\n");
    assert_int_equal(httpd_dechunk(buf, strlen(buf), MAX_BODY, &blen, &used), 413);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_intuit_post),
        cmocka_unit_test(test_head_incomplete_leaves_buffer),
        cmocka_unit_test(test_head_keep_alive_rules),
        cmocka_unit_test(test_head_refusals),
        cmocka_unit_test(test_dechunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
