/*
 * cli.c - commands. Every command but serve opens the store alongside a
 * running daemon (LMDB is multi-process) and reads or changes it in short
 * transactions.
 */
#include "cli.h"
#include "config.h"
#include "http.h"
#include "jsonout.h"
#include "log.h"
#include "map.h"
#include "qbo.h"
#include "replay.h"
#include "report.h"
#include "server.h"
#include "store.h"
#include "util.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_RUNTIME     1
#define EXIT_USAGE       2
#define EXIT_UNAVAILABLE 3 /* reconcile: the daemon, Mplus or QuickBooks did not answer */

static const char usage_text[] =
    "usage: gateway [-c FILE] COMMAND [OPTIONS]\n"
    "\n"
    "Config comes from -c FILE, else $GATEWAY_CONFIG, else ./gateway.ini.\n"
    "\n"
    "commands:\n"
    "  serve                       run the daemon in the foreground\n"
    "  events [--state S] [--source S] [--connection C] [--entity E] [--limit N] [--json]\n"
    "                              list events, newest first (--limit 0 = all; default 50)\n"
    "  show ID [--json]            one event in full\n"
    "  status [--json]             queue depths by state and per-connection settings\n"
    "  replay (--event ID | --dead [--since T] [--until T] [--source S] [--entity E]\n"
    "         [--connection C]) [--dry-run]\n"
    "                              re-queue events (attempts reset, history kept)\n"
    "  purge [--older-than DAYS]   drop finished events past retention\n"
    "  check-config                validate the config and the mappings; print it, secrets masked\n"
    "  tokens CONNECTION --refresh-token TOKEN\n"
    "                              import a QuickBooks refresh token for a connection\n"
    "  reconcile --connection C --from DATE --to DATE [--json]\n"
    "                              Mplus's day figures next to what QuickBooks holds, per\n"
    "                              financial day; exit 0 when every day matches to the cent,\n"
    "                              1 when one does not, 3 when the daemon could not tell\n"
    "  backfill --connection C --from DATE --to DATE [--dry-run] [--json]\n"
    "                              book what QuickBooks lacks of the Mplus documents of those\n"
    "                              financial days (as reconcile finds it); safe to rerun\n"
    "  unpost --connection C (--event ID | --from DATE --to DATE) [--dry-run] [--force]\n"
    "                              delete what the gateway booked and clear its id map, so a\n"
    "                              backfill books it again; refuses documents changed in\n"
    "                              QuickBooks since (exit 1) unless --force\n"
    "  forget --email ADDRESS [--dry-run] [--json]\n"
    "                              remove every occurrence of a person's e-mail address from the\n"
    "                              store (records, payloads, bodies, id map), then compact it\n"
    "  map --flow FLOW --input FILE [--connection C]\n"
    "                              run a mapping on a sample and print the result; FLOW is\n"
    "                              customers-to-qbo, customers-to-mplus, sales-to-qbo,\n"
    "                              products-to-qbo, products-to-mplus or summary-to-qbo\n";

static int usage(const char *msg)
{
    if (msg != NULL)
        fprintf(stderr, "gateway: %s\n\n", msg);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

static int open_store(const struct gw_config *cfg, struct store **st)
{
    char err[GW_ERR_LEN];
    if (store_open(cfg->storage_path, (size_t)cfg->map_size_mb, (size_t)cfg->map_max_mb, st, err,
                   sizeof err) < 0) {
        fprintf(stderr, "gateway: %s\n", err);
        return -1;
    }
    return 0;
}

static void print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        puts(s);
        free(s);
    }
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && v[0] ? v : "-";
}

/* Options shared by the listing commands. */
enum {
    OPT_STATE = 256,
    OPT_SOURCE,
    OPT_CONNECTION,
    OPT_ENTITY,
    OPT_LIMIT,
    OPT_JSON,
    OPT_OLDER,
    OPT_EVENT,
    OPT_DEAD,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_DRY_RUN,
    OPT_REFRESH_TOKEN,
    OPT_FLOW,
    OPT_INPUT,
    OPT_FROM,
    OPT_TO,
    OPT_FORCE,
    OPT_EMAIL,
};

