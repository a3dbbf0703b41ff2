/*
 * http.h - the outbound HTTP client: libcurl's multi_socket API driven by the
 * daemon's own libevent loop (the only module that includes curl.h). One
 * multi handle for the whole daemon, so connections are reused; no call
 * blocks. TLS peers are verified.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include <event2/event.h>
#include <stddef.h>

struct http_client;

struct http_request {
    const char *method; /* "GET", "POST" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* copied; may be NULL */
    size_t body_len;
    long timeout_ms;         /* whole transfer; 0 = 30 s */
    long connect_timeout_ms; /* 0 = 10 s */
};

struct http_response {
    int transport_error; /* 0, or a curl error: connect, timeout, reset... */
    char error[512];     /* readable transport error */
    long status;         /* HTTP status, 0 when there was none */
    char *body;          /* NUL-terminated; valid during the callback only */
    size_t body_len;
    long retry_after_s;  /* from Retry-After (seconds form), -1 if absent */
    double seconds;      /* total time */
    char intuit_tid[64]; /* QuickBooks' transaction id (intuit_tid header), for Intuit support */
    int timed_out;       /* the transport error was a timeout */
};

/* Called once per request from the loop, never from inside libcurl. */
typedef void (*http_done_fn)(const struct http_response *resp, void *arg);

struct http_client *http_client_new(struct event_base *base, long max_host_connections);
/* Cancels transfers still running (their callbacks are not called). */
void http_client_free(struct http_client *c);

/* Start a request; returns 0, or -1 when it could not be started (no callback then). */
int http_start(struct http_client *c, const struct http_request *req, http_done_fn done, void *arg);

/* Percent-encode s for a query string; returns a new malloc'd string. */
char *http_escape(const char *s);

#endif
