/*
 * flows.c - the table of flows and how an event finds its handler.
 */
#include "handler.h"
#include "mplus.h"
#include "qbo.h"

#include <stdio.h>
#include <string.h>

/* Flows of other entities are to come: their events end skipped, "no flow". */
static const struct flow shipped[] = {
    {"customers", GW_FLOW_CUSTOMERS, GW_SRC_MPLUS_POLL, "relation", customers_from_mplus},
    {"customers", GW_FLOW_CUSTOMERS, "quickbooks", "Customer", customers_from_qbo},
    {NULL, 0, NULL, NULL, NULL},
};

static bool takes(const struct flow *f, const char *source, const char *entity, unsigned enabled)
{
    if ((enabled & f->bit) == 0)
        return false;
    if (f->source != NULL && (source == NULL || strcmp(f->source, source) != 0))
        return false;
    return f->entity == NULL || (entity != NULL && strcmp(f->entity, entity) == 0);
}

const struct flow *flow_for(json_t *rec, const struct gw_connection *conn, const struct flow *extra)
{
    if (conn == NULL)
        return NULL;
    const char *source = json_string_value(json_object_get(rec, "source"));
    const char *entity = json_string_value(json_object_get(rec, "entity"));
    /* A change found by a CDC sweep goes where its webhook would have gone. */
    if (source != NULL && strcmp(source, GW_SRC_QBO_CDC) == 0)
        source = "quickbooks";
    for (const struct flow *f = extra; f && f->name; f++)
        if (takes(f, source, entity, conn->flows))
            return f;
    for (const struct flow *f = shipped; f->name; f++)
        if (takes(f, source, entity, conn->flows))
            return f;
    return NULL;
}

const struct flow *flow_table(void)
{
    return shipped;
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
}