static const struct option long_opts[] = {
    {"state", required_argument, NULL, OPT_STATE},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"connection", required_argument, NULL, OPT_CONNECTION},
    {"entity", required_argument, NULL, OPT_ENTITY},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"json", no_argument, NULL, OPT_JSON},
    {"older-than", required_argument, NULL, OPT_OLDER},
    {"event", required_argument, NULL, OPT_EVENT},
    {"dead", no_argument, NULL, OPT_DEAD},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"refresh-token", required_argument, NULL, OPT_REFRESH_TOKEN},
    {"flow", required_argument, NULL, OPT_FLOW},
    {"input", required_argument, NULL, OPT_INPUT},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"force", no_argument, NULL, OPT_FORCE},
    {"email", required_argument, NULL, OPT_EMAIL},
    {NULL, 0, NULL, 0},
};

struct opts {
    struct event_filter filter;
    bool json;
    long older_than;
    bool older_set;
    uint64_t event_id;
    bool dead, dry_run;
    int64_t since_ms, until_ms;
    const char *refresh_token;
    const char *flow, *input;
    const char *from, *to;
    bool force;
    const char *email;
};

/* A point in time: ISO-8601 with a zone, or a date (midnight UTC). */
static bool parse_time(const char *s, int64_t *ms)
{
    char buf[40];
    if (strlen(s) == 10) {
        snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
        s = buf;
    }
    return gw_ts_parse(s, ms);
}

/* Parse options allowed by `allowed` (a string of OPT_* codes). */
static int parse_opts(int argc, char **argv, const int *allowed, struct opts *o)
{
    o->filter = (struct event_filter){-1, NULL, NULL, NULL, 50, 0};
    o->json = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        bool ok = false;
        for (const int *a = allowed; *a; a++)
            ok |= *a == c;
        if (!ok || c == '?' || c == ':') {
            char msg[160];
            snprintf(msg, sizeof msg, "%s: unknown or incomplete option '%s'", argv[0],
                     argv[optind - 1]);
            return usage(msg);
        }
        int64_t n;
        switch (c) {
        case OPT_STATE:
            o->filter.state = event_state_parse(optarg);
            if (o->filter.state < 0)
                return usage("--state: expected pending, in_flight, retrying, done, skipped or "
                             "dead");
            break;
        case OPT_SOURCE:
            o->filter.source = optarg;
            break;
        case OPT_CONNECTION:
            o->filter.connection = optarg;
            break;
        case OPT_ENTITY:
            o->filter.entity = optarg;
            break;
        case OPT_LIMIT:
            if (!gw_strtoi64(optarg, &n) || n < 0)
                return usage("--limit: expected a whole number, 0 for all");
            o->filter.limit = (long)n;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_OLDER:
            if (!gw_strtoi64(optarg, &n) || n < 0 || n > 36500)
                return usage("--older-than: expected a number of days");
            o->older_than = (long)n;
            o->older_set = true;
            break;
        case OPT_EVENT:
            if (!gw_strtou64(optarg, &o->event_id) || o->event_id == 0)
                return usage("--event: expected an event ID");
            break;
        case OPT_DEAD:
            o->dead = true;
            break;
        case OPT_SINCE:
            if (!parse_time(optarg, &o->since_ms))
                return usage("--since: expected YYYY-MM-DD or an ISO-8601 time with a zone");
            break;
        case OPT_UNTIL:
            if (!parse_time(optarg, &o->until_ms))
                return usage("--until: expected YYYY-MM-DD or an ISO-8601 time with a zone");
            break;
        case OPT_DRY_RUN:
            o->dry_run = true;
            break;
        case OPT_REFRESH_TOKEN:
            o->refresh_token = optarg;
            break;
        case OPT_FLOW:
            o->flow = optarg;
            break;
        case OPT_INPUT:
            o->input = optarg;
            break;
        case OPT_FROM:
            o->from = optarg;
            break;
        case OPT_TO:
            o->to = optarg;
            break;
        case OPT_FORCE:
            o->force = true;
            break;
        case OPT_EMAIL:
            o->email = optarg;
            break;
        }
    }
    return 0;
}

