/*
 * handler.h - what a flow handler is given and what it answers.
 *
 * The dispatcher runs one task per event. A handler looks at the event,
 * calls the clients (never building HTTP requests itself), and ends the task
 * exactly once with task_finish and an outcome. It never touches the store:
 * the dispatcher turns the outcome into the event's next state.
 */
#ifndef GW_HANDLER_H
#define GW_HANDLER_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum outcome_kind {
    OUTCOME_DONE,          /* the change is applied */
    OUTCOME_SKIPPED,       /* nothing to do, with a reason (echo, no flow, ...) */
    OUTCOME_RETRY,         /* failed for now: connection error, timeout, 5xx */
    OUTCOME_DEAD,          /* failed for good: validation fault; needs a person */
    OUTCOME_THROTTLED,     /* the API said slow down: try later, no attempt used */
    OUTCOME_WAIT_AUTH,     /* the connection needs re-authorisation: wait, no attempt used */
    OUTCOME_LOGIN_REFUSED, /* Mplus refused the ident/secret: the connection waits, no attempt used
                            */
};

struct outcome {
    enum outcome_kind kind;
    char reason[64];       /* skipped/dead: short machine-readable reason */
    char error[1536];      /* for the operator: what failed, in the API's words */
    int64_t not_before_ms; /* retry/throttled: earliest next try; 0 = retry policy */
};

struct gw_clients; /* the QBO and Mplus clients of the daemon */

struct task {
    uint64_t id;
    json_t *rec;                      /* the event record (borrowed, read-only) */
    const struct gw_connection *conn; /* NULL for events of no connection */
    struct gw_clients *clients;
    json_t *steps;    /* array the handler may append step summaries to (history) */
    unsigned attempt; /* 1 on the first try */
    void *dispatcher_data;
};

/* What came in with the event (borrowed, read-only), or NULL: parsed on first use. */
json_t *task_payload(struct task *t);

/* End the task (once). */
void task_finish(struct task *t, const struct outcome *o);

/* Convenience for the common outcomes. */
void task_done(struct task *t);
void task_skip(struct task *t, const char *reason);
void task_fail(struct task *t, enum outcome_kind kind, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct qbo_result;
/*
 * End the task with what a failed QuickBooks call means: a fault is dead
 * (reason "rejected by QuickBooks", the Fault text as the error), a
 * transport error or 5xx a retry, a 429 throttled, missing tokens a wait.
 * what names the step ("create SalesReceipt").
 */
void task_fail_qbo(struct task *t, const char *what, const struct qbo_result *r);

/* Finish with a failed Mplus call: a fault is dead ("rejected by Mplus"),
 * anything else is retried. */
struct mplus_result;
void task_fail_mplus(struct task *t, const char *what, const struct mplus_result *r);

/*
 * The QBO requestid of one step of the task ("customer", "receipt"):
 * "ev<ID>-<step>", the same on every retry and after a restart, so QBO
 * answers a repeated create with its first answer instead of booking twice.
 * A replay starts a new generation, "ev<ID>r<N>-<step>": QBO would repeat
 * the first answer of the step that failed too (a 6240 stays a 6240 after
 * the accountant fixed its cause). Steps that had succeeded before the
 * replay are sent again under new ids, so flows find what exists first (id
 * map, existence checks), as they must anyway.
 */
void task_requestid(const struct task *t, const char *step, char *out, size_t outlen);

/*
 * Small named values kept with the connection (the id map, fingerprints of
 * what the gateway wrote). task_get_meta reads one now (new reference, or
 * NULL); task_put_meta writes one together with the task's outcome, in the
 * same transaction: the id map and the event's state never disagree.
 */
json_t *task_get_meta(struct task *t, const char *name);
void task_put_meta(struct task *t, const char *name, json_t *value);

/* Record a step (request summary) in the event's history. */
void task_note(struct task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A flow: which events it takes, and what it does with them. Flows are
 * listed in handlers/flows.c; a connection turns them on with `flows =`.
 */
struct flow {
    const char *name; /* as in the flows setting */
    unsigned bit;     /* enum gw_flow */
    /* Events of this source and entity go to run (NULL: any). */
    const char *source;
    const char *entity;
    void (*run)(struct task *t);
};

/*
 * The flow for an event on its connection, or NULL when no enabled flow
 * takes it (the event is then skipped with reason "no flow"). extra, when
 * not NULL, is consulted first (an entry with a NULL name ends it).
 */
const struct flow *flow_for(json_t *rec, const struct gw_connection *conn,
                            const struct flow *extra);

/* The flows' entry points (handlers/<flow>.c). */
void customers_from_mplus(struct task *t);
void customers_from_qbo(struct task *t);

/* The shipped flows (an entry with a NULL name ends the table). */
const struct flow *flow_table(void);

#endif
