/*
 * task.h - the task API between the dispatcher and the flows, and the step
 * runner the flows are written in.
 *
 * The dispatcher runs one task per event and hands it to the flow that takes
 * the event (flow_for). The flow looks at the event, calls the clients (never
 * building HTTP requests itself), and ends the task exactly once with an
 * outcome. It never touches the store: the dispatcher turns the outcome into
 * the event's next state, and writes what the flow put aside (task_put_meta)
 * in the same transaction.
 *
 * The dispatcher includes this header and no handler; the handlers include
 * it and not dispatch.h. What ties a task to the dispatcher is the table of
 * operations it fills in (struct task_ops).
 *
 * A flow is a list of steps sharing one context (struct run): each step does
 * one thing, usually one API call, and goes on with run_next from its
 * callback, or ends the run. Lookups that several flows need (find the
 * customer of a relation, every article must exist as an Item) are steps in
 * handlers/lookup.c, written once.
 */
#ifndef GW_TASK_H
#define GW_TASK_H

#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum outcome_kind {
    OUTCOME_DONE,          /* the change is applied */
    OUTCOME_SKIPPED,       /* nothing to do, with a reason (echo, no flow, ...) */
    OUTCOME_RETRY,         /* failed for now: connection error, timeout, 5xx */
    OUTCOME_DEAD,          /* failed for good: validation fault; needs a person */
    OUTCOME_THROTTLED,     /* the API said slow down: try later, no attempt used */
    OUTCOME_WAIT_AUTH,     /* the connection needs re-authorisation: wait, no attempt used */
    OUTCOME_LOGIN_REFUSED, /* Mplus refused the ident/secret: the connection waits, no attempt
                              used */
    OUTCOME_WAIT,          /* needs a record another event makes (an article group, an Item):
                              try again at not_before_ms (0: the retry policy); an attempt is
                              used, the connection's circuit is not touched */
};

struct outcome {
    enum outcome_kind kind;
    char reason[64];       /* skipped/dead: short machine-readable reason */
    char error[1536];      /* for the operator: what failed, in the API's words */
    int64_t not_before_ms; /* retry/throttled: earliest next try; 0 = retry policy */
};

struct gw_clients; /* the QBO and Mplus clients of the daemon */
struct task;

/* What the owner of a task (the dispatcher, or a test) provides. */
struct task_ops {
    /* Take the outcome; called once per task. */
    void (*finish)(struct task *t, const struct outcome *o);
    /* The payload as stored, parsed (borrowed), or NULL. */
    json_t *(*payload)(struct task *t);
    /* A stored meta value (new reference) or NULL. */
    json_t *(*get_meta)(struct task *t, const char *name);
    /* Write a meta value with the outcome (value borrowed). */
    void (*put_meta)(struct task *t, const char *name, json_t *value);
};

struct task {
    uint64_t id;
    json_t *rec;                      /* the event record (borrowed, read-only) */
    const struct gw_connection *conn; /* NULL for events of no connection */
    struct gw_clients *clients;
    json_t *steps;          /* array the handler may append step summaries to (history) */
    json_t *calls;          /* the exchanges with QuickBooks and Mplus (activity.c), or NULL */
    unsigned calls_dropped; /* exchanges past the cap, counted only */
    unsigned attempt;       /* 1 on the first try */
    const struct task_ops *ops;
    void *owner; /* the owner's own data */
    bool finished;
};

/* What came in with the event (borrowed, read-only), or NULL: parsed on first use. */
json_t *task_payload(struct task *t);

/* End the task (once; a second call is logged and ignored). */
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
 * a refused login holds the connection, anything else is retried. */
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

/* Whether this run may repeat an earlier one of the same event: a later
 * attempt (not counting those that ended waiting for another record, which
 * wrote nothing), or a replay. Flows look in QuickBooks before a create then. */
bool task_is_rerun(const struct task *t);

/*
 * Small named values kept with the connection (the id map, fingerprints of
 * what the gateway wrote). task_get_meta reads one now (new reference, or
 * NULL); task_put_meta writes one together with the task's outcome, in the
 * same transaction: the id map and the event's state never disagree. The
 * value is written only with a final outcome (done, skipped, dead).
 */
json_t *task_get_meta(struct task *t, const char *name);
void task_put_meta(struct task *t, const char *name, json_t *value);

/*
 * Calls to QuickBooks and Mplus on behalf of the task: as qbo_read ...
 * qbo_void and mplus_call on the task's connection, and each exchange is
 * kept in the attempt's activity log (activity.c): what was sent and what
 * came back, secrets removed, bodies capped.
 */
struct qbo_result;
typedef void (*task_qbo_cb)(const struct qbo_result *r, void *arg);
typedef void (*task_mplus_cb)(const struct mplus_result *r, void *arg);
int task_qbo_read(struct task *t, const char *entity, const char *id, task_qbo_cb cb, void *arg);
int task_qbo_query(struct task *t, const char *query, task_qbo_cb cb, void *arg);
int task_qbo_create(struct task *t, const char *entity, json_t *obj, const char *requestid,
                    task_qbo_cb cb, void *arg);
/* A create whose body is already compact JSON text (map_run_text's), which
 * it takes: freed on every path. */
int task_qbo_create_text(struct task *t, const char *entity, char *text, const char *requestid,
                         task_qbo_cb cb, void *arg);
int task_qbo_update(struct task *t, const char *entity, json_t *obj, const char *requestid,
                    task_qbo_cb cb, void *arg);
int task_qbo_void(struct task *t, const char *entity, const char *id, const char *sync_token,
                  const char *requestid, task_qbo_cb cb, void *arg);