static int cmd_events(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_STATE, OPT_SOURCE, OPT_CONNECTION, OPT_ENTITY, OPT_LIMIT,
                                  OPT_JSON,  0};
    struct opts o;
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc)
        return usage("events: unexpected argument");
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    char err[GW_ERR_LEN];
    json_t *a = report_events(st, &o.filter, err, sizeof err);
    store_close(st);
    if (a == NULL) {
        fprintf(stderr, "gateway: %s\n", err);
        return EXIT_RUNTIME;
    }
    if (o.json) {
        print_json(a);
    } else {
        printf("%-8s %-10s %-10s %-14s %-10s %-8s %-9s %-3s %-24s %s\n", "ID", "STATE", "SOURCE",
               "CONNECTION", "ENTITY", "ENT_ID", "OPERATION", "TRY", "RECEIVED", "REASON/ERROR");
        size_t i;
        json_t *e;
        json_array_foreach(a, i, e)
        {
            const char *why = str(e, "last_error");
            if (strcmp(why, "-") == 0)
                why = str(e, "reason");
            printf("%-8lld %-10s %-10s %-14s %-10s %-8s %-9s %-3lld %-24s %s\n",
                   (long long)json_integer_value(json_object_get(e, "id")), str(e, "state"),
                   str(e, "source"), str(e, "connection"), str(e, "entity"), str(e, "entity_id"),
                   str(e, "operation"),
                   (long long)json_integer_value(json_object_get(e, "attempts")),
                   str(e, "received_at"), why);
        }
    }
    json_decref(a);
    return 0;
}

static int cmd_show(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_JSON, 0};
    struct opts o;
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    uint64_t id;
    if (optind != argc - 1 || !gw_strtou64(argv[optind], &id))
        return usage("show: expected one event ID");
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    char err[GW_ERR_LEN];
    json_t *e = report_event(st, id, &rc, err, sizeof err);
    store_close(st);
    if (e == NULL) {
        fprintf(stderr, "gateway: event %llu: %s\n", (unsigned long long)id,
                rc == STORE_ENOTFOUND ? "no such event" : err);
        return EXIT_RUNTIME;
    }
    if (o.json) {
        print_json(e);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(e, k, v)
        {
            if (json_is_string(v)) {
                printf("%-14s %s\n", k, json_string_value(v));
            } else {
                char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
                printf("%-14s %s\n", k, s ? s : "");
                free(s);
            }
        }
    }
    json_decref(e);
    return 0;
}

static int cmd_status(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_JSON, 0};
    struct opts o;
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc)
        return usage("status: unexpected argument");
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    char err[GW_ERR_LEN];
    json_t *s = report_status(st, cfg, -1, err, sizeof err);
    store_close(st);
    if (s == NULL) {
        fprintf(stderr, "gateway: %s\n", err);
        return EXIT_RUNTIME;
    }
    if (o.json) {
        print_json(s);
    } else {
        printf("store: %s\n", str(s, "storage_path"));
        printf("events:");
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(s, "events"), k, v)
            printf(" %s=%lld", k, (long long)json_integer_value(v));
        printf("\n");
        if (json_integer_value(json_object_get(s, "inbox")) > 0)
            printf("inbox: %lld webhooks accepted, becoming events\n",
                   (long long)json_integer_value(json_object_get(s, "inbox")));
        if (json_object_get(s, "oldest_queued_at"))
            printf("oldest queued: %s\n", str(s, "oldest_queued_at"));
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(s, "alerts"), i, c)
        {
            const char *conn = str(c, "connection");
            printf("ALERT %s%s%s since %s: %s\n", str(c, "condition"),
                   conn && conn[0] ? " on " : "", conn ? conn : "", str(c, "since"),
                   str(c, "detail"));
        }
        json_array_foreach(json_object_get(s, "connections"), i, c)
        {
            printf("connection %s: realm %s, flows %s, mplus callbacks %s\n", str(c, "name"),
                   str(c, "realm_id"), str(c, "flows"),
                   json_is_true(json_object_get(c, "mplus_callbacks")) ? "verified" : "off");
            if (json_object_get(c, "circuit") != NULL)
                printf("  quickbooks: %s, access token until %s, circuit %s, in flight %lld\n",
                       json_is_true(json_object_get(c, "authorised")) ? "authorised"
                                                                      : "NEEDS AUTHORISATION",
                       str(c, "access_token_expires_at"), str(c, "circuit"),
                       (long long)json_integer_value(json_object_get(c, "in_flight")));
            if (json_object_get(c, "throttled_until") != NULL)
                printf("  throttled until %s\n", str(c, "throttled_until"));
            if (json_object_get(c, "mplus_login_refused_until") != NULL)
                printf("  MPLUS REFUSES THE LOGIN (mplus_ident/mplus_secret): work waits, next try "
                       "%s\n",
                       str(c, "mplus_login_refused_until"));
            if (json_object_get(c, "last_error") != NULL)
                printf("  last error: %s\n", str(c, "last_error"));
        }
    }
    json_decref(s);
    return 0;
}

