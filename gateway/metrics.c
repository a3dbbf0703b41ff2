/*
 * metrics.c - webhook, commit, delivery and payload counters.
 */
#include "metrics.h"

static uint64_t webhooks[MS_COUNT][MR_COUNT];
static uint64_t commits, committed_requests;
static const double commit_buckets[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0};
#define NBUCKETS (sizeof commit_buckets / sizeof commit_buckets[0])
static uint64_t commit_hist[NBUCKETS];
static double commit_sum;

static const char *const source_names[MS_COUNT] = {"quickbooks", "mplus"};
static const char *const result_names[MR_COUNT] = {
    "accepted", "duplicate",    "malformed", "ignored",
    "skipped",  "unauthorized", "rejected",  "unavailable",
};

void metrics_webhook(enum metric_source s, enum metric_result r)
{
    webhooks[s][r]++;
}

static uint64_t offers_made, offers_taken;

void metrics_offer(bool taken)
{
    if (taken)
        offers_taken++;
    else
        offers_made++;
}

static uint64_t deliveries[MA_COUNT][MO_COUNT];
static const double delivery_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NDBUCKETS (sizeof delivery_buckets / sizeof delivery_buckets[0])
static uint64_t delivery_hist[MA_COUNT][NDBUCKETS];
static uint64_t delivery_count[MA_COUNT];
static double delivery_sum[MA_COUNT];
static const char *const api_names[MA_COUNT] = {"quickbooks", "mplus"};
static const char *const outcome_names[MO_COUNT] = {"ok", "fault", "retry", "throttled", "auth"};

void metrics_delivery(enum metric_api api, enum metric_outcome outcome, double seconds)
{
    deliveries[api][outcome]++;
    delivery_count[api]++;
    delivery_sum[api] += seconds;
    for (size_t i = 0; i < NDBUCKETS; i++)
        if (seconds <= delivery_buckets[i])
            delivery_hist[api][i]++;
}

void metrics_commit(unsigned n, double seconds)
{
    commits++;
    committed_requests += n;
    commit_sum += seconds;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= commit_buckets[i])
            commit_hist[i]++;
}

void metrics_render(FILE *out)
{
    fprintf(out, "# HELP gateway_webhooks_total Webhook requests by source and result.\n"
                 "# TYPE gateway_webhooks_total counter\n");
    for (int s = 0; s < MS_COUNT; s++)
        for (int r = 0; r < MR_COUNT; r++)
            fprintf(out, "gateway_webhooks_total{source=\"%s\",result=\"%s\"} %llu\n",
                    source_names[s], result_names[r], (unsigned long long)webhooks[s][r]);
    fprintf(out,
            "# HELP gateway_commit_seconds Durable (fsync'd) group commits of webhook requests.\n"
            "# TYPE gateway_commit_seconds histogram\n");
    for (size_t i = 0; i < NBUCKETS; i++)
        fprintf(out, "gateway_commit_seconds_bucket{le=\"%g\"} %llu\n", commit_buckets[i],
                (unsigned long long)commit_hist[i]);
    fprintf(out, "gateway_commit_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)commits);
    fprintf(out, "gateway_commit_seconds_sum %.6f\n", commit_sum);
    fprintf(out, "gateway_commit_seconds_count %llu\n", (unsigned long long)commits);
    fprintf(out,
            "# HELP gateway_deliveries_total Calls to the QuickBooks and Mplus APIs by outcome.\n"
            "# TYPE gateway_deliveries_total counter\n");
    for (int a = 0; a < MA_COUNT; a++)
        for (int o = 0; o < MO_COUNT; o++)
            fprintf(out, "gateway_deliveries_total{api=\"%s\",outcome=\"%s\"} %llu\n", api_names[a],
                    outcome_names[o], (unsigned long long)deliveries[a][o]);
    fprintf(out, "# HELP gateway_delivery_seconds Duration of calls to the QuickBooks and Mplus "
                 "APIs.\n"
                 "# TYPE gateway_delivery_seconds histogram\n");
    for (int a = 0; a < MA_COUNT; a++) {
        for (size_t i = 0; i < NDBUCKETS; i++)
            fprintf(out, "gateway_delivery_seconds_bucket{api=\"%s\",le=\"%g\"} %llu\n",
                    api_names[a], delivery_buckets[i], (unsigned long long)delivery_hist[a][i]);
        fprintf(out, "gateway_delivery_seconds_bucket{api=\"%s\",le=\"+Inf\"} %llu\n", api_names[a],
                (unsigned long long)delivery_count[a]);
        fprintf(out, "gateway_delivery_seconds_sum{api=\"%s\"} %.6f\n", api_names[a],
                delivery_sum[a]);
        fprintf(out, "gateway_delivery_seconds_count{api=\"%s\"} %llu\n", api_names[a],
                (unsigned long long)delivery_count[a]);
    }
    fprintf(out, "# HELP gateway_committed_requests_total Webhook requests made durable.\n"
                 "# TYPE gateway_committed_requests_total counter\n");
    fprintf(out, "gateway_committed_requests_total %llu\n", (unsigned long long)committed_requests);
    fprintf(out,
            "# HELP gateway_payloads_offered_total Polled payloads handed to the dispatcher "
            "as parsed.\n"
            "# TYPE gateway_payloads_offered_total counter\n"
            "gateway_payloads_offered_total %llu\n",
            (unsigned long long)offers_made);
    fprintf(out,
            "# HELP gateway_payloads_reused_total First runs that used the parsed payload "
            "instead of parsing the stored text.\n"
            "# TYPE gateway_payloads_reused_total counter\n"
            "gateway_payloads_reused_total %llu\n",
            (unsigned long long)offers_taken);
}
