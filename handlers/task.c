/*
 * task.c - the task API the flows use, on top of the operations its owner
 * (the dispatcher) provides, and the step runner.
 */
#include "task.h"
#include "log.h"
#include "mplus.h"
#include "qbo.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void task_finish(struct task *t, const struct outcome *o)
{
    if (t->finished) {
        gw_log(GW_LOG_ERROR, NULL, t->id, "handler finished a task twice");
        return;
    }
    t->finished = true;
    t->ops->finish(t, o);
}

void task_done(struct task *t)
{
    struct outcome o = {.kind = OUTCOME_DONE};
    task_finish(t, &o);
}

void task_skip(struct task *t, const char *reason)
{
    struct outcome o = {.kind = OUTCOME_SKIPPED};
    gw_strlcpy(o.reason, reason, sizeof o.reason);
    task_finish(t, &o);
}

static void fail_v(struct task *t, enum outcome_kind kind, const char *reason, const char *fmt,
                   va_list ap) __attribute__((format(printf, 4, 0)));

static void fail_v(struct task *t, enum outcome_kind kind, const char *reason, const char *fmt,
                   va_list ap)
{
    struct outcome o = {.kind = kind};
    gw_strlcpy(o.reason, reason ? reason : "", sizeof o.reason);
    vsnprintf(o.error, sizeof o.error, fmt, ap);
    task_finish(t, &o);
}

void task_fail(struct task *t, enum outcome_kind kind, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(t, kind, reason, fmt, ap);
    va_end(ap);
}

json_t *task_payload(struct task *t)
{
    return t->ops->payload(t);
}

json_t *task_get_meta(struct task *t, const char *name)
{
    return t->ops->get_meta(t, name);
}

void task_put_meta(struct task *t, const char *name, json_t *value)
{
    t->ops->put_meta(t, name, value);
}

void task_note(struct task *t, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (json_array_size(t->steps) < 20)
        json_array_append_new(t->steps, json_string(buf));
}

void task_fail_mplus(struct task *t, const char *what, const struct mplus_result *r)
{
    if (r->kind == MPLUS_AUTH) {
        /* Trying again cannot help until the login works: no attempt spent,
         * and the dispatcher holds the connection (dispatch.c). */
        struct outcome o = {.kind = OUTCOME_LOGIN_REFUSED};
        snprintf(o.error, sizeof o.error, "%s: %s", what, r->error);
        task_finish(t, &o);
        return;
    }
    bool fault = r->kind == MPLUS_FAULT;
    task_fail(t, fault ? OUTCOME_DEAD : OUTCOME_RETRY, fault ? "rejected by Mplus" : NULL, "%s: %s",
              what, r->error);
}

void task_fail_qbo(struct task *t, const char *what, const struct qbo_result *r)
{
    struct outcome o = {.kind = OUTCOME_RETRY};
    switch (r->kind) {
    case QBO_FAULT:
        if (qbo_period_closed(r)) {
            o.kind = OUTCOME_DEAD;
            snprintf(o.reason, sizeof o.reason, "closed period");
            snprintf(o.error, sizeof o.error,
                     "%s: QuickBooks' books are closed for the document's date (%s); reopen the "
                     "period, or set closed_period = next_open to book it in the first open "
                     "period, then replay",
                     what, r->error);
            task_finish(t, &o);
            return;
        }
        /* 5010 after the client's own re-read and re-apply: another writer
         * changes the same object right now; the next attempt reads it anew. */
        if (strcmp(r->code, "5010") == 0)
            break;
        o.kind = OUTCOME_DEAD;
        snprintf(o.reason, sizeof o.reason, "rejected by QuickBooks");
        break;
    case QBO_THROTTLED:
        o.kind = OUTCOME_THROTTLED;
        o.not_before_ms = r->retry_at_ms;
        break;
    case QBO_NO_AUTH:
        o.kind = OUTCOME_WAIT_AUTH;
        break;
    case QBO_RETRY:
    case QBO_OK:
        break;
    }
    snprintf(o.error, sizeof o.error, "%s: %s", what, r->error);
    task_finish(t, &o);
}