static int cmd_purge(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_OLDER, 0};
    struct opts o = {0};
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc)
        return usage("purge: unexpected argument");
    long days = o.older_set ? o.older_than : cfg->retention_days;
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    char err[GW_ERR_LEN];
    struct purge_opts po = {gw_now_ms() - (int64_t)days * 86400000, cfg->keep_dead_payloads, 0, 0};
    struct purge_result res;
    rc = store_purge(st, &po, &res, err, sizeof err);
    store_close(st);
    if (rc < 0) {
        fprintf(stderr, "gateway: %s\n", err);
        return EXIT_RUNTIME;
    }
    printf("purged %llu finished events, %llu payloads and the bodies of %llu dead events older "
           "than %ld days\n",
           (unsigned long long)res.events, (unsigned long long)res.payloads,
           (unsigned long long)res.dead_stripped, days);
    return 0;
}

static int cmd_replay(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_EVENT,      OPT_DEAD,   OPT_SINCE,   OPT_UNTIL, OPT_SOURCE,
                                  OPT_CONNECTION, OPT_ENTITY, OPT_DRY_RUN, OPT_JSON,  0};
    struct opts o = {0};
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc || (o.event_id != 0) == o.dead)
        return usage("replay: give either --event ID or --dead [filters]");
    if (o.event_id != 0 &&
        (o.since_ms || o.until_ms || o.filter.source || o.filter.entity || o.filter.connection))
        return usage("replay: filters go with --dead, not with --event");
    struct replay_filter f = {o.event_id,      o.since_ms,          o.until_ms, o.filter.source,
                              o.filter.entity, o.filter.connection, o.dry_run};
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    char err[GW_ERR_LEN];
    json_t *ids;
    rc = replay_run(st, &f, &ids, err, sizeof err);
    store_close(st);
    if (rc != 0) {
        fprintf(stderr, "gateway: replay: %s\n", rc == STORE_ENOTFOUND ? "no such event" : err);
        return EXIT_RUNTIME;
    }
    if (o.json) {
        print_json(ids);
    } else {
        printf("%s %zu event%s", o.dry_run ? "would replay" : "replayed", json_array_size(ids),
               json_array_size(ids) == 1 ? "" : "s");
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v)
            printf("%s%lld", i == 0 ? ": " : " ", (long long)json_integer_value(v));
        printf("\n");
    }
    json_decref(ids);
    return 0;
}

static int cmd_tokens(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_REFRESH_TOKEN, 0};
    struct opts o = {0};
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc - 1 || o.refresh_token == NULL || o.refresh_token[0] == '\0')
        return usage("tokens: expected CONNECTION --refresh-token TOKEN");
    const struct gw_connection *c = config_connection(cfg, argv[optind]);
    if (c == NULL) {
        fprintf(stderr, "gateway: tokens: no [connection.%s] in %s\n", argv[optind], cfg->file);
        return EXIT_USAGE;
    }
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return EXIT_RUNTIME;
    /* No access token yet: the daemon refreshes with this one before its
     * first call, and stores the rotated pair. */
    json_t *t = json_pack("{s:s, s:I, s:s?, s:I, s:b}", "refresh_token", o.refresh_token,
                          "access_expires_ms", (json_int_t)0, "realm_id", c->realm_id, "updated_ms",
                          (json_int_t)gw_now_ms(), "needs_reauth", 0);
    char err[GW_ERR_LEN];
    rc = qbo_tokens_put(st, c->name, t, err, sizeof err);
    json_decref(t);
    store_close(st);
    if (rc != 0) {
        fprintf(stderr, "gateway: tokens: %s\n", err);
        return EXIT_RUNTIME;
    }
    printf("stored the refresh token for connection %s; a running gateway uses it within a "
           "second\n",
           c->name);
    return 0;
}

