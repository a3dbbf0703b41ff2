/*
 * map.c - jq programs, compiled once, run per event. Values cross between
 * jansson and jq value by value (a round trip through JSON text was a fifth
 * of the daemon's time for a sales document).
 */
#include "map.h"
#include "jsonout.h"
#include "util.h"

#include <jq.h>
#include <jv.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {MAP_CUSTOMERS_TO_QBO,  MAP_CUSTOMERS_TO_MPLUS,
                                    MAP_SALES_TO_QBO,      MAP_PRODUCTS_TO_QBO,
                                    MAP_PRODUCTS_TO_MPLUS, MAP_SUMMARY_TO_QBO};
#define NNAMES (sizeof names / sizeof names[0])

struct program {
    const struct gw_connection *c;
    const char *name;
    jq_state *jq;  /* its own, or the mapper's shared one */
    int in_shared; /* its function's number in the shared program; -1: its own */
    json_t *settings;
    jv settings_jv; /* the same, as jq holds it: shared by every run */
    char file[1024];
};

/*
 * Object keys as jq strings, made once: documents repeat the same few dozen
 * member names, and a key made afresh costs an allocation and a hash each
 * time. jq strings are immutable and counted, so one serves every object.
 * Direct-mapped by a hash of the text; a key that does not fit is made anew.
 */
#define KEY_SLOTS   512
#define KEY_MAX_LEN 40
struct key_slot {
    jv s;
    unsigned char len; /* 0: empty */
    char text[KEY_MAX_LEN];
};

struct mapper {
    struct program *progs;
    size_t n;
    jq_state *shared; /* every program in one, when they compile together */
    struct key_slot keys[KEY_SLOTS];
};

static jv jv_of(struct mapper *m, json_t *v);

struct errbuf {
    char *buf;
    size_t len;
};

/* jq reports compile errors through a callback; keep the first one. */
static void on_jq_error(void *data, jv msg)
{
    struct errbuf *e = data;
    jv text = jq_format_error(jv_copy(msg));
    if (e->buf[0] == '\0' && jv_get_kind(text) == JV_KIND_STRING)
        gw_strlcpy(e->buf, jv_string_value(text), e->len);
    jv_free(text);
    jv_free(msg);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        gw_errf(err, errlen, "%s: cannot read the mapping", path);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *b = realloc(buf, cap);
            if (b == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf == NULL)
        buf = calloc(1, 1);
    else
        buf[len] = '\0';
    return buf;
}

/* Compile program text with the library of dir; what for names it in an
 * error. */
static jq_state *compile_text(const char *dir, const char *what, const char *program, char *err,
                              size_t errlen)
{
    jq_state *jq = jq_init();
    if (jq == NULL) {
        gw_errf(err, errlen, "%s: out of memory", what);
        return NULL;
    }
    char msg[512] = "";
    struct errbuf eb = {msg, sizeof msg};
    jq_set_error_cb(jq, on_jq_error, &eb);
    jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array_append(jv_array(), jv_string(dir)));
    jq_set_attr(jq, jv_string("JQ_ORIGIN"), jv_string(dir));
    int ok = jq_compile(jq, program);
    jq_set_error_cb(jq, NULL, NULL);
    if (!ok) {
        gw_errf(err, errlen, "%s: %s", what, msg[0] ? msg : "does not compile");
        jq_teardown(&jq);
        return NULL;
    }
    return jq;
}

/* Compile file with the library of dir. The library is included on the
 * program's first line, so jq's line numbers are the file's. */
static jq_state *compile(const char *dir, const char *file, char *err, size_t errlen)
{
    char *text = read_file(file, err, errlen);
    if (text == NULL)
        return NULL;
    char *program = NULL;
    if (asprintf(&program, "include \"gateway\"; %s", text) < 0)
        program = NULL;
    free(text);
    jq_state *jq = program ? compile_text(dir, file, program, err, errlen) : NULL;
    if (program == NULL)
        gw_errf(err, errlen, "%s: out of memory", file);
    free(program);
    return jq;
}

