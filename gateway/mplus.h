/*
 * mplus.h - the MplusKASSA client: SOAP 1.1 document/literal calls to the
 * urn:mplusqapi API over the shared HTTP client, built and read with libxml2
 * (qbo.c uses it too, only to read QuickBooks' XML faults).
 *
 * Requests are given and responses returned as canonical JSON: the XSD's
 * element names, money as exact decimal strings in units ("9.95", not 995
 * cents), quantities as decimal strings ("0.530", not 530 + decimalPlaces 3),
 * SoapMplusDate as "YYYY-MM-DD", SoapMplusDateTime as ISO-8601 with its
 * offset ("2026-06-12T13:45:30+02:00"), list wrappers as arrays. The element
 * order, the types and the conversions come from tables in mplus.c written
 * from shared/fixtures/mplus/mplusqapi.xsd; the XSD is not read at run time.
 *
 * Every call is asynchronous and ends in exactly one callback with a
 * classified result. ident and secret travel as query parameters and never
 * reach a log: every URL that is logged or put in an error goes through
 * mplus_mask_url.
 */
#ifndef GW_MPLUS_H
#define GW_MPLUS_H

#include "config.h"
#include "http.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mplus_kind {
    MPLUS_OK,
    /* Permanent: a Client fault, or an in-band result such as
     * CREATE-RELATION-RESULT-FAILED or ...-ARTICLE-NUMBER-ALREADY-TAKEN. */
    MPLUS_FAULT,
    /* Transient: transport error, timeout, 5xx without a Client fault, Server fault. */
    MPLUS_RETRY,
    /* ident/secret refused: retrying will not help until the config changes. */
    MPLUS_AUTH,
};

struct mplus_result {
    enum mplus_kind kind;
    long status;   /* HTTP status, 0 if none */
    json_t *body;  /* canonical JSON of the response, borrowed during the callback; may be NULL */
    char code[64]; /* fault code ("Client.Authentication") or in-band result, or "" */
    char error[1024];    /* readable, Mplus's own message kept; "" when OK */
    char request_id[40]; /* the X-Request-Id sent, for Mplus support */
};

typedef void (*mplus_cb)(const struct mplus_result *r, void *arg);

struct mplus;

/* cfg and http are borrowed and must outlive the client. */
struct mplus *mplus_new(struct event_base *base, const struct gw_config *cfg,
                        struct http_client *http);
/*
 * Frees the client and the calls still pending, without calling their
 * callbacks. Free the HTTP client first (it drops its transfers silently), or
 * free this one when no call is in flight.
 */
void mplus_free(struct mplus *m);

/*
 * Call operation op on connection c (its mplus_url, mplus_ident,
 * mplus_secret). request holds the fields of the operation's one parameter
 * (the `request`, `relation` or `product` element) as canonical JSON,
 * borrowed; NULL or {} for operations without one. Schema-required elements
 * that may be empty (articlePluNumbers, pluNumbers, articleNumbers...) are
 * emitted when absent.
 *
 * Returns 0 and then calls cb exactly once, always from the event loop (never
 * from inside mplus_call); a request that cannot be built is reported there
 * as MPLUS_FAULT with the reason. Returns -1 (and cb is never called) only
 * when out of memory.
 *
 * findRelation answering FIND-RELATION-RESULT-NOT-FOUND is MPLUS_OK with code
 * set: nothing found is an answer, not a failure.
 */
int mplus_call(struct mplus *m, const struct gw_connection *c, const char *op, json_t *request,
               mplus_cb cb, void *arg);

/* ---- pure functions (unit-tested and fuzzed) ---------------------------- */

/*
 * Build the SOAP envelope of op from request (as for mplus_call). On success
 * returns 0 and *xml is a new NUL-terminated string (free()) of *len bytes.
 * On failure returns -1 and err names the field and what was wrong:
 * "getStock: request.branchNumber is required (xsd:int)".
 */
int mplus_build_request(const char *op, json_t *request, char **xml, size_t *len, char *err,
                        size_t errlen);

/*
 * Parse an answer to op: a SOAP response or a SOAP Fault. Returns the
 * classification (enum mplus_kind) and, when the response element was read,
 * *out = a new canonical JSON object (also for an in-band failure, so the
 * caller may look at it); otherwise *out = NULL. code gets the fault code or
 * the in-band result, msg a readable message keeping Mplus's text. Returns -1
 * when xml is not a SOAP answer to op (msg says why); *out is NULL then.
 */
int mplus_parse_response(const char *op, const char *xml, size_t len, json_t **out, char *code,
                         size_t codelen, char *msg, size_t msglen);

/*
 * The two readers behind mplus_parse_response, for the tests that compare
 * them. The streaming one (the usual answer, read as it is parsed) returns
 * MPLUS_NOT_STREAMED for what it leaves to the tree reader: faults, errors,
 * anything unusual. The tree reader reads everything.
 */
#define MPLUS_NOT_STREAMED (-2)
int mplus_parse_response_stream(const char *op, const char *xml, size_t len, json_t **out,
                                char *code, size_t codelen, char *msg, size_t msglen);
int mplus_parse_response_tree(const char *op, const char *xml, size_t len, json_t **out, char *code,
                              size_t codelen, char *msg, size_t msglen);

/*
 * Copy url into out with the values of the ident and secret query parameters
 * (and a password in user:password@) replaced by ***. Safe for logs and event
 * histories; a truncated copy never holds a partial secret.
 */
void mplus_mask_url(const char *url, char *out, size_t outlen);

/* Whether op is one of the operations this client knows. */
bool mplus_op_known(const char *op);

/*
 * Exact conversions between decimal text and Mplus's scaled integers; no
 * floating point. Decimal text is -?digits[.digits].
 *
 * mplus_cents_parse: units to cents, "9.95" -> 995, "-12.5" -> -1250; more
 * than two decimals is an error unless the extra digits are zeros ("1.230").
 * mplus_quantity_parse: "0.530" -> 530 with places 3, "-1.5" -> -15, 1.
 * Both return 0, or -1 with a message in err.
 *
 * mplus_cents_format: 995 -> "9.95", -1250 -> "-12.50".
 * mplus_quantity_format: 530, 3 -> "0.530"; returns -1 when places is not
 * within 0..18. out needs MPLUS_NUM_LEN bytes.
 */
#define MPLUS_NUM_LEN 48
int mplus_cents_parse(const char *s, int64_t *cents, char *err, size_t errlen);
int mplus_quantity_parse(const char *s, int64_t *value, int *places, char *err, size_t errlen);
void mplus_cents_format(int64_t cents, char *out, size_t outlen);
int mplus_quantity_format(int64_t value, int places, char *out, size_t outlen);

#endif