static int cmd_map(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_FLOW, OPT_INPUT, OPT_CONNECTION, 0};
    struct opts o = {0};
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc || o.flow == NULL || o.input == NULL)
        return usage("map: expected --flow FLOW --input FILE [--connection C]");
    if (!map_known(o.flow))
        return usage("map: --flow is customers-to-qbo, customers-to-mplus, sales-to-qbo, "
                     "products-to-qbo or summary-to-qbo");
    const struct gw_connection *c = NULL;
    if (o.filter.connection != NULL && (c = config_connection(cfg, o.filter.connection)) == NULL) {
        fprintf(stderr, "gateway: map: no [connection.%s] in %s\n", o.filter.connection, cfg->file);
        return EXIT_USAGE;
    }
    json_error_t jerr;
    json_t *sample = json_load_file(o.input, JSON_DECODE_ANY, &jerr);
    if (sample == NULL) {
        fprintf(stderr, "gateway: map: %s:%d: %s\n", o.input, jerr.line, jerr.text);
        return EXIT_USAGE;
    }
    /* A sample is the source record, or a whole {source, existing} input. */
    json_t *source = json_object_get(sample, "source") ? json_object_get(sample, "source") : sample;
    json_t *existing = json_object_get(sample, "existing");
    const char *own = c ? map_override(c, o.flow) : NULL;
    char file[1024];
    if (own != NULL && own[0] != '\0')
        snprintf(file, sizeof file, "%s", own);
    else
        snprintf(file, sizeof file, "%s/%s.jq", cfg->mapping_dir, o.flow);
    json_t *settings = c ? map_settings(c) : json_object();
    json_t *input = json_pack("{s:O, s:O, s:o, s:s}", "source", source, "existing",
                              existing ? existing : json_null(), "settings", settings, "connection",
                              c ? c->name : "");
    json_t *out = NULL;
    char err[1024];
    rc = map_preview(cfg->mapping_dir, file, input, &out, err, sizeof err);
    json_decref(input);
    json_decref(sample);
    if (rc != 0) {
        fprintf(stderr, "gateway: map: %s\n", err);
        return EXIT_RUNTIME;
    }
    print_json(out);
    json_decref(out);
    return 0;
}

struct collected {
    char *buf;
    size_t len;
    bool stream; /* lines before the report are progress */
};

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
    struct collected *b = arg;
    size_t add = size * n;
    if (b->len + add > (64u << 20))
        return 0; /* more than any report */
    char *grown = realloc(b->buf, b->len + add + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + b->len, data, add);
    b->buf = grown;
    b->len += add;
    b->buf[b->len] = '\0';
    /* A backfill's progress lines, shown as they come; its report is the last line. */
    char *nl;
    while (b->len > 0 && b->buf[0] != '{' && strncmp(b->buf, "error:", 6) != 0 &&
           (nl = memchr(b->buf, '\n', b->len)) != NULL && b->stream) {
        fprintf(stderr, "%.*s\n", (int)(nl - b->buf), b->buf);
        b->len -= (size_t)(nl + 1 - b->buf);
        memmove(b->buf, nl + 1, b->len + 1);
    }
    return add;
}

/*
 * GET path of the running daemon's admin API (admin_listen, admin_token).
 * Reconcile asks the daemon: it holds the connection's QuickBooks tokens
 * (a second process refreshing them would race it) and its rate limits.
 * The answer's status in *status, its body (new string) in *body.
 */
static int admin_call(const struct gw_config *cfg, bool post, const char *path, long *status,
                      char **body)
{
    if (cfg->admin_listen == NULL || cfg->admin_listen[0] == '\0') {
        fprintf(stderr, "gateway: this asks the running daemon, and admin_listen is not set\n");
        return -1;
    }
    struct collected b = {NULL, 0, post};
    char url[1024], auth[600];
    snprintf(url, sizeof url, "http://%s%s", cfg->admin_listen, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->admin_token ?: "");
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    CURLcode rc = CURLE_FAILED_INIT;
    if (h != NULL && hdrs != NULL) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        if (post)
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 900L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "gateway: the daemon at %s did not answer: %s (is it running?)\n",
                cfg->admin_listen, curl_easy_strerror(rc));
        free(b.buf);
        return -1;
    }
    *body = b.buf ? b.buf : strdup("");
    return 0;
}