/*
 * All programs as one: each file the body of a function, chosen by the
 * input's first element. jq compiles its own library of builtins with every
 * program, which costs far more than a mapping (a fifth of a second for
 * three): one compile pays it once. A file that is not a plain program
 * (one that imports a module of its own, say) makes the whole fail; then
 * each is compiled on its own, which also names the file in any error.
 */
static jq_state *compile_shared(struct mapper *m, const char *dir)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;
    fputs("include \"gateway\";\n", f);
    int nfun = 0;
    bool read = true;
    for (size_t i = 0; i < m->n && read; i++) {
        struct program *p = &m->progs[i];
        p->in_shared = -1;
        for (size_t j = 0; j < i && p->in_shared < 0; j++)
            if (strcmp(m->progs[j].file, p->file) == 0)
                p->in_shared = m->progs[j].in_shared;
        if (p->in_shared >= 0)
            continue;
        char err[16];
        char *body = read_file(p->file, err, sizeof err);
        if ((read = body != NULL) == false)
            break;
        /* In brackets, so a ';' of the file's own cannot end the function
         * (alone that is a syntax error too); the closing one on a line of
         * its own, after an empty one, so a comment on the last line
         * cannot hide it. */
        fprintf(f, "def gw__program_%d: (\n%s\n\n);\n", nfun, body);
        free(body);
        p->in_shared = nfun++;
    }
    fputs(".[0] as $gw__n | .[1] | ", f);
    for (int k = 0; k + 1 < nfun; k++)
        fprintf(f, "if $gw__n == %d then gw__program_%d else ", k, k);
    fprintf(f, "gw__program_%d", nfun - 1);
    for (int k = 1; k < nfun; k++)
        fputs(" end", f);
    bool ok = fclose(f) == 0 && read;
    char err[16];
    jq_state *jq = ok ? compile_text(dir, "", text, err, sizeof err) : NULL;
    free(text);
    for (size_t i = 0; i < m->n; i++)
        m->progs[i].in_shared = jq ? m->progs[i].in_shared : -1;
    return jq;
}

/* "NL:3, BE:4, *:NON" to {"NL":"3","BE":"4","*":"NON"}. */
static json_t *parse_table(const char *text, const char *key, char *err, size_t errlen)
{
    json_t *o = json_object();
    if (text == NULL)
        return o;
    char buf[1024];
    gw_strlcpy(buf, text, sizeof buf);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *colon = strchr(tok, ':');
        if (colon == NULL || colon == tok || colon[1] == '\0') {
            gw_errf(err, errlen, "key '%s': expected COUNTRY:VALUE pairs, got '%s'", key, tok);
            json_decref(o);
            return NULL;
        }
        *colon = '\0';
        char *v = colon + 1;
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        json_object_set_new(o, tok, json_string(v));
    }
    return o;
}

static json_t *parse_list(const char *text)
{
    json_t *a = json_array();
    if (text == NULL)
        return a;
    char buf[1024];
    gw_strlcpy(buf, text, sizeof buf);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
        json_array_append_new(a, json_string(tok));
    return a;
}

/* The settings that are tables of KEY:VALUE pairs. */
#define TABLE(field)                                                                               \
    {                                                                                              \
#field, offsetof(struct gw_connection, field)                                              \
    }
static const struct {
    const char *name;
    size_t off;
} tables[] = {
    TABLE(tax_code_by_country),
    TABLE(income_account_by_country),
    TABLE(sales_tax_codes),
    TABLE(sales_payment_methods),
    TABLE(sales_deposit_accounts),
    TABLE(sales_class_by_branch),
    TABLE(sales_terms),
    TABLE(sales_shipping_items),
    TABLE(sales_department_by_country),
    TABLE(sales_department_by_branch),
    TABLE(products_income_accounts),
    TABLE(products_expense_accounts),
    TABLE(products_asset_accounts),
    TABLE(summary_income_accounts),
};
#define NTABLES (sizeof tables / sizeof tables[0])

static const char *table_text(const struct gw_connection *c, size_t i)
{
    return *(char *const *)((const char *)c + tables[i].off);
}

