/*
 * cdc.c - CDC sweeps on a timer per connection.
 */
#include "cdc.h"
#include "dispatch.h"
#include "task.h"
#include "ingest.h"
#include "log.h"
#include "qbo.h"
#include "util.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDC_MAX_ROWS      1000 /* Intuit's cap per answer: ask again when it is reached */
#define CDC_FIRST_DELAY_S 5    /* let the daemon settle (tokens, limiter) first */

struct sweep {
    struct cdc *cdc;
    const struct gw_connection *c;
    char entities[256];
    struct event *timer;
    bool running;
};

struct cdc {
    const struct gw_config *cfg;
    bool draining;
    struct committer *cm;
    struct qbo *qbo;
    struct store *st;
    struct dispatcher *d;
    struct sweep *sweeps;
    size_t n;
};

struct cdc_job {
    struct commit_job job;
    struct sweep *sw;
    struct ingest_batch in;
    char key[128];
    char checkpoint[GW_TS_LEN];
    bool more;
};

/* The meta key of a connection's checkpoint. */
static void cdc_checkpoint_key(const char *conn, char *out, size_t outlen)
{
    snprintf(out, outlen, "qbo.cdc.%s", conn);
}

int cdc_parse(const struct gw_connection *conn, json_t *response, int64_t now_ms,
              struct gw_batch *out, char *latest, size_t latestlen, size_t *rows)
{
    int64_t newest = -1;
    *rows = 0;
    size_t i, j, k;
    json_t *cdc, *qr, *obj;
    json_array_foreach(json_object_get(response, "CDCResponse"), i, cdc)
    {
        json_array_foreach(json_object_get(cdc, "QueryResponse"), j, qr)
        {
            const char *entity;
            json_t *list;
            json_object_foreach(qr, entity, list)
            {
                if (!json_is_array(list))
                    continue;
                json_array_foreach(list, k, obj)
                {
                    (*rows)++;
                    const char *id = json_string_value(json_object_get(obj, "Id"));
                    const char *lu = json_string_value(
                        json_object_get(json_object_get(obj, "MetaData"), "LastUpdatedTime"));
                    char ts[GW_TS_LEN];
                    int64_t ms;
                    if (id == NULL || lu == NULL || !gw_ts_parse(lu, &ms))
                        continue;
                    gw_ts_format(ms, ts, sizeof ts);
                    if (ms > newest)
                        newest = ms;
                    const char *status = json_string_value(json_object_get(obj, "status"));
                    bool deleted = status && strcmp(status, "Deleted") == 0;
                    char *key =
                        webhook_change_key(conn->realm_id ? conn->realm_id : "", entity, id, ts);
                    json_t *rec = event_new_record(conn->name, GW_SRC_QBO_CDC, entity, id,
                                                   deleted ? "Delete" : "Update", GW_PENDING,
                                                   now_ms, ts, NULL, NULL, json_incref(obj));
                    if (key == NULL || rec == NULL) {
                        free(key);
                        json_decref(rec);
                        return -1;
                    }
                    json_object_set_new(rec, "realm_id", json_string(conn->realm_id ?: ""));
                    json_object_set_new(rec, "change_key", json_string(key));
                    if (batch_add(out, key, rec, GW_PENDING) < 0)
                        return -1;
                }
            }
        }
    }
    if (newest >= 0)
        gw_ts_format(newest, latest, latestlen);
    else if (latestlen > 0)
        latest[0] = '\0';
    return 0;
}

static void arm(struct sweep *sw, long seconds)
{
    if (sw->cdc->draining)
        return;
    struct timeval tv = {seconds, 0};
    evtimer_add(sw->timer, &tv);
}

static int cdc_apply(struct store_txn *t, struct commit_job *job)
{
    struct cdc_job *cj = (struct cdc_job *)job;
    int rc = store_txn_ingest(t, cj->in.puts, cj->in.events.n);
    if (rc == 0 && cj->checkpoint[0]) {
        json_t *v = json_string(cj->checkpoint);
        rc = store_txn_meta_put(t, cj->key, v);
        json_decref(v);
    }
    return rc;
}

static void cdc_done(struct commit_job *job)
{
    struct cdc_job *cj = (struct cdc_job *)job;
    struct sweep *sw = cj->sw;
    sw->running = false;
    if (job->status != 0) {
        gw_log(GW_LOG_ERROR, sw->c->name, 0, "CDC sweep could not be stored; trying again");
        arm(sw, 60);
    } else {
        size_t added = ingest_new_pending(&cj->in);
        gw_log(added ? GW_LOG_INFO : GW_LOG_DEBUG, sw->c->name, 0,
               "CDC sweep: %zu changes, %zu not seen before", cj->in.events.n, added);
        if (added > 0)
            dispatch_kick(sw->cdc->d);
        arm(sw, cj->more ? 0 : sw->cdc->cfg->cdc_interval_s);
    }
    ingest_batch_free(&cj->in);
    free(cj);
}