static void print_day(json_t *day)
{
    printf("%s  %s  Mplus %s (excl %s)  QuickBooks %s (excl %s)  difference %s\n",
           json_string_value(json_object_get(day, "date")),
           json_is_true(json_object_get(day, "ok")) ? "ok      " : "MISMATCH",
           str(json_object_get(day, "mplus"), "incl"), str(json_object_get(day, "mplus"), "excl"),
           str(json_object_get(day, "quickbooks"), "incl"),
           str(json_object_get(day, "quickbooks"), "excl"),
           str(json_object_get(day, "difference"), "incl"));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(day, "difference"), "vat"), k, v)
        printf("      VAT %s%%: difference %s\n", k, json_string_value(v));
    static const char *const lists[] = {"missing", "twice", "differs", "unknown"};
    for (size_t l = 0; l < 4; l++) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(day, lists[l]), i, d)
        {
            char *s = gw_json_text(d, JSON_COMPACT, NULL);
            printf("      %-8s %s\n", lists[l], s ? s : "");
            free(s);
        }
    }
}

/*
 * A command the running daemon answers for a connection and a range of
 * financial days (reconcile, backfill, unpost; unpost also for one
 * event): options parsed into o, the report
 * into *report. 0, or the exit status.
 */
static int ask_daemon(const struct gw_config *cfg, int argc, char **argv, const int *allowed,
                      const char *api, bool post, struct opts *o, json_t **report)
{
    const char *cmd = argv[0];
    int rc = parse_opts(argc, argv, allowed, o);
    if (rc != 0)
        return rc;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: expected --connection C --from YYYY-MM-DD --to YYYY-MM-DD%s",
             cmd, strcmp(cmd, "unpost") == 0 ? " (or --event ID)" : "");
    bool one = o->event_id != 0 && o->from == NULL && o->to == NULL;
    if (optind != argc || o->filter.connection == NULL ||
        (!one && (o->from == NULL || o->to == NULL)))
        return usage(msg);
    if (config_connection(cfg, o->filter.connection) == NULL) {
        fprintf(stderr, "gateway: %s: no [connection.%s] in %s\n", cmd, o->filter.connection,
                cfg->file);
        return EXIT_USAGE;
    }
    char *c = http_escape(o->filter.connection), *f = http_escape(o->from ? o->from : ""),
         *t = http_escape(o->to ? o->to : "");
    char path[512];
    if (one)
        snprintf(path, sizeof path, "%s?connection=%s&event=%llu%s%s", api, c,
                 (unsigned long long)o->event_id, o->dry_run ? "&dry_run=1" : "",
                 o->force ? "&force=1" : "");
    else
        snprintf(path, sizeof path, "%s?connection=%s&from=%s&to=%s%s%s", api, c, f, t,
                 o->dry_run ? "&dry_run=1" : "", o->force ? "&force=1" : "");
    free(c);
    free(f);
    free(t);
    long status = 0;
    char *body = NULL;
    if (admin_call(cfg, post, path, &status, &body) != 0)
        return EXIT_UNAVAILABLE;
    *report = status == 200 ? json_loads(body, 0, NULL) : NULL;
    if (*report == NULL) {
        fprintf(stderr, "gateway: %s: %s", cmd, body);
        free(body);
        return status == 400 || status == 404 ? EXIT_USAGE : EXIT_UNAVAILABLE;
    }
    free(body);
    return 0;
}

static int cmd_reconcile(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_CONNECTION, OPT_FROM, OPT_TO, OPT_JSON, 0};
    struct opts o = {0};
    json_t *report = NULL;
    int rc = ask_daemon(cfg, argc, argv, allowed, "/api/reconcile", false, &o, &report);
    if (rc != 0)
        return rc;
    bool ok = json_is_true(json_object_get(report, "ok"));
    if (o.json) {
        print_json(report);
    } else {
        size_t i;
        json_t *day;
        json_array_foreach(json_object_get(report, "days"), i, day) print_day(day);
        printf("%s: %s from %s to %s\n", o.filter.connection,
               ok ? "every day matches" : "days do not match", o.from, o.to);
    }
    json_decref(report);
    return ok ? 0 : EXIT_RUNTIME;
}

