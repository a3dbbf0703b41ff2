/*
 * httpd.h - the webhook listener: a small HTTP/1.1 server on the event loop.
 *
 * It does the little a webhook sender needs, and does it with no copies and
 * no allocation per request: a request is parsed where it was read, handed to
 * the callback whole (head and body), and its reply is written straight to
 * the socket. Keep-alive, pipelining (one request at a time), chunked bodies,
 * "Expect: 100-continue", bounded head and body, a deadline per request and
 * an idle timeout per connection. The reply may come later than the callback
 * (after a commit): the request and its buffer stay put until then.
 */
#ifndef GW_HTTPD_H
#define GW_HTTPD_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

enum httpd_method { HTTPD_GET, HTTPD_HEAD, HTTPD_POST, HTTPD_OTHER };

#define HTTPD_MAX_HEADERS 64

struct httpd_header {
    const char *name, *value; /* NUL-terminated, in the request's buffer */
    size_t name_len, value_len;
};

struct httpd_req {
    enum httpd_method method;
    int minor;        /* HTTP/1.minor: 0 or 1 */
    const char *path; /* the request target without its query, NUL-terminated */
    const char *body; /* not NUL-terminated; "" when empty */
    size_t body_len;
    size_t nheaders;
    struct httpd_header headers[HTTPD_MAX_HEADERS];

    /* Framing, as parsed from the head. */
    size_t head_len;       /* bytes of the head, the empty line included */
    size_t content_length; /* when !chunked */
    bool chunked, keep_alive, expect_continue;

    void *conn; /* the connection it came on (httpd.c) */
};

/*
 * Parse a request head at the start of buf[0..len). Returns 0 when the head
 * is not complete yet (buf is left as it was), 1 when it is (r is filled and
 * the head's names, values and target are NUL-terminated in place), or the
 * HTTP status to refuse it with: 400 (malformed), 431 (head over max_head
 * bytes or too many fields), 413 (Content-Length over max_body), 501
 * (a transfer coding other than chunked), 505 (not HTTP/1.x).
 */
int httpd_parse_head(char *buf, size_t len, size_t max_head, size_t max_body, struct httpd_req *r);

/*
 * Decode a chunked body at the start of buf[0..len), in place. Returns 0 when
 * it is not complete yet (buf is left as it was), 1 when it is (*body_len
 * decoded bytes now start at buf; *used bytes of buf were the encoded body,
 * trailer included), 400 when it is malformed or 413 when it decodes to more
 * than max_body bytes.
 */
int httpd_dechunk(char *buf, size_t len, size_t max_body, size_t *body_len, size_t *used);

/* The value of the first header of that name (any case), or NULL. */
const char *httpd_header(const struct httpd_req *r, const char *name);

struct httpd;

/* Called with each complete request; reply with httpd_reply, now or later. */
typedef void (*httpd_cb)(struct httpd_req *r, void *arg);

struct httpd_limits {
    size_t max_head, max_body;
    int timeout_s; /* idle connection, slow request, slow reader */
};

/* Listen on host:port. NULL (and errno) when it cannot. */
struct httpd *httpd_new(struct event_base *base, const char *host, unsigned short port,
                        const struct httpd_limits *lim, httpd_cb cb, void *arg);

/*
 * Reply to r (once): status code and reason, a media type (NULL: no body
 * headers beyond Content-Length), extra header lines ("Name: value\r\n"...,
 * or NULL), and the body. After this r is gone.
 */
void httpd_reply(struct httpd_req *r, int code, const char *reason, const char *ctype,
                 const char *extra_headers, const void *body, size_t len);

/* The TCP peer's address, as text. */
void httpd_peer(const struct httpd_req *r, char *out, size_t outlen);

/* Stop accepting; close idle connections now, the others after their reply. */
void httpd_stop(struct httpd *h);

/* Replies being written out (to clients slower than the socket buffer). */
size_t httpd_writing(const struct httpd *h);

void httpd_free(struct httpd *h);

#endif