static void cdc_answer(const struct qbo_result *r, void *arg)
{
    struct sweep *sw = arg;
    if (r->kind != QBO_OK) {
        sw->running = false;
        gw_log(GW_LOG_WARN, sw->c->name, 0, "CDC sweep failed: %s", r->error);
        arm(sw, r->kind == QBO_THROTTLED ? 60 : 300);
        return;
    }
    struct cdc_job *cj = calloc(1, sizeof *cj);
    size_t rows = 0;
    if (cj == NULL ||
        cdc_parse(sw->c, r->body, gw_now_ms(), &cj->in.events, cj->checkpoint,
                  sizeof cj->checkpoint, &rows) != 0 ||
        ingest_prepare(&cj->in) != 0) {
        if (cj)
            ingest_batch_free(&cj->in);
        free(cj);
        sw->running = false;
        arm(sw, 300);
        return;
    }
    cj->sw = sw;
    cj->more = rows >= CDC_MAX_ROWS;
    cdc_checkpoint_key(sw->c->name, cj->key, sizeof cj->key);
    cj->job.apply = cdc_apply;
    cj->job.done = cdc_done;
    committer_submit(sw->cdc->cm, &cj->job);
}

/* First sweep of a connection: there is no checkpoint, so start from now. */
static void start_from_now(struct sweep *sw, const char *key)
{
    struct cdc_job *cj = calloc(1, sizeof *cj);
    if (cj == NULL)
        return;
    cj->sw = sw;
    gw_strlcpy(cj->key, key, sizeof cj->key);
    gw_ts_format(gw_now_ms(), cj->checkpoint, sizeof cj->checkpoint);
    cj->job.apply = cdc_apply;
    cj->job.done = cdc_done;
    sw->running = true;
    committer_submit(sw->cdc->cm, &cj->job);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sweep *sw = arg;
    if (sw->running)
        return;
    if (qbo_needs_auth(sw->cdc->qbo, sw->c)) {
        arm(sw, 60);
        return;
    }
    char key[128];
    cdc_checkpoint_key(sw->c->name, key, sizeof key);
    json_t *cp = NULL;
    if (store_meta_get(sw->cdc->st, key, &cp, NULL, 0) != 0 || !json_is_string(cp)) {
        json_decref(cp);
        start_from_now(sw, key);
        return;
    }
    sw->running = true;
    if (qbo_cdc(sw->cdc->qbo, sw->c, sw->entities, json_string_value(cp), cdc_answer, sw) != 0) {
        sw->running = false;
        arm(sw, 300);
    }
    json_decref(cp);
}

/* The QuickBooks entities the connection's enabled flows take, comma-separated. */
static void flow_entities(const struct gw_connection *c, const struct flow *extra, char *out,
                          size_t outlen)
{
    out[0] = '\0';
    const struct flow *lists[] = {extra, flow_table()};
    for (size_t l = 0; l < 2; l++) {
        for (const struct flow *f = lists[l]; f && f->name; f++) {
            if (!flow_on(f, c) || f->source == NULL || f->entity == NULL ||
                strcmp(f->source, "quickbooks") != 0)
                continue;
            char probe[80];
            snprintf(probe, sizeof probe, ",%s,", f->entity);
            char have[300];
            snprintf(have, sizeof have, ",%s,", out);
            if (strstr(have, probe) != NULL)
                continue;
            size_t n = strlen(out);
            snprintf(out + n, outlen - n, "%s%s", n ? "," : "", f->entity);
        }
    }
}

struct cdc *cdc_new(struct event_base *base, const struct gw_config *cfg, struct committer *cm,
                    struct qbo *qbo, struct store *st, struct dispatcher *d,
                    const struct flow *extra_flows)
{
    struct cdc *c = calloc(1, sizeof *c);
    c->cfg = cfg;
    c->cm = cm;
    c->qbo = qbo;
    c->st = st;
    c->d = d;
    c->sweeps = calloc(cfg->nconns ? cfg->nconns : 1, sizeof *c->sweeps);
    for (size_t i = 0; i < cfg->nconns; i++) {
        struct sweep *sw = &c->sweeps[c->n];
        flow_entities(&cfg->conns[i], extra_flows, sw->entities, sizeof sw->entities);
        if (sw->entities[0] == '\0' || cfg->cdc_interval_s == 0 || !cfg->dispatch_enabled)
            continue;
        sw->cdc = c;
        sw->c = &cfg->conns[i];
        sw->timer = evtimer_new(base, on_timer, sw);
        arm(sw, CDC_FIRST_DELAY_S);
        c->n++;
    }
    return c;
}

void cdc_drain(struct cdc *c)
{
    for (size_t i = 0; c && i < c->n; i++)
        evtimer_del(c->sweeps[i].timer);
    if (c)
        c->draining = true;
}

bool cdc_idle(const struct cdc *c)
{
    for (size_t i = 0; c && i < c->n; i++)
        if (c->sweeps[i].running)
            return false;
    return true;
}

void cdc_free(struct cdc *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        event_free(c->sweeps[i].timer);
    free(c->sweeps);
    free(c);
}