static int cmd_backfill(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_CONNECTION, OPT_FROM, OPT_TO, OPT_DRY_RUN, OPT_JSON, 0};
    struct opts o = {0};
    json_t *report = NULL;
    int rc = ask_daemon(cfg, argc, argv, allowed, "/api/backfill", true, &o, &report);
    if (rc != 0)
        return rc;
    if (o.json) {
        print_json(report);
    } else {
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(report, "missing"), i, m)
            printf("%s %s %s %s\n", o.dry_run ? "would book" : "queued", str(m, "kind"),
                   str(m, "id"), str(m, "number"));
        printf("%s: %lld documents from %s to %s, %zu missing in QuickBooks, %lld events queued\n",
               o.filter.connection,
               (long long)json_integer_value(json_object_get(report, "documents")), o.from, o.to,
               json_array_size(json_object_get(report, "missing")),
               (long long)json_integer_value(json_object_get(report, "queued")));
    }
    json_decref(report);
    return 0;
}

static int cmd_unpost(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_CONNECTION, OPT_FROM,  OPT_TO,   OPT_EVENT,
                                  OPT_DRY_RUN,    OPT_FORCE, OPT_JSON, 0};
    struct opts o = {0};
    json_t *report = NULL;
    int rc = ask_daemon(cfg, argc, argv, allowed, "/api/unpost", true, &o, &report);
    if (rc != 0)
        return rc;
    json_t *refused = json_object_get(report, "refused");
    if (o.json) {
        print_json(report);
    } else {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(report, "unposted"), i, d)
            printf("%s %s %s\n", o.dry_run ? "would unpost" : "unposted", str(d, "quickbooks"),
                   str(d, "doc_number"));
        json_array_foreach(refused, i, d) printf("refused %s %s: %s\n", str(d, "quickbooks"),
                                                 str(d, "doc_number"), str(d, "reason"));
    }
    bool all = json_array_size(refused) == 0;
    json_decref(report);
    return all ? 0 : EXIT_RUNTIME;
}

struct forget_arg {
    const char *address;
    bool dry_run;
    struct forget_result res;
};

static int forget_fn(struct store_txn *t, void *arg)
{
    struct forget_arg *a = arg;
    return store_txn_forget(t, a->address, a->dry_run, &a->res);
}

/* Without a running daemon: in the store directly. */
static json_t *forget_here(const struct gw_config *cfg, const char *address, bool dry_run)
{
    struct store *st;
    if (open_store(cfg, &st) < 0)
        return NULL;
    char err[GW_ERR_LEN];
    struct forget_arg a = {address, dry_run, {0}};
    bool ok = store_write(st, forget_fn, &a, err, sizeof err) == 0;
    bool compacted = ok && !dry_run && store_compact(st, err, sizeof err) == 0;
    store_close(st);
    if (!ok) {
        fprintf(stderr, "gateway: forget: %s\n", err);
        return NULL;
    }
    json_t *o = json_pack("{s:b, s:{s:I, s:I, s:I}, s:b}", "dry_run", dry_run, "found", "events",
                          (json_int_t)a.res.events, "payloads", (json_int_t)a.res.payloads, "meta",
                          (json_int_t)a.res.meta, "compacted", compacted);
    if (!dry_run && !compacted)
        json_object_set_new(o, "error", json_string(err));
    return o;
}

static int cmd_forget(const struct gw_config *cfg, int argc, char **argv)
{
    static const int allowed[] = {OPT_EMAIL, OPT_DRY_RUN, OPT_JSON, 0};
    struct opts o = {0};
    int rc = parse_opts(argc, argv, allowed, &o);
    if (rc != 0)
        return rc;
    if (optind != argc || o.email == NULL || strchr(o.email, '@') == NULL)
        return usage("forget: expected --email ADDRESS [--dry-run]");
    json_t *report = NULL;
    long status = 0;
    char *body = NULL;
    char *e = http_escape(o.email), path[1200];
    snprintf(path, sizeof path, "/api/forget?email=%s%s", e ? e : "",
             o.dry_run ? "&dry_run=1" : "");
    free(e);
    if (cfg->admin_listen && cfg->admin_listen[0] &&
        admin_call(cfg, true, path, &status, &body) == 0) {
        report = status == 200 ? json_loads(body, 0, NULL) : NULL;
        if (report == NULL)
            fprintf(stderr, "gateway: forget: %s", body);
        free(body);
    } else {
        fprintf(stderr, "gateway: forget: in the store directly\n");
        report = forget_here(cfg, o.email, o.dry_run);
    }
    if (report == NULL)
        return EXIT_RUNTIME;
    json_t *found = json_object_get(report, "found");
    if (o.json) {
        print_json(report);
    } else {
        printf("%s %s in %lld event records, %lld payloads and %lld id map and other values%s\n",
               o.dry_run ? "found" : "forgot", o.email,
               (long long)json_integer_value(json_object_get(found, "events")),
               (long long)json_integer_value(json_object_get(found, "payloads")),
               (long long)json_integer_value(json_object_get(found, "meta")),
               json_is_true(json_object_get(report, "compacted")) ? "; the store is compacted"
                                                                  : "");
    }
    bool ok = o.dry_run || json_is_true(json_object_get(report, "compacted"));
    json_decref(report);
    return ok ? 0 : EXIT_RUNTIME;
}