json_t *map_settings(const struct gw_connection *c)
{
    char err[256];
    json_t *s = json_object();
    for (size_t i = 0; i < NTABLES; i++) {
        json_t *t = parse_table(table_text(c, i), tables[i].name, err, sizeof err);
        json_object_set_new(s, tables[i].name, t ? t : json_object());
    }
    json_object_set_new(s, "sales_default_customer", json_string(c->sales_default_customer ?: ""));
    json_object_set_new(s, "sales_split_account", json_string(c->sales_split_account ?: ""));
    json_object_set_new(s, "sales_rounding_item", json_string(c->sales_rounding_item ?: ""));
    json_object_set_new(s, "sales_order_as", json_string(c->sales_order_as ?: "invoice"));
    json_object_set_new(s, "customer_create_only", parse_list(c->customer_create_only));
    json_object_set_new(s, "relation_create_only", parse_list(c->relation_create_only));
    json_object_set_new(s, "employee_number", json_integer(c->mplus_employee_number));
    json_object_set_new(s, "default_country", json_string(c->default_country ?: ""));
    json_object_set_new(s, "products_price", json_string(c->products_price ?: "incl"));
    json_object_set_new(s, "products_variant_parent",
                        json_string(c->products_variant_parent ?: "description"));
    json_object_set_new(s, "products_track_stock", json_boolean(c->products_track_stock));
    json_object_set_new(s, "products_inventory_start",
                        json_string(c->products_inventory_start ?: ""));
    json_object_set_new(s, "products_only_active", json_boolean(c->products_only_active));
    json_object_set_new(s, "products_only_webshop", json_boolean(c->products_only_webshop));
    json_object_set_new(s, "products_groups", parse_list(c->products_groups));
    json_object_set_new(s, "products_exclude_groups", parse_list(c->products_exclude_groups));
    json_object_set_new(s, "products_turnover_groups", parse_list(c->products_turnover_groups));
    return s;
}

static int parse_table_ok(const struct gw_connection *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < NTABLES; i++) {
        json_t *t = parse_table(table_text(c, i), tables[i].name, err, errlen);
        if (t == NULL)
            return -1;
        json_decref(t);
    }
    return 0;
}

const char *map_override(const struct gw_connection *c, const char *name)
{
    if (strcmp(name, MAP_CUSTOMERS_TO_QBO) == 0)
        return c->map_customers_to_qbo;
    if (strcmp(name, MAP_CUSTOMERS_TO_MPLUS) == 0)
        return c->map_customers_to_mplus;
    if (strcmp(name, MAP_SALES_TO_QBO) == 0)
        return c->map_sales_to_qbo;
    if (strcmp(name, MAP_PRODUCTS_TO_QBO) == 0)
        return c->map_products_to_qbo;
    if (strcmp(name, MAP_PRODUCTS_TO_MPLUS) == 0)
        return c->map_products_to_mplus;
    if (strcmp(name, MAP_SUMMARY_TO_QBO) == 0)
        return c->map_summary_to_qbo;
    return NULL;
}

/* Both customer directions belong to the customers flow; the sales flow
 * finds and makes customers with them too. */
static bool uses(const struct gw_connection *c, const char *name)
{
    if (strcmp(name, MAP_SALES_TO_QBO) == 0)
        return (c->flows & GW_FLOW_SALES) != 0;
    /* The sales flow makes a missing Item from its article when products is on. */
    if (strcmp(name, MAP_PRODUCTS_TO_QBO) == 0)
        return (c->flows & GW_FLOW_PRODUCTS) != 0;
    if (strcmp(name, MAP_PRODUCTS_TO_MPLUS) == 0)
        return (c->flows & GW_FLOW_PRODUCTS) != 0 && config_products_back(c);
    if (strcmp(name, MAP_SUMMARY_TO_QBO) == 0)
        return (c->flows & GW_FLOW_SALES) != 0 && c->summary_receipts;
    return (c->flows & (GW_FLOW_CUSTOMERS | GW_FLOW_SALES)) != 0;
}

