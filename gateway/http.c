/*
 * http.c - libcurl multi_socket on libevent, after curl's hiperfifo example:
 * libcurl tells us which sockets to watch (sock_cb) and when to wake it
 * (timer_cb); libevent tells libcurl what happened (on_io, on_timer); finished
 * transfers are drained from curl_multi_info_read and completed from there,
 * outside any libcurl callback.
 */
#include "http.h"
#include "util.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESPONSE_BYTES (16u << 20)

struct transfer;

#define POOL_MAX 64

struct http_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct transfer *head; /* transfers running, for cleanup */
    /* Idle easy handles: reusing one keeps its buffers and saves a heap
     * round trip per request. */
    CURL *pool[POOL_MAX];
    size_t npool;
};

struct transfer {
    struct transfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t len, cap;
    bool too_big;
    http_done_fn done;
    void *arg;
    struct http_response resp;
    char errbuf[CURL_ERROR_SIZE];
};

struct sock {
    struct event *ev;
};

/* Detach a transfer from libcurl and the list; the struct stays for the caller. */
static void unlink_transfer(struct http_client *c, struct transfer *t)
{
    curl_multi_remove_handle(c->multi, t->easy);
    if (c->npool < POOL_MAX) {
        curl_easy_reset(t->easy);
        c->pool[c->npool++] = t->easy;
    } else {
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->headers);
    if (t->prev)
        t->prev->next = t->next;
    else
        c->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void drain(struct http_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        struct http_response *r = &t->resp;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &r->seconds);
        if (result != CURLE_OK) {
            r->transport_error = (int)result;
            r->timed_out = result == CURLE_OPERATION_TIMEDOUT;
            snprintf(r->error, sizeof r->error, "%s%s%s", curl_easy_strerror(result),
                     t->errbuf[0] ? ": " : "", t->errbuf);
        } else if (t->too_big) {
            r->transport_error = -1;
            snprintf(r->error, sizeof r->error, "response larger than %u bytes",
                     MAX_RESPONSE_BYTES);
        }
        r->body = t->body ? t->body : "";
        r->body_len = t->len;
        unlink_transfer(c, t);
        t->done(r, t->arg);
        free(t->body);
        free(t);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_client *c = arg;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct http_client *c = arg;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(c->multi, fd, action, &running);
    drain(c);
}

/* libcurl asks us to watch a socket; never use the easy handle here (it may
 * be an internal one): the per-socket state comes back in sockp. */
static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *sockp)
{
    (void)easy;
    struct http_client *c = userp;
    struct sock *sk = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            event_free(sk->ev);
            free(sk);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (sk == NULL) {
        sk = calloc(1, sizeof *sk);
        if (sk == NULL)
            return -1;
        curl_multi_assign(c->multi, s, sk);
        sk->ev = event_new(c->base, s, kind, on_io, c);
    } else if (event_get_events(sk->ev) != kind) {
        event_del(sk->ev);
        event_assign(sk->ev, c->base, s, kind, on_io, c);
    } else {
        return 0; /* already watching for just this */
    }
    event_add(sk->ev, NULL);
    return 0;
}

/* Only arm the libevent timer here: calling libcurl from this callback is
 * refused (CURLM_RECURSIVE_API_CALL). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http_client *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
    } else {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(c->timer, &tv);
    }
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nmemb;
    if (t->len + n > MAX_RESPONSE_BYTES) {
        t->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *b = realloc(t->body, cap);
        if (b == NULL)
            return 0;
        t->body = b;
        t->cap = cap;
    }
    memcpy(t->body + t->len, ptr, n);
    t->len += n;
    t->body[t->len] = '\0';
    return n;
}

/* Header lines: keep the few the clients act on. */
static size_t header_cb(char *line, size_t size, size_t nitems, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nitems;
    char buf[256];
    if (n >= sizeof buf)
        return n;
    memcpy(buf, line, n);
    buf[n] = '\0';
    char *colon = strchr(buf, ':');
    if (colon == NULL)
        return n;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    v[strcspn(v, "\r\n")] = '\0';
    if (strcasecmp(buf, "intuit_tid") == 0)
        gw_strlcpy(t->resp.intuit_tid, v, sizeof t->resp.intuit_tid);
    if (strcasecmp(buf, "Retry-After") == 0) {
        int64_t s;
        if (gw_strtoi64(v, &s) && s >= 0 && s < 86400)
            t->resp.retry_after_s = (long)s;
    }
    return n;
}

struct http_client *http_client_new(struct event_base *base, long max_host_connections)
{
    static bool global_done;
    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    struct http_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timer, c);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    if (max_host_connections > 0)
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    /* libcurl sizes its connection cache by the transfers added at the moment;
     * ours come and go, so it would close connections it is about to need. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 256L);
    return c;
}

void http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    /* Transfers still running are dropped; their owners are being torn down. */
    while (c->head != NULL) {
        struct transfer *t = c->head;
        unlink_transfer(c, t);
        free(t->body);
        free(t);
    }
    while (c->npool > 0)
        curl_easy_cleanup(c->pool[--c->npool]);
    curl_multi_cleanup(c->multi);
    event_free(c->timer);
    free(c);
}

int http_start(struct http_client *c, const struct http_request *req, http_done_fn done, void *arg)
{
    struct transfer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    t->done = done;
    t->arg = arg;
    t->resp.retry_after_s = -1;
    CURL *e = t->easy = c->npool > 0 ? c->pool[--c->npool] : curl_easy_init();
    if (e == NULL) {
        free(t);
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    for (const char *const *h = req->headers; h && *h; h++)
        t->headers = curl_slist_append(t->headers, *h);
    /* No "Expect: 100-continue" round trip on larger bodies. */
    t->headers = curl_slist_append(t->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        curl_slist_free_all(t->headers);
        curl_easy_cleanup(e);
        free(t);
        return -1;
    }
    t->next = c->head;
    if (c->head)
        c->head->prev = t;
    c->head = t;
    return 0;
}

char *http_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (e == NULL)
        return NULL;
    char *copy = strdup(e);
    curl_free(e);
    return copy;
}