int task_mplus_call(struct task *t, const char *op, json_t *request, task_mplus_cb cb, void *arg);

/* The activity log's redaction: a copy of v with the values of members whose
 * name looks secret (by the tables in activity.c: holding a secret part, or
 * being a secret name, in any letter case) replaced by "***". */
json_t *activity_redacted(json_t *v);
/* Whether JSON text may hold such a member: true for every text whose parse
 * activity_redacted would change (and for some others), so a body for which
 * it is false is logged as it is, without a parse. */
bool activity_may_hold_secret(const char *text, size_t len);

/* Record a step (request summary) in the event's history (at most 20). */
void task_note(struct task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- flows --------------------------------------------------------------------- */

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
    /* Whether the connection's settings turn this way of the flow on (NULL:
     * whenever the flow is). An event of a way that is off finds no flow, and
     * CDC does not ask for its entity. */
    bool (*wanted)(const struct gw_connection *c);
};

/* Whether f takes events on c: its flow is enabled and its way wanted. */
bool flow_on(const struct flow *f, const struct gw_connection *c);

/*
 * The flow for an event on its connection, or NULL when no enabled flow
 * takes it (the event is then skipped with reason "no flow"). extra, when
 * not NULL, is consulted first (an entry with a NULL name ends it).
 */
const struct flow *flow_for(json_t *rec, const struct gw_connection *conn,
                            const struct flow *extra);

/* The shipped flows (an entry with a NULL name ends the table). */
const struct flow *flow_table(void);

/* ---- steps --------------------------------------------------------------------- */

struct run;
typedef void (*step_fn)(struct run *r);

/*
 * One run of a flow: the task, the steps, and what the steps share. The
 * shared lookups read and fill the named fields; a flow keeps its own state
 * in flow (freed with flow_free when the run ends).
 */
struct run {
    struct task *t;
    const step_fn *steps; /* ends with NULL */
    size_t at;            /* the step running now */

    /* find the customer of a relation (lookup.c) */
    char relation_number[32]; /* "" for none */
    json_t *relation;         /* the Mplus relation, once known */
    bool want_customer;       /* read the mapped customer's record, not only its id */
    bool want_relation;       /* read the relation also when its customer is known */
    char customer_id[32];     /* found or created; "" until then */
    json_t *customer;         /* the QuickBooks customer, when read */
    json_t *customer_target;  /* what the mapping made of the relation */
    int renames;              /* DisplayName made unique once already */
    bool email_any_case;      /* the second e-mail query (in lower case) is running */
    bool customer_created;

    /* every article must exist as an Item (lookup.c) */
    json_t *skus;                 /* array of article numbers (strings) the document needs */
    json_t *items;                /* SKU -> {"id", "name"} once found */
    json_t *item_texts;           /* SKU -> the document's text for it (names a created Item) */
    size_t items_asked;           /* SKUs of skus asked of QuickBooks so far */
    bool items_from_article_only; /* never make an Item from a sale line (stock) */

    /* one article's Item, made or brought up to date (products.c) */
    char item_sku[32];
    json_t *article;     /* {article, product, category}: what the products mapping takes */
    json_t *item_target; /* what the mapping made of it */
    json_t *item_entry;  /* its id map entry, or NULL */
    json_t *item_now;    /* the QuickBooks Item, when read */
    char item_fp[65];    /* fingerprint of the target's fields kept up to date */
    int item_renames;    /* Name made unique once already */
    bool item_sku_asked; /* a taken Name: QuickBooks asked whether the SKU has an Item */
    bool item_written;   /* a request changed QuickBooks, or an Item got linked */
    step_fn item_then;   /* where the run goes on once r->items has item_sku */
    void (*item_skip)(struct run *r, const char *reason); /* the mapping left it out */
    step_fn index_then;  /* where the run goes on once the Items by SKU are read */
    json_t *parent_body; /* the Category of a variant's product, while it is made */

    void *flow;
    void (*flow_free)(void *flow);
    /* The state of a step another flow lends this one (stock_after_sale),
     * freed with side_free if the run ends while it runs. */
    void *side;
    void (*side_free)(void *side);
    /* A claim the run holds (lookup_claim), ended with nothing if the run ends first. */
    char claim[200];
    void (*claim_end)(struct run *r);
    /* A claim on the whole sale (lookup_hold), held beside the lookups' claims. */
    char hold[200];
    void (*hold_end)(struct run *r);
};

/*
 * A run of t over steps (a static table ending with NULL). Fill the shared
 * fields the first steps need, then run_begin. flow is the flow's own state
 * (may be NULL), taken over and freed with flow_free when the run ends.
 * Returns NULL, with the task failed for a retry, when out of memory.
 */
struct run *run_new(struct task *t, const step_fn *steps, void *flow, void (*flow_free)(void *));
void run_begin(struct run *r);

/* run_new, then run_begin: a run that needs nothing filled first. */
void run_start(struct task *t, const step_fn *steps, void *flow, void (*flow_free)(void *));

/* A flow's zeroed state of size bytes, or NULL with the task failed for a
 * retry (out of memory). */
void *run_state(struct task *t, size_t size);

/* Go on with the next step; when none is left, the task is done. */
void run_next(struct run *r);

/* End the run (and its task) with an outcome; the run is freed. */
void run_done(struct run *r);
void run_skip(struct run *r, const char *reason);
void run_fail(struct run *r, enum outcome_kind kind, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void run_fail_qbo(struct run *r, const char *what, const struct qbo_result *res);
/* End with OUTCOME_WAIT: try again after delay_ms (0: the retry policy). */
void run_wait(struct run *r, int64_t delay_ms, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void run_fail_mplus(struct run *r, const char *what, const struct mplus_result *res);

#endif