int map_open(const struct gw_config *cfg, const char *dir, struct mapper **out, char *err,
             size_t errlen)
{
    struct mapper *m = calloc(1, sizeof *m);
    if (m == NULL || (m->progs = calloc(cfg->nconns * NNAMES + 1, sizeof *m->progs)) == NULL) {
        gw_errf(err, errlen, "mappings: out of memory");
        free(m);
        return -1;
    }
    for (size_t i = 0; i < cfg->nconns; i++) {
        const struct gw_connection *c = &cfg->conns[i];
        char terr[256];
        if (parse_table_ok(c, terr, sizeof terr) != 0) {
            gw_errf(err, errlen, "[connection.%s] %s", c->name, terr);
            map_close(m);
            return -1;
        }
        for (size_t k = 0; k < NNAMES; k++) {
            if (!uses(c, names[k]))
                continue;
            struct program *p = &m->progs[m->n];
            const char *own = map_override(c, names[k]);
            if (own != NULL && own[0] != '\0')
                gw_strlcpy(p->file, own, sizeof p->file);
            else
                snprintf(p->file, sizeof p->file, "%s/%s.jq", dir, names[k]);
            p->c = c;
            p->in_shared = -1;
            p->name = names[k];
            p->settings = map_settings(c);
            p->settings_jv = jv_of(m, p->settings);
            m->n++;
        }
    }
    if (m->n > 1)
        m->shared = compile_shared(m, dir);
    for (size_t i = 0; i < m->n; i++) {
        struct program *p = &m->progs[i];
        p->jq = m->shared ? m->shared : compile(dir, p->file, err, errlen);
        if (p->jq == NULL) {
            map_close(m);
            return -1;
        }
    }
    *out = m;
    return 0;
}

void map_close(struct mapper *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        if (m->progs[i].jq != m->shared)
            jq_teardown(&m->progs[i].jq);
        json_decref(m->progs[i].settings);
        jv_free(m->progs[i].settings_jv);
    }
    jq_teardown(&m->shared);
    for (size_t i = 0; i < KEY_SLOTS; i++)
        if (m->keys[i].len != 0)
            jv_free(m->keys[i].s);
    free(m->progs);
    free(m);
}

size_t map_programs(const struct mapper *m, bool *together)
{
    *together = m->shared != NULL;
    return m->n;
}

static jv key_of(struct mapper *m, const char *k, size_t len)
{
    if (m == NULL || len == 0 || len > KEY_MAX_LEN)
        return jv_string_sized(k, (int)len);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    struct key_slot *slot = &m->keys[h % KEY_SLOTS];
    if (slot->len != len || memcmp(slot->text, k, len) != 0) {
        if (slot->len != 0)
            jv_free(slot->s);
        slot->s = jv_string_sized(k, (int)len);
        slot->len = (unsigned char)len;
        memcpy(slot->text, k, len);
    }
    return jv_copy(slot->s);
}

/* jansson to jq. jq's numbers are doubles: so are the mapper's, which is
 * why money crosses as decimal text. */
static jv jv_of(struct mapper *m, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        jv o = jv_object();
        const char *k;
        size_t klen;
        json_t *e;
        json_object_keylen_foreach(v, k, klen, e) o =
            jv_object_set(o, key_of(m, k, klen), jv_of(m, e));
        return o;
    }
    case JSON_ARRAY: {
        jv a = jv_array_sized((int)json_array_size(v));
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) a = jv_array_append(a, jv_of(m, e));
        return a;
    }
    case JSON_STRING:
        return jv_string_sized(json_string_value(v), (int)json_string_length(v));
    case JSON_INTEGER:
        return jv_number((double)json_integer_value(v));
    case JSON_REAL:
        return jv_number(json_real_value(v));
    case JSON_TRUE:
        return jv_true();
    case JSON_FALSE:
        return jv_false();
    case JSON_NULL:
        break;
    }
    return jv_null();
}

/* A whole jq number, which json_of makes an integer. */
static bool whole(double d)
{
    return d > -1e17 && d < 1e17 && d == (double)(json_int_t)d;
}

/* jq to jansson, consuming v. Members that are null, and objects left
 * empty by that, are left out (objects in arrays too, where an emptied
 * object stays {}). NULL for such a value. Whole numbers come back as integers, as they would
 * through text. */
