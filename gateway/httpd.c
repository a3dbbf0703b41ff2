/*
 * httpd.c - the webhook listener's HTTP/1.1 server (see httpd.h).
 *
 * A connection reads into one buffer. Once a whole request is in it (head and
 * body, a chunked body decoded in place), the callback gets pointers into that
 * buffer; the connection then reads no further than the buffer's free space
 * until the reply is written, so the request never moves. The reply is one
 * writev; only a client that does not read makes us keep a copy of its rest.
 * What follows a request in the buffer (a pipelined request) is handled after
 * the reply. Errors in the framing are answered and the connection is closed,
 * lingering to read what the client still sends so it sees the answer.
 */
#include "httpd.h"
#include "log.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- parsing -------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Whether p .. end is a token: one or more tchars (the method, a field name). */
static bool is_token(const char *p, const char *end)
{
    if (p == end)
        return false;
    for (; p < end; p++)
        if (!is_tchar((unsigned char)*p))
            return false;
    return true;
}

/* The end of the line starting at p (its '\n'), or NULL. */
static char *line_end(char *p, char *end)
{
    return memchr(p, '\n', (size_t)(end - p));
}

/* Whether header h is named lit (a string literal), in any letter case. */
#define name_is(h, lit) ((h)->name_len == sizeof(lit) - 1 && strcasecmp((h)->name, lit) == 0)