void task_requestid(const struct task *t, const char *step, char *out, size_t outlen)
{
    json_int_t gen = json_integer_value(json_object_get(t->rec, "replays"));
    if (gen > 0)
        snprintf(out, outlen, "ev%llur%lld-%s", (unsigned long long)t->id, (long long)gen, step);
    else
        snprintf(out, outlen, "ev%llu-%s", (unsigned long long)t->id, step);
    /* After a stale-object answer (5010) a request of its own: QuickBooks
     * answers a repeated requestid with its first answer, the 5010 again. The
     * updates that meet it set values, so sending one anew does no harm. */
    const char *last = json_string_value(json_object_get(t->rec, "last_error"));
    if (last != NULL && strstr(last, "5010 Stale Object") != NULL)
        gw_appendf(out, outlen, "-a%u", t->attempt);
}

bool task_is_rerun(const struct task *t)
{
    /* Attempts that ended waiting for another record wrote nothing. */
    json_int_t waits = json_integer_value(json_object_get(t->rec, "waits"));
    return (json_int_t)t->attempt - 1 > waits ||
           json_integer_value(json_object_get(t->rec, "replays")) > 0;
}

/* ---- steps ------------------------------------------------------------------- */

static void run_free(struct run *r)
{
    if (r->claim_end)
        r->claim_end(r);
    if (r->hold_end)
        r->hold_end(r);
    json_decref(r->relation);
    json_decref(r->customer);
    json_decref(r->customer_target);
    json_decref(r->skus);
    json_decref(r->items);
    json_decref(r->item_texts);
    json_decref(r->article);
    json_decref(r->item_target);
    json_decref(r->parent_body);
    json_decref(r->item_entry);
    json_decref(r->item_now);
    if (r->side_free)
        r->side_free(r->side);
    if (r->flow_free)
        r->flow_free(r->flow);
    free(r);
}

struct run *run_new(struct task *t, const step_fn *steps, void *flow, void (*flow_free)(void *))
{
    struct run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        if (flow_free)
            flow_free(flow);
        task_fail(t, OUTCOME_RETRY, NULL, "out of memory");
        return NULL;
    }
    r->t = t;
    r->steps = steps;
    r->flow = flow;
    r->flow_free = flow_free;
    r->items = json_object();
    return r;
}

void run_begin(struct run *r)
{
    r->at = 0;
    r->steps[0](r);
}

void run_start(struct task *t, const step_fn *steps, void *flow, void (*flow_free)(void *))
{
    struct run *r = run_new(t, steps, flow, flow_free);
    if (r != NULL)
        run_begin(r);
}

void *run_state(struct task *t, size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL)
        task_fail(t, OUTCOME_RETRY, NULL, "out of memory");
    return p;
}

void run_next(struct run *r)
{
    step_fn next = r->steps[++r->at];
    if (next == NULL)
        run_done(r);
    else
        next(r);
}

/* The run ends after its outcome is handed over: the outcome's text may
 * come from the run's own state. */
void run_done(struct run *r)
{
    task_done(r->t);
    run_free(r);
}

void run_skip(struct run *r, const char *reason)
{
    task_skip(r->t, reason);
    run_free(r);
}

void run_fail(struct run *r, enum outcome_kind kind, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(r->t, kind, reason, fmt, ap);
    va_end(ap);
    run_free(r);
}

void run_wait(struct run *r, int64_t delay_ms, const char *reason, const char *fmt, ...)
{
    struct outcome o = {.kind = OUTCOME_WAIT};
    if (delay_ms > 0)
        o.not_before_ms = gw_now_ms() + delay_ms;
    snprintf(o.reason, sizeof o.reason, "%s", reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o.error, sizeof o.error, fmt, ap);
    va_end(ap);
    task_finish(r->t, &o);
    run_free(r);
}

void run_fail_qbo(struct run *r, const char *what, const struct qbo_result *res)
{
    task_fail_qbo(r->t, what, res);
    run_free(r);
}

void run_fail_mplus(struct run *r, const char *what, const struct mplus_result *res)
{
    task_fail_mplus(r->t, what, res);
    run_free(r);
}