static json_t *json_of(jv v)
{
    json_t *out = NULL;
    switch (jv_get_kind(v)) {
    case JV_KIND_OBJECT:
        out = json_object();
        for (int it = jv_object_iter(v); jv_object_iter_valid(v, it);
             it = jv_object_iter_next(v, it)) {
            jv k = jv_object_iter_key(v, it);
            json_t *m = json_of(jv_object_iter_value(v, it));
            if (m != NULL)
                json_object_set_new(out, jv_string_value(k), m);
            jv_free(k);
        }
        if (json_object_size(out) == 0) {
            json_decref(out);
            out = NULL;
        }
        break;
    case JV_KIND_ARRAY: {
        out = json_array();
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n; i++) {
            jv ev = jv_array_get(jv_copy(v), i);
            bool object = jv_get_kind(ev) == JV_KIND_OBJECT;
            json_t *e = json_of(ev);
            /* An element keeps its place: an emptied object stays {}. */
            json_array_append_new(out, e ? e : object ? json_object() : json_null());
        }
        break;
    }
    case JV_KIND_STRING:
        out = json_stringn(jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
        break;
    case JV_KIND_NUMBER: {
        double d = jv_number_value(v);
        if (whole(d))
            out = json_integer((json_int_t)d);
        else
            out = json_real(d);
        break;
    }
    case JV_KIND_TRUE:
        out = json_true();
        break;
    case JV_KIND_FALSE:
        out = json_false();
        break;
    case JV_KIND_NULL:
    case JV_KIND_INVALID:
        break;
    }
    jv_free(v);
    return out;
}

/*
 * v (consumed) as text, as gw_json_text writes what json_of makes of it:
 * false, with nothing written, for what json_of leaves out (null, a number
 * jansson cannot hold, an object left empty). One difference: two keys that
 * are the same up to a NUL ("a\u0000x", "a\u0000y") become one member in
 * json_of and stay two here.
 */