static const struct flow *extra_flows;

void cli_set_extra_flows(const struct flow *flows)
{
    extra_flows = flows;
}

int cli_main(int argc, char **argv)
{
    const char *file = NULL;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            file = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            return usage("unknown option before the command");
        }
    }
    if (i >= argc)
        return usage("no command given");
    if (file == NULL)
        file = getenv("GATEWAY_CONFIG");
    if (file == NULL || file[0] == '\0')
        file = "gateway.ini";
    const char *cmd = argv[i];
    int cargc = argc - i;
    char **cargv = argv + i;

    static const char *const known[] = {"serve",    "events",       "show",   "status", "purge",
                                        "replay",   "check-config", "tokens", "map",    "reconcile",
                                        "backfill", "unpost",       "forget"};
    bool ok = false;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        ok |= strcmp(cmd, known[k]) == 0;
    if (!ok) {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown command '%.40s'", cmd);
        return usage(msg);
    }

    /* The store and anything written next to it are for the service user only. */
    umask(077);
    struct gw_config *cfg;
    char err[512];
    if (config_load(file, &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "gateway: %s\n", err);
        return EXIT_USAGE;
    }
    gw_log_set_level(gw_log_level_parse(cfg->log_level));

    int rc;
    if (strcmp(cmd, "check-config") == 0) {
        if (cargc != 1) {
            rc = usage("check-config takes no arguments");
        } else {
            /* What serve would refuse at its start is refused here too: the
             * mappings compile and the per-country tables parse. */
            struct mapper *m = NULL;
            char merr[1024];
            if (map_open(cfg, cfg->mapping_dir, &m, merr, sizeof merr) != 0) {
                fprintf(stderr, "gateway: %s\n", merr);
                rc = EXIT_USAGE;
            } else {
                config_print(cfg, stdout);
                rc = 0;
            }
            map_close(m);
        }
    } else if (strcmp(cmd, "serve") == 0) {
        struct store *st;
        if (cargc != 1) {
            rc = usage("serve takes no arguments");
        } else if (open_store(cfg, &st) < 0) {
            rc = EXIT_RUNTIME;
        } else {
            int srv = server_run(cfg, st, extra_flows);
            rc = srv == 0 ? 0 : srv == -2 ? EXIT_USAGE : EXIT_RUNTIME;
            store_close(st);
        }
    } else if (strcmp(cmd, "events") == 0) {
        rc = cmd_events(cfg, cargc, cargv);
    } else if (strcmp(cmd, "show") == 0) {
        rc = cmd_show(cfg, cargc, cargv);
    } else if (strcmp(cmd, "status") == 0) {
        rc = cmd_status(cfg, cargc, cargv);
    } else if (strcmp(cmd, "replay") == 0) {
        rc = cmd_replay(cfg, cargc, cargv);
    } else if (strcmp(cmd, "tokens") == 0) {
        rc = cmd_tokens(cfg, cargc, cargv);
    } else if (strcmp(cmd, "map") == 0) {
        rc = cmd_map(cfg, cargc, cargv);
    } else if (strcmp(cmd, "reconcile") == 0) {
        rc = cmd_reconcile(cfg, cargc, cargv);
    } else if (strcmp(cmd, "backfill") == 0) {
        rc = cmd_backfill(cfg, cargc, cargv);
    } else if (strcmp(cmd, "unpost") == 0) {
        rc = cmd_unpost(cfg, cargc, cargv);
    } else if (strcmp(cmd, "forget") == 0) {
        rc = cmd_forget(cfg, cargc, cargv);
    } else {
        rc = cmd_purge(cfg, cargc, cargv);
    }
    config_free(cfg);
    return rc;
}