/* Whether the comma-separated list value holds token (any case). */
static bool list_has(const char *value, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t t = len;
        while (t > 0 && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t == n && strncasecmp(p, token, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static bool parse_size(const char *s, size_t *out)
{
    if (*s == '\0')
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = (size_t)v;
    return true;
}

int httpd_parse_head(char *buf, size_t len, size_t max_head, size_t max_body, struct httpd_req *r)
{
    /* Find the empty line that ends the head before changing anything. */
    char *end = buf + (len < max_head ? len : max_head);
    char *p = buf, *nl;
    while (p < end && (*p == '\r' || *p == '\n')) /* stray CRLF between requests */
        p++;
    char *start = p;
    for (;;) {
        nl = line_end(p, end);
        if (nl == NULL)
            return len >= max_head ? 431 : 0;
        if (nl == p || (nl == p + 1 && *p == '\r'))
            break;
        p = nl + 1;
    }
    char *head_end = nl + 1;

    memset(r, 0, sizeof *r);
    r->head_len = (size_t)(head_end - buf);
    r->body = "";

    /* Request line: method SP target SP HTTP/1.x */
    nl = line_end(start, head_end);
    char *le = (nl > start && nl[-1] == '\r') ? nl - 1 : nl;
    char *sp1 = memchr(start, ' ', (size_t)(le - start));
    if (sp1 == NULL || !is_token(start, sp1))
        return 400;
    char *target = sp1 + 1;
    char *sp2 = memchr(target, ' ', (size_t)(le - target));
    if (sp2 == NULL || sp2 == target)
        return 400;
    for (char *q = target; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return 400;
    if (*target != '/')
        return 400;
    char *ver = sp2 + 1;
    if (le - ver != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' ||
        ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
        return 400;
    if (ver[5] != '1')
        return 505;
    r->minor = ver[7] == '0' ? 0 : 1;
    size_t mlen = (size_t)(sp1 - start);
    r->method = mlen == 4 && memcmp(start, "POST", 4) == 0   ? HTTPD_POST
                : mlen == 3 && memcmp(start, "GET", 3) == 0  ? HTTPD_GET
                : mlen == 4 && memcmp(start, "HEAD", 4) == 0 ? HTTPD_HEAD
                                                             : HTTPD_OTHER;

    /* Fields: name ":" OWS value OWS; no folding, no CTLs. */
    size_t n = 0;
    for (p = nl + 1; p < head_end;) {
        nl = line_end(p, head_end);
        le = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
        if (le == p)
            break;
        char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL || !is_token(p, colon))
            return 400;
        char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return 400;
        if (n == HTTPD_MAX_HEADERS)
            return 431;
        r->headers[n++] = (struct httpd_header){p, v, (size_t)(colon - p), (size_t)(ve - v)};
        p = nl + 1;
    }
    r->nheaders = n;

    /* Everything checked: terminate the strings in place. */
    *sp1 = '\0';
    *sp2 = '\0';
    target[strcspn(target, "?#")] = '\0';
    r->path = target;
    for (size_t i = 0; i < n; i++) {
        ((char *)r->headers[i].name)[r->headers[i].name_len] = '\0';
        ((char *)r->headers[i].value)[r->headers[i].value_len] = '\0';
    }

    /* Framing (names compared by length first: most differ there). */
    const char *conn = NULL, *te = NULL, *expect = NULL;
    bool have_cl = false;
    for (size_t i = 0; i < n; i++) {
        const struct httpd_header *h = &r->headers[i];
        if (name_is(h, "Content-Length")) {
            size_t cl;
            if (!parse_size(h->value, &cl) || (have_cl && cl != r->content_length))
                return 400;
            have_cl = true;
            r->content_length = cl;
        } else if (name_is(h, "Transfer-Encoding")) {
            if (te != NULL)
                return 501;
            te = h->value;
        } else if (name_is(h, "Connection")) {
            conn = h->value;
        } else if (name_is(h, "Expect")) {
            expect = h->value;
        }
    }
    if (te != NULL) {
        /* A length next to a coding is how requests get smuggled. */
        if (have_cl || r->minor == 0)
            return 400;
        if (strcasecmp(te, "chunked") != 0)
            return 501;
        r->chunked = true;
    } else if (r->content_length > max_body) {
        return 413;
    }
    if (r->minor == 1)
        r->keep_alive = conn == NULL || !list_has(conn, "close");
    else
        r->keep_alive = conn != NULL && list_has(conn, "keep-alive");
    r->expect_continue = r->minor == 1 && expect != NULL && strcasecmp(expect, "100-continue") == 0;
    return 1;
}

/* One pass over a chunked body: measure it (copy false) or decode it. */
static int dechunk_pass(char *buf, size_t len, size_t max_body, bool copy, size_t *body_len,
                        size_t *used)
{
    size_t in = 0, out = 0;
    for (;;) {
        /* chunk-size [; ext] CRLF */
        char *nl = memchr(buf + in, '\n', len - in);
        if (nl == NULL)
            return len - in > 1024 ? 400 : 0;
        size_t size = 0, digits = 0;
        char *q = buf + in;
        for (; q < nl; q++, digits++) {
            int d = (*q >= '0' && *q <= '9')   ? *q - '0'
                    : (*q >= 'a' && *q <= 'f') ? *q - 'a' + 10
                    : (*q >= 'A' && *q <= 'F') ? *q - 'A' + 10
                                               : -1;
            if (d < 0)
                break;
            if (size > (SIZE_MAX >> 4))
                return 413;
            size = (size << 4) | (size_t)d;
        }
        if (digits == 0 || (q < nl && *q != ';' && *q != '\r' && *q != ' ' && *q != '\t'))
            return 400;
        in = (size_t)(nl - buf) + 1;
        if (size == 0)
            break;
        if (size > max_body || out + size > max_body)
            return 413;
        /* chunk-data CRLF */
        if (len - in < size + 1)
            return 0;
        if (copy)
            memmove(buf + out, buf + in, size);
        out += size;
        in += size;
        if (buf[in] == '\r') {
            if (len - in < 2)
                return 0;
            in++;
        }
        if (buf[in] != '\n')
            return 400;
        in++;
    }
    /* trailer fields, then the empty line */
    for (;;) {
        char *nl = memchr(buf + in, '\n', len - in);
        if (nl == NULL)
            return len - in > 8192 ? 400 : 0;
        size_t line = (size_t)(nl - (buf + in));
        in = (size_t)(nl - buf) + 1;
        if (line == 0 || (line == 1 && nl[-1] == '\r'))
            break;
    }
    *body_len = out;
    *used = in;
    return 1;
}

int httpd_dechunk(char *buf, size_t len, size_t max_body, size_t *body_len, size_t *used)
{
    int rc = dechunk_pass(buf, len, max_body, false, body_len, used);
    if (rc != 1)
        return rc;
    return dechunk_pass(buf, len, max_body, true, body_len, used);
}

const char *httpd_header(const struct httpd_req *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == n && strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* ---- connections ----------------------------------------------------------- */

enum conn_state {
    C_READ,   /* waiting for (the rest of) a request */
    C_HANDLE, /* the callback has it; waiting for the reply */
    C_WRITE,  /* the reply is partly written */
    C_LINGER, /* answered and closing: reading what the client still sends */
};

struct hconn {
    struct httpd *h;
    struct hconn *prev, *next;
    int fd;
    struct event *ev;
    short watching; /* EV_READ, EV_WRITE or 0 */
    enum conn_state state;
    struct sockaddr_storage peer;
    char *buf;
    size_t cap, len;
    bool head_done;     /* req holds the parsed head of the request at buf */
    bool continue_sent; /* "100 Continue" written for it */
    bool eof;           /* the client closed its side */
    bool close_after;   /* close once the reply is out */
    bool in_cb;         /* inside the callback: a reply only marks it done */
    bool replied_in_cb; /* the callback replied before returning */
    bool gone;          /* failed inside the callback: freed when it returns */
    size_t req_bytes;   /* bytes of buf the current request takes */
    int64_t started_ms; /* first byte of the current request */
    char *out;          /* unwritten rest of a reply */
    size_t out_len, out_off;
    struct httpd_req req;
};

struct httpd {
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *pause; /* re-enables the listener after an accept error */
    struct httpd_limits lim;
    const struct timeval *idle_tv; /* a common timeout: O(1) to re-arm */
    httpd_cb cb;
    void *cb_arg;
    struct hconn *conns;
    size_t writing;
    bool stopped;
    time_t date_at;
    char date[40];
};

#define INITIAL_BUF 4096
#define KEEP_BUF    16384 /* a buffer grown past this is let go after its request */
#define LINGER_MS   2000  /* reading off what a refused client still sends, at most */

static int64_t loop_ms(struct httpd *h)
{
    struct timeval tv;
    event_base_gettimeofday_cached(h->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static const char *http_date(struct httpd *h)
{
    struct timeval tv;
    event_base_gettimeofday_cached(h->base, &tv);
    if (tv.tv_sec != h->date_at) {
        struct tm tm;
        time_t t = tv.tv_sec;
        gmtime_r(&t, &tm);
        strftime(h->date, sizeof h->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        h->date_at = tv.tv_sec;
    }
    return h->date;
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg);

static void watch(struct hconn *c, short what)
{
    if (c->watching == what)
        return;
    event_del(c->ev);
    c->watching = what;
    if (what == 0)
        return;
    event_assign(c->ev, c->h->base, c->fd, (short)(what | EV_PERSIST), on_conn_event, c);
    event_add(c->ev, c->h->idle_tv);
}

static void conn_free(struct hconn *c)
{
    struct httpd *h = c->h;
    if (c->state == C_WRITE)
        h->writing--;
    event_free(c->ev);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->buf);
    free(c->out);
    free(c);
}

/* The connection failed: free it, or have the callback's caller free it. */
static void conn_gone(struct hconn *c)
{
    if (c->in_cb)
        c->gone = true;
    else
        conn_free(c);
}

/* Close now, or, when the client may still be sending, after reading it off. */
static void conn_close(struct hconn *c, bool linger)
{
    if (!linger || c->eof) {
        conn_free(c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    if (c->state == C_WRITE)
        c->h->writing--;
    c->state = C_LINGER;
    c->started_ms = loop_ms(c->h);
    watch(c, EV_READ);
}

static void process(struct hconn *c);

/* The reply is out: close when the connection ends with it (false: it is
 * gone or closing), else drop the request from the buffer and read on. */
static bool next_request(struct hconn *c)
{
    if (c->close_after || c->h->stopped) {
        conn_close(c, c->close_after);
        return false;
    }
    c->len -= c->req_bytes;
    memmove(c->buf, c->buf + c->req_bytes, c->len);
    c->req_bytes = 0;
    c->head_done = false;
    c->continue_sent = false;
    c->started_ms = 0;
    c->state = C_READ;
    if (c->cap > KEEP_BUF && c->len < INITIAL_BUF) {
        char *small = malloc(INITIAL_BUF);
        if (small != NULL) {
            memcpy(small, c->buf, c->len);
            free(c->buf);
            c->buf = small;
            c->cap = INITIAL_BUF;
        }
    }
    return true;
}

/* The reply went out after the callback returned: go on from here (process
 * also closes a connection the client ended). */
static void request_done(struct hconn *c)
{
    if (!next_request(c))
        return;
    watch(c, EV_READ);
    process(c);
}

/* Write iov; keep what the socket did not take. false when the
 * connection failed (and is gone). */
static bool send_iov(struct hconn *c, struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    ssize_t n;
    do
        n = writev(c->fd, iov, iovcnt);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        conn_gone(c);
        return false;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == total)
        return true;
    c->out_len = total - done;
    c->out_off = 0;
    c->out = malloc(c->out_len);
    if (c->out == NULL) {
        conn_gone(c);
        return false;
    }
    size_t at = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t skip = done > iov[i].iov_len ? iov[i].iov_len : done;
        done -= skip;
        memcpy(c->out + at, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
        at += iov[i].iov_len - skip;
    }
    c->state = C_WRITE;
    c->h->writing++;
    watch(c, EV_WRITE);
    return true;
}

/* A reply head being built: appends that stop at the end of the buffer. */
struct head {
    char *p, *end;
    bool over; /* something did not fit */
};

static void head_put(struct head *h, const char *s, size_t n)
{
    if (n > (size_t)(h->end - h->p)) {
        h->over = true;
        return;
    }
    memcpy(h->p, s, n);
    h->p += n;
}

static void head_str(struct head *h, const char *s)
{
    head_put(h, s, strlen(s));
}

static void head_num(struct head *h, size_t v)
{
    char d[24], *q = d + sizeof d;
    do
        *--q = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    head_put(h, q, (size_t)(d + sizeof d - q));
}

static void reply_on(struct hconn *c, int code, const char *reason, const char *ctype,
                     const char *extra, const void *body, size_t len, bool head_only)
{
    /* Formatted by hand: this runs once per request, and printf-style
     * formatting was a tenth of the listener's time. */
    char head[1024];
    struct head h = {head, head + sizeof head, false};
    head_put(&h, "HTTP/1.1 ", 9);
    head_num(&h, (size_t)(code >= 100 && code <= 999 ? code : 500));
    head_put(&h, " ", 1);
    head_str(&h, reason);
    head_put(&h, "\r\nDate: ", 8);
    head_str(&h, http_date(c->h));
    if (ctype) {
        head_put(&h, "\r\nContent-Type: ", 16);
        head_str(&h, ctype);
    }
    head_put(&h, "\r\nContent-Length: ", 18);
    head_num(&h, len);
    head_put(&h, "\r\n", 2);
    if (extra)
        head_str(&h, extra);
    if (c->close_after)
        head_put(&h, "Connection: close\r\n", 19);
    else if (c->req.minor == 0)
        head_put(&h, "Connection: keep-alive\r\n", 24);
    head_put(&h, "\r\n", 2);
    int hn = (int)(h.p - head);
    if (h.over) {
        hn = snprintf(head, sizeof head,
                      "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n");
        c->close_after = true;
        len = 0;
    }
    struct iovec iov[2] = {{head, (size_t)hn}, {(void *)body, head_only ? 0 : len}};
    if (!send_iov(c, iov, iov[1].iov_len ? 2 : 1))
        return;
    if (c->state == C_WRITE)
        return;
    if (c->in_cb)
        c->replied_in_cb = true;
    else
        request_done(c);
}

/* Refuse a request the framing of which is broken, and close. */
static void refuse(struct hconn *c, int code)
{
    const char *reason = code == 400   ? "Bad Request"
                         : code == 408 ? "Request Timeout"
                         : code == 413 ? "Payload Too Large"
                         : code == 431 ? "Request Header Fields Too Large"
                         : code == 501 ? "Not Implemented"
                         : code == 505 ? "HTTP Version Not Supported"
                                       : "Error";
    char text[64];
    int n = snprintf(text, sizeof text, "%s\n", reason);
    c->close_after = true;
    c->state = C_HANDLE;
    reply_on(c, code, reason, "text/plain; charset=utf-8", NULL, text, (size_t)n, false);
}

/* Handle the requests in the buffer, one at a time. */
static void process(struct hconn *c)
{
    struct httpd *h = c->h;
    while (c->state == C_READ && c->len > 0) {
        if (c->started_ms == 0)
            c->started_ms = loop_ms(h);
        struct httpd_req *r = &c->req;
        if (!c->head_done) {
            int rc = httpd_parse_head(c->buf, c->len, h->lim.max_head, h->lim.max_body, r);
            if (rc == 0)
                break;
            if (rc != 1) {
                refuse(c, rc);
                return;
            }
            c->head_done = true;
            r->conn = c;
        }
        size_t have = c->len - r->head_len;
        if (r->chunked) {
            size_t blen, used;
            int rc = httpd_dechunk(c->buf + r->head_len, have, h->lim.max_body, &blen, &used);
            if (rc > 1) {
                refuse(c, rc);
                return;
            }
            if (rc == 1) {
                r->body_len = blen;
                c->req_bytes = r->head_len + used;
            }
        } else if (have >= r->content_length) {
            r->body_len = r->content_length;
            c->req_bytes = r->head_len + r->content_length;
        }
        if (c->req_bytes == 0) {
            if (r->expect_continue && !c->continue_sent) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->continue_sent = true;
                ssize_t n = write(c->fd, cont, sizeof cont - 1);
                (void)n; /* a full socket buffer: the client sends anyway */
            }
            break;
        }
        if (r->body_len > 0)
            r->body = c->buf + r->head_len;
        c->close_after = !r->keep_alive;
        c->state = C_HANDLE;
        c->in_cb = true;
        c->replied_in_cb = false;
        h->cb(r, h->cb_arg);
        c->in_cb = false;
        if (c->gone) {
            conn_free(c);
            return;
        }
        if (!c->replied_in_cb)
            return; /* replied later: request_done goes on from there */
        if (!next_request(c))
            return;
    }
    if (c->state == C_READ && c->eof) {
        conn_free(c); /* closed mid-request, or after its last one */
        return;
    }
    if (c->state == C_READ && c->len == 0 && h->stopped)
        conn_free(c);
}

/* The buffer of a parsed head moves from old to nb: follow it. */
static void rebase(struct httpd_req *r, const char *old, char *nb)
{
    r->path = nb + (r->path - old);
    for (size_t i = 0; i < r->nheaders; i++) {
        r->headers[i].name = nb + (r->headers[i].name - old);
        r->headers[i].value = nb + (r->headers[i].value - old);
    }
}

/* Read what there is. false when the connection is gone. */
static bool fill(struct hconn *c)
{
    struct httpd *h = c->h;
    size_t limit = h->lim.max_head + h->lim.max_body + h->lim.max_body / 4 + 4096;
    for (;;) {
        if (c->len == c->cap) {
            /* A request being handled points into buf: never move it. */
            if (c->state == C_HANDLE || c->cap >= limit) {
                if (c->state == C_HANDLE) {
                    watch(c, 0);
                    return true;
                }
                /* A head and the start of its body that came in one go (as
                 * from a proxy): the head decides, 413 for a length over
                 * max_body, 431 for a head over max_head. */
                if (!c->head_done)
                    return true;
                refuse(c, 413);
                return false;
            }
            size_t ncap = c->cap * 2 > limit ? limit : c->cap * 2;
            /* Copied, not realloc'd: the parsed head follows while the old
             * buffer is still there to measure from. */
            char *nb = malloc(ncap);
            if (nb == NULL) {
                conn_free(c);
                return false;
            }
            memcpy(nb, c->buf, c->len);
            if (c->head_done)
                rebase(&c->req, c->buf, nb);
            free(c->buf);
            c->buf = nb;
            c->cap = ncap;
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n > 0) {
            size_t got = (size_t)n;
            c->len += got;
            if (c->len < c->cap)
                return true;
            continue;
        }
        if (n == 0) {
            c->eof = true;
            if (c->state == C_HANDLE || c->state == C_WRITE)
                watch(c, c->state == C_WRITE ? EV_WRITE : 0);
            return true;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        if (c->state == C_HANDLE) { /* the reply will find out */
            c->eof = true;
            watch(c, 0);
            return true;
        }
        conn_free(c);
        return false;
    }
}

static void on_writable(struct hconn *c)
{
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        conn_free(c);
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len)
        return;
    free(c->out);
    c->out = NULL;
    c->h->writing--;
    c->state = C_HANDLE;
    request_done(c);
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct hconn *c = arg;
    struct httpd *h = c->h;
    if (what & EV_TIMEOUT) {
        switch (c->state) {
        case C_READ:
            if (c->len > 0 && !h->stopped)
                refuse(c, 408);
            else
                conn_free(c);
            return;
        case C_HANDLE:
            return; /* our own work: never timed out */
        case C_WRITE:
        case C_LINGER:
            conn_free(c);
            return;
        }
    }
    if (c->state == C_LINGER) {
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
            loop_ms(h) - c->started_ms > LINGER_MS)
            conn_free(c);
        return;
    }
    if (c->state == C_WRITE) {
        if (what & EV_WRITE)
            on_writable(c);
        return;
    }
    if (!fill(c))
        return;
    if (c->state != C_READ)
        return;
    /* A request may take no longer than the timeout to arrive. */
    if (c->len > 0 && c->started_ms != 0 &&
        loop_ms(h) - c->started_ms > (int64_t)h->lim.timeout_s * 1000) {
        refuse(c, 408);
        return;
    }
    process(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    struct httpd *h = arg;
    struct hconn *c = calloc(1, sizeof *c);
    if (c != NULL)
        c->buf = malloc(INITIAL_BUF);
    if (c != NULL && c->buf != NULL)
        c->ev = event_new(h->base, fd, EV_READ | EV_PERSIST, on_conn_event, c);
    if (c == NULL || c->buf == NULL || c->ev == NULL) {
        if (c != NULL)
            free(c->buf);
        free(c);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->h = h;
    c->fd = fd;
    c->cap = INITIAL_BUF;
    if (salen > 0 && (size_t)salen <= sizeof c->peer)
        memcpy(&c->peer, sa, (size_t)salen);
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    c->watching = EV_READ;
    event_add(c->ev, h->idle_tv);
}

static void reenable_listener(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpd *h = arg;
    if (h->listener != NULL)
        evconnlistener_enable(h->listener);
}

/* Out of descriptors and the like: pause for a second rather than spin. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct httpd *h = arg;
    int e = EVUTIL_SOCKET_ERROR();
    log_error("accept failed: %s; pausing the listener for 1 s", evutil_socket_error_to_string(e));
    evconnlistener_disable(l);
    struct timeval tv = {1, 0};
    evtimer_add(h->pause, &tv);
}

struct httpd *httpd_new(struct event_base *base, const char *host, unsigned short port,
                        const struct httpd_limits *lim, httpd_cb cb, void *arg)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        sl = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        sl = sizeof *in6;
    } else {
        errno = EINVAL;
        return NULL;
    }
    struct httpd *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->base = base;
    h->lim = *lim;
    if (h->lim.timeout_s <= 0)
        h->lim.timeout_s = 30;
    struct timeval tv = {h->lim.timeout_s, 0};
    h->idle_tv = event_base_init_common_timeout(base, &tv);
    h->cb = cb;
    h->cb_arg = arg;
    h->listener = evconnlistener_new_bind(
        base, on_accept, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
        (struct sockaddr *)&ss, (int)sl);
    if (h->listener == NULL) {
        int e = errno;
        free(h);
        errno = e;
        return NULL;
    }
    evconnlistener_set_error_cb(h->listener, on_accept_error);
    h->pause = evtimer_new(base, reenable_listener, h);
    int one = 1;
    setsockopt(evconnlistener_get_fd(h->listener), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return h;
}

void httpd_reply(struct httpd_req *r, int code, const char *reason, const char *ctype,
                 const char *extra_headers, const void *body, size_t len)
{
    struct hconn *c = r->conn;
    if (c->eof)
        c->close_after = true;
    reply_on(c, code, reason, ctype, extra_headers, body, len, r->method == HTTPD_HEAD);
}

void httpd_peer(const struct httpd_req *r, char *out, size_t outlen)
{
    const struct hconn *c = r->conn;
    const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
    const void *addr = sa->sa_family == AF_INET6
                           ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                           : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (outlen == 0 || inet_ntop(sa->sa_family == AF_INET6 ? AF_INET6 : AF_INET, addr, out,
                                 (socklen_t)outlen) == NULL) {
        if (outlen > 0)
            snprintf(out, outlen, "?");
    }
}

void httpd_stop(struct httpd *h)
{
    if (h == NULL || h->stopped)
        return;
    h->stopped = true;
    evconnlistener_free(h->listener);
    h->listener = NULL;
    for (struct hconn *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_READ && c->len == 0)
            conn_free(c);
    }
}

size_t httpd_writing(const struct httpd *h)
{
    return h ? h->writing : 0;
}

void httpd_free(struct httpd *h)
{
    if (h == NULL)
        return;
    while (h->conns)
        conn_free(h->conns);
    if (h->listener)
        evconnlistener_free(h->listener);
    if (h->pause)
        event_free(h->pause);
    free(h);
}