static bool put_jv(struct gw_out *o, jv v)
{
    bool wrote = true;
    switch (jv_get_kind(v)) {
    case JV_KIND_OBJECT: {
        size_t start = o->len;
        bool any = false;
        gw_out_char(o, '{');
        for (int it = jv_object_iter(v); jv_object_iter_valid(v, it);
             it = jv_object_iter_next(v, it)) {
            size_t before = o->len;
            jv k = jv_object_iter_key(v, it);
            const char *name = jv_string_value(k); /* json_of's key: up to a NUL */
            if (any)
                gw_out_char(o, ',');
            gw_out_string(o, name, strlen(name));
            gw_out_char(o, ':');
            if (put_jv(o, jv_object_iter_value(v, it)))
                any = true;
            else
                o->len = before;
            jv_free(k);
        }
        if (any)
            gw_out_char(o, '}');
        else
            o->len = start;
        wrote = any;
        break;
    }
    case JV_KIND_ARRAY: {
        gw_out_char(o, '[');
        int n = jv_array_length(jv_copy(v));
        for (int i = 0; i < n; i++) {
            if (i > 0)
                gw_out_char(o, ',');
            jv ev = jv_array_get(jv_copy(v), i);
            bool object = jv_get_kind(ev) == JV_KIND_OBJECT;
            if (!put_jv(o, ev)) /* an element keeps its place */
                gw_out_bytes(o, object ? "{}" : "null", object ? 2 : 4);
        }
        gw_out_char(o, ']');
        break;
    }
    case JV_KIND_STRING:
        gw_out_string(o, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
        break;
    case JV_KIND_NUMBER: {
        double d = jv_number_value(v);
        if (whole(d))
            gw_out_integer(o, (json_int_t)d);
        else if (isfinite(d))
            gw_out_real(o, d);
        else
            wrote = false; /* json_real takes no NaN or infinity */
        break;
    }
    case JV_KIND_TRUE:
        gw_out_bytes(o, "true", 4);
        break;
    case JV_KIND_FALSE:
        gw_out_bytes(o, "false", 5);
        break;
    case JV_KIND_NULL:
    case JV_KIND_INVALID:
        wrote = false;
        break;
    }
    jv_free(v);
    return wrote;
}

/* Where a run's result goes: a tree (json_of), or text (put_jv). */
struct result {
    json_t **tree;
    char **text;
    size_t *len;
};

/* The program's object output r (consumed) into res. */
static int take_result(jv r, const struct result *res)
{
    if (res->tree != NULL) {
        *res->tree = json_of(r);
        if (*res->tree == NULL)
            *res->tree = json_object(); /* nothing but nulls */
        return *res->tree ? 0 : -1;
    }
    struct gw_out o = {0};
    if (!put_jv(&o, r))
        gw_out_bytes(&o, "{}", 2); /* nothing but nulls */
    *res->text = gw_out_finish(&o, res->len);
    return *res->text ? 0 : -1;
}

/* Run a compiled program on input (consumed); the first output is the result. */
static int run(jq_state *jq, const char *file, jv input, const struct result *out, char *err,
               size_t errlen)
{
    jq_start(jq, input, 0);
    jv r = jq_next(jq);
    int rc = -1;
    if (jv_is_valid(r)) {
        /* Only the first output counts; run the program out so the next
         * start is clean (jq must not be asked again once it said "done"). */
        jv more;
        while (jv_is_valid(more = jq_next(jq)))
            jv_free(more);
        jv_free(more);
        if (jv_get_kind(r) == JV_KIND_OBJECT) {
            rc = take_result(r, out);
            if (rc != 0)
                gw_errf(err, errlen, "mapping %s: out of memory", file);
        } else {
            jv_free(r);
            gw_errf(err, errlen, "mapping %s: expected an object as output", file);
        }
    } else {
        jv msg = jv_invalid_get_msg(r);
        if (jv_get_kind(msg) == JV_KIND_STRING)
            gw_errf(err, errlen, "mapping %s failed: %s", file, jv_string_value(msg));
        else if (jv_get_kind(msg) == JV_KIND_NULL)
            gw_errf(err, errlen, "mapping %s produced no output", file);
        else {
            jv d = jv_dump_string(jv_copy(msg), 0);
            gw_errf(err, errlen, "mapping %s failed: %s", file, jv_string_value(d));
            jv_free(d);
        }
        jv_free(msg);
    }
    return rc;
}

static int run_mapping(struct mapper *m, const struct gw_connection *c, const char *name,
                       json_t *source, json_t *existing, const struct result *out, char *err,
                       size_t errlen)
{
    struct program *p = NULL;
    for (size_t i = 0; m && i < m->n; i++)
        if (m->progs[i].c == c && strcmp(m->progs[i].name, name) == 0)
            p = &m->progs[i];
    if (p == NULL) {
        gw_errf(err, errlen, "no mapping %s for connection %s", name, c->name);
        return -1;
    }
    jv input = jv_object();
    input = jv_object_set(input, jv_string("source"), jv_of(m, source));
    input = jv_object_set(input, jv_string("existing"), existing ? jv_of(m, existing) : jv_null());
    input = jv_object_set(input, jv_string("settings"), jv_copy(p->settings_jv));
    input = jv_object_set(input, jv_string("connection"), jv_string(c->name));
    if (p->jq == m->shared)
        input = jv_array_append(jv_array_append(jv_array(), jv_number(p->in_shared)), input);
    return run(p->jq, p->file, input, out, err, errlen);
}

int map_run(struct mapper *m, const struct gw_connection *c, const char *name, json_t *source,
            json_t *existing, json_t **out, char *err, size_t errlen)
{
    struct result res = {.tree = out};
    return run_mapping(m, c, name, source, existing, &res, err, errlen);
}

int map_run_text(struct mapper *m, const struct gw_connection *c, const char *name, json_t *source,
                 json_t *existing, char **text, size_t *len, char *err, size_t errlen)
{
    struct result res = {.text = text, .len = len};
    return run_mapping(m, c, name, source, existing, &res, err, errlen);
}

int map_preview(const char *dir, const char *file, json_t *input, json_t **out, char *err,
                size_t errlen)
{
    jq_state *jq = compile(dir, file, err, errlen);
    if (jq == NULL)
        return -1;
    struct result res = {.tree = out};
    int rc = run(jq, file, jv_of(NULL, input), &res, err, errlen);
    jq_teardown(&jq);
    return rc;
}

json_t *map_connection_settings(struct mapper *m, const struct gw_connection *c)
{
    for (size_t i = 0; m && i < m->n; i++)
        if (m->progs[i].c == c)
            return m->progs[i].settings;
    return NULL;
}

bool map_known(const char *name)
{
    for (size_t i = 0; i < NNAMES; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}
