/*
 * metrics.h - in-process counters rendered as Prometheus text. Updated from
 * the event loop thread only.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum metric_source { MS_QUICKBOOKS, MS_MPLUS, MS_COUNT };
enum metric_result {
    MR_ACCEPTED,     /* stored, acknowledged */
    MR_DUPLICATE,    /* already stored, acknowledged */
    MR_MALFORMED,    /* signed but unparseable: kept dead */
    MR_IGNORED,      /* valid, nothing to sync */
    MR_SKIPPED,      /* stored as skipped (unknown realm) */
    MR_UNAUTHORIZED, /* missing or bad signature */
    MR_REJECTED,     /* bad request: media type, framing, subscription, path */
    MR_UNAVAILABLE,  /* store could not write: 503 */
    MR_COUNT
};

void metrics_webhook(enum metric_source s, enum metric_result r);
/* Calls to the other side's APIs: which API, how the call ended, how long. */
enum metric_api { MA_QUICKBOOKS, MA_MPLUS, MA_COUNT };
enum metric_outcome { MO_OK, MO_FAULT, MO_RETRY, MO_THROTTLED, MO_AUTH, MO_COUNT };
void metrics_delivery(enum metric_api api, enum metric_outcome outcome, double seconds);

/* Commit pipeline: one batch of n requests committed in seconds. */
void metrics_commit(unsigned n, double seconds);
/* A polled payload offered to the dispatcher (taken false), or taken by the
 * first run of its event, which then parses no stored text (taken true). */
void metrics_offer(bool taken);
/* Write the counters in Prometheus text format. */
void metrics_render(FILE *out);

#endif
