/*
 * config.c - gateway.ini reader. The key tables below are the single source of
 * names, types, defaults and secrecy; parsing, defaults and check-config output
 * all walk them.
 */
#include "config.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum key_type { K_STR, K_INT, K_BOOL, K_ENUM_ENCODING, K_FLOWS };

struct key_def {
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def; /* default as text; NULL = empty/unset */
    bool secret;
    long min, max; /* K_INT bounds */
};

#define S(f) offsetof(struct gw_config, f)
#define C(f) offsetof(struct gw_connection, f)
#define LMAX 2147483647L

static const struct key_def server_keys[] = {
    {"listen", K_STR, S(listen), "127.0.0.1:8080", false, 0, 0},
    {"admin_listen", K_STR, S(admin_listen), "127.0.0.1:8081", false, 0, 0},
    {"admin_token", K_STR, S(admin_token), NULL, true, 0, 0},
    {"max_body_bytes", K_INT, S(max_body_bytes), "1048576", false, 1024, 64L << 20},
    {"max_header_bytes", K_INT, S(max_header_bytes), "16384", false, 1024, 1L << 20},
    {"timeout_s", K_INT, S(timeout_s), "30", false, 1, 3600},
    {"trusted_proxies", K_STR, S(trusted_proxies), "127.0.0.1", false, 0, 0},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def storage_keys[] = {
    {"path", K_STR, S(storage_path), "var/gateway", false, 0, 0},
    {"map_size_mb", K_INT, S(map_size_mb), "1024", false, 1, 1L << 20},
    {"map_max_mb", K_INT, S(map_max_mb), "16384", false, 1, 1L << 22},
    {"retention_days", K_INT, S(retention_days), "30", false, 1, 36500},
    {"retention_s", K_INT, S(retention_s), "0", false, 0, 36500L * 86400},
    {"keep_dead_payloads", K_BOOL, S(keep_dead_payloads), "false", false, 0, 0},
    {"janitor_interval_s", K_INT, S(janitor_interval_s), "600", false, 1, 86400},
    {"activity_body_max", K_INT, S(activity_body_max), "2048", false, 64, 1 << 20},
    {"commit_batch", K_INT, S(commit_batch), "512", false, 1, 65536},
    {"index_inline_max", K_INT, S(index_inline_max), "4", false, 0, 65536},
    {"inbox_quiet_ms", K_INT, S(inbox_quiet_ms), "10", false, 1, 3600000},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def quickbooks_keys[] = {
    {"client_id", K_STR, S(client_id), NULL, true, 0, 0},
    {"client_secret", K_STR, S(client_secret), NULL, true, 0, 0},
    {"verifier_token", K_STR, S(verifier_token), NULL, true, 0, 0},
    {"redirect_url", K_STR, S(redirect_url), NULL, false, 0, 0},
    {"api_base", K_STR, S(api_base), "https://quickbooks.api.intuit.com", false, 0, 0},
    {"oauth_token_url", K_STR, S(oauth_token_url),
     "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer", false, 0, 0},
    {"oauth_authorize_url", K_STR, S(oauth_authorize_url),
     "https://appcenter.intuit.com/connect/oauth2", false, 0, 0},
    {"rate_per_sec", K_INT, S(qbo_rate_per_sec), "8", false, 1, 10000},
    {"rate_per_min", K_INT, S(qbo_rate_per_min), "450", false, 1, 600000},
    {"max_concurrent", K_INT, S(qbo_max_concurrent), "8", false, 1, 1000},
    {"batch_items", K_INT, S(qbo_batch_items), "30", false, 1, 30},
    {"batch_per_min", K_INT, S(qbo_batch_per_min), "35", false, 1, 600000},
    {"timeout_s", K_INT, S(qbo_timeout_s), "60", false, 1, 600},
    {"cdc_interval_s", K_INT, S(cdc_interval_s), "86400", false, 0, 2592000},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def dispatch_keys[] = {
    {"enabled", K_BOOL, S(dispatch_enabled), "true", false, 0, 0},
    {"max_in_flight", K_INT, S(max_in_flight), "64", false, 1, 100000},
    {"max_in_flight_per_connection", K_INT, S(max_in_flight_per_connection), "32", false, 1,
     100000},
    {"retry_first_s", K_INT, S(retry_first_s), "10", false, 1, 86400},
    {"retry_max_s", K_INT, S(retry_max_s), "3600", false, 1, 604800},
    {"retry_give_up_s", K_INT, S(retry_give_up_s), "86400", false, 0, 31536000},
    {"circuit_failures", K_INT, S(circuit_failures), "5", false, 1, 100000},
    {"circuit_open_s", K_INT, S(circuit_open_s), "30", false, 1, 86400},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def mapping_keys[] = {
    {"dir", K_STR, S(mapping_dir), GW_MAPPING_DIR, false, 0, 0},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def alerts_keys[] = {
    {"webhook_url", K_STR, S(alert_url), NULL, false, 0, 0},
    {"secret", K_STR, S(alert_secret), NULL, true, 0, 0},
    {"period_s", K_INT, S(alert_period_s), "3600", false, 1, 7 * 86400},
    {"oldest_pending_s", K_INT, S(alert_oldest_pending_s), "900", false, 0, 30 * 86400},
    {"timeout_s", K_INT, S(alert_timeout_s), "10", false, 1, 300},
    {"retry_first_s", K_INT, S(alert_retry_first_s), "5", false, 1, 3600},
    {"store_full_pct", K_INT, S(alert_store_full_pct), "90", false, 1, 100},
    {"inbox_stall_s", K_INT, S(alert_inbox_stall_s), "120", false, 1, 86400},
    {"dashboard_url", K_STR, S(alert_dashboard_url), NULL, false, 0, 0},
    {"retry_max_s", K_INT, S(alert_retry_max_s), "300", false, 1, 86400},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def log_keys[] = {
    {"level", K_STR, S(log_level), "info", false, 0, 0},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct key_def connection_keys[] = {
    {"realm_id", K_STR, C(realm_id), NULL, false, 0, 0},
    {"mplus_url", K_STR, C(mplus_url), NULL, false, 0, 0},
    {"mplus_ident", K_STR, C(mplus_ident), NULL, true, 0, 0},
    {"mplus_secret", K_STR, C(mplus_secret), NULL, true, 0, 0},
    {"mplus_webhook_secret", K_STR, C(mplus_webhook_secret), NULL, true, 0, 0},
    {"mplus_webhook_secret_encoding", K_ENUM_ENCODING, C(mplus_webhook_secret_encoding), "raw",
     false, 0, 0},
    {"mplus_subscription_id", K_STR, C(mplus_subscription_id), NULL, false, 0, 0},
    {"mplus_poll_interval_s", K_INT, C(mplus_poll_interval_s), "60", false, 1, 86400},
    {"mplus_page_size", K_INT, C(mplus_page_size), "500", false, 1, 10000},
    {"mplus_document_page_size", K_INT, C(mplus_document_page_size), "100", false, 1, 10000},
    {"mplus_stock_branch", K_INT, C(mplus_stock_branch), "1", false, 0, 1000000},
    {"mplus_backfill", K_BOOL, C(mplus_backfill), "false", false, 0, 0},
    {"customers_direction", K_STR, C(customers_direction), "both", false, 0, 0},
    {"map_customers_to_qbo", K_STR, C(map_customers_to_qbo), NULL, false, 0, 0},
    {"map_customers_to_mplus", K_STR, C(map_customers_to_mplus), NULL, false, 0, 0},
    {"tax_code_by_country", K_STR, C(tax_code_by_country), NULL, false, 0, 0},
    {"income_account_by_country", K_STR, C(income_account_by_country), NULL, false, 0, 0},
    {"customer_create_only", K_STR, C(customer_create_only), NULL, false, 0, 0},
    {"relation_create_only", K_STR, C(relation_create_only), NULL, false, 0, 0},
    {"mplus_employee_number", K_INT, C(mplus_employee_number), "999999", false, 1, 2147483647},
    {"default_country", K_STR, C(default_country), NULL, false, 0, 0},
    {"flows", K_FLOWS, C(flows_text), "", false, 0, 0},
    {"sales_documents", K_STR, C(sales_documents), "receipts, invoices, orders", false, 0, 0},
    {"sales_order_as", K_STR, C(sales_order_as), "invoice", false, 0, 0},
    {"sales_order_state", K_STR, C(sales_order_state), "complete", false, 0, 0},
    {"sales_default_customer", K_STR, C(sales_default_customer), "Till sales", false, 0, 0},
    {"sales_tax_codes", K_STR, C(sales_tax_codes), NULL, false, 0, 0},
    {"sales_payment_methods", K_STR, C(sales_payment_methods), NULL, false, 0, 0},
    {"sales_deposit_accounts", K_STR, C(sales_deposit_accounts), NULL, false, 0, 0},
    {"sales_split_account", K_STR, C(sales_split_account), NULL, false, 0, 0},
    {"sales_rounding_item", K_STR, C(sales_rounding_item), NULL, false, 0, 0},
    {"sales_rounding_max_cents", K_INT, C(sales_rounding_max_cents), "2", false, 0, 100000},
    {"sales_rounding_tax_code", K_STR, C(sales_rounding_tax_code), NULL, false, 0, 0},
    {"sales_split_payments", K_STR, C(sales_split_payments), "invoice", false, 0, 0},
    {"sales_order_invoices", K_STR, C(sales_order_invoices), "each", false, 0, 0},
    {"sales_shipping_items", K_STR, C(sales_shipping_items), NULL, false, 0, 0},
    {"sales_shipping_articles", K_STR, C(sales_shipping_articles), NULL, false, 0, 0},
    {"sales_department_by_country", K_STR, C(sales_department_by_country), NULL, false, 0, 0},
    {"sales_department_by_branch", K_STR, C(sales_department_by_branch), NULL, false, 0, 0},
    {"sales_create_items", K_BOOL, C(sales_create_items), "false", false, 0, 0},
    {"sales_item_income_account", K_STR, C(sales_item_income_account), NULL, false, 0, 0},
    {"sales_zero_lines", K_STR, C(sales_zero_lines), "drop", false, 0, 0},
    {"sales_class_by_branch", K_STR, C(sales_class_by_branch), NULL, false, 0, 0},
    {"sales_terms", K_STR, C(sales_terms), NULL, false, 0, 0},
    {"map_sales_to_qbo", K_STR, C(map_sales_to_qbo), NULL, false, 0, 0},
    {"closed_period", K_STR, C(closed_period), "dead", false, 0, 0},
    {"sales_mode", K_STR, C(sales_mode), "documents", false, 0, 0},
    {"sales_mode_since", K_STR, C(sales_mode_since), NULL, false, 0, 0},
    {"summary_income_accounts", K_STR, C(summary_income_accounts), NULL, false, 0, 0},
    {"summary_tax_account", K_STR, C(summary_tax_account), NULL, false, 0, 0},
    {"summary_rounding_account", K_STR, C(summary_rounding_account), NULL, false, 0, 0},
    {"summary_rounding_max_cents", K_INT, C(summary_rounding_max_cents), "100", false, 0, 1000000},
    {"summary_book_at", K_STR, C(summary_book_at), "06:00", false, 0, 0},
    {"summary_recheck_days", K_INT, C(summary_recheck_days), "7", false, 1, 366},
    {"map_summary_to_qbo", K_STR, C(map_summary_to_qbo), NULL, false, 0, 0},
    {"products_update_existing", K_BOOL, C(products_update_existing), "true", false, 0, 0},
    {"products_create_only", K_STR, C(products_create_only), NULL, false, 0, 0},
    {"products_price", K_STR, C(products_price), "incl", false, 0, 0},
    {"products_track_stock", K_BOOL, C(products_track_stock), "false", false, 0, 0},
    {"products_inventory_start", K_STR, C(products_inventory_start), NULL, false, 0, 0},
    {"products_income_accounts", K_STR, C(products_income_accounts), NULL, false, 0, 0},
    {"products_expense_accounts", K_STR, C(products_expense_accounts), NULL, false, 0, 0},
    {"products_asset_accounts", K_STR, C(products_asset_accounts), NULL, false, 0, 0},
    {"products_categories", K_BOOL, C(products_categories), "true", false, 0, 0},
    {"products_variant_parent", K_STR, C(products_variant_parent), "description", false, 0, 0},
    {"products_only_active", K_BOOL, C(products_only_active), "false", false, 0, 0},
    {"products_only_webshop", K_BOOL, C(products_only_webshop), "false", false, 0, 0},
    {"products_groups", K_STR, C(products_groups), NULL, false, 0, 0},
    {"products_exclude_groups", K_STR, C(products_exclude_groups), NULL, false, 0, 0},
    {"products_turnover_groups", K_STR, C(products_turnover_groups), NULL, false, 0, 0},
    {"map_products_to_qbo", K_STR, C(map_products_to_qbo), NULL, false, 0, 0},
    {"products_direction", K_STR, C(products_direction), "to_qbo", false, 0, 0},
    {"map_products_to_mplus", K_STR, C(map_products_to_mplus), NULL, false, 0, 0},
    {"stock_amount", K_STR, C(stock_amount), "free", false, 0, 0},
    {"stock_branches", K_STR, C(stock_branches), NULL, false, 0, 0},
    {NULL, 0, 0, NULL, false, 0, 0},
};

static const struct {
    const char *name;
    const struct key_def *keys;
} sections[] = {
    {"server", server_keys},     {"storage", storage_keys}, {"quickbooks", quickbooks_keys},
    {"dispatch", dispatch_keys}, {"mapping", mapping_keys}, {"log", log_keys},
    {"alerts", alerts_keys},
};

static const struct {
    const char *name;
    unsigned bit;
} flow_names[] = {
    {"sales", GW_FLOW_SALES},
    {"customers", GW_FLOW_CUSTOMERS},
    {"products", GW_FLOW_PRODUCTS},
    {"stock", GW_FLOW_STOCK},
};

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Replace ${NAME} with the environment's NAME. New string, or NULL with err. */
static char *expand_env(const char *v, const char *file, int line, const char *key, char *err,
                        size_t errlen)
{
    size_t cap = strlen(v) + 1, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    for (const char *p = v; *p;) {
        const char *add = p;
        size_t addlen = 1;
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            if (end == NULL) {
                gw_errf(err, errlen, "%s:%d: key '%s': unterminated ${...} reference", file, line,
                        key);
                free(out);
                return NULL;
            }
            char name[128];
            size_t n = (size_t)(end - (p + 2));
            if (n == 0 || n >= sizeof name) {
                gw_errf(err, errlen, "%s:%d: key '%s': bad environment variable name", file, line,
                        key);
                free(out);
                return NULL;
            }
            memcpy(name, p + 2, n);
            name[n] = '\0';
            const char *val = getenv(name);
            if (val == NULL) {
                gw_errf(err, errlen,
                        "%s:%d: key '%s': environment variable %s is not set (set it, or put "
                        "the value in the file)",
                        file, line, key, name);
                free(out);
                return NULL;
            }
            add = val;
            addlen = strlen(val);
            p = end + 1;
        } else {
            p++;
        }
        if (len + addlen + 1 > cap) {
            cap = (len + addlen + 1) * 2;
            char *n = realloc(out, cap);
            if (n == NULL) {
                free(out);
                return NULL;
            }
            out = n;
        }
        memcpy(out + len, add, addlen);
        len += addlen;
    }
    out[len] = '\0';
    return out;
}

static int parse_flows(const char *text, unsigned *bits, char *bad, size_t badlen)
{
    *bits = 0;
    char buf[256];
    if (!gw_strlcpy(buf, text, sizeof buf)) {
        gw_strlcpy(bad, "(too long)", badlen);
        return -1;
    }
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        bool found = false;
        for (size_t i = 0; i < sizeof flow_names / sizeof flow_names[0]; i++) {
            if (strcmp(tok, flow_names[i].name) == 0) {
                *bits |= flow_names[i].bit;
                found = true;
            }
        }
        if (!found) {
            gw_strlcpy(bad, tok, badlen);
            return -1;
        }
    }
    return 0;
}

/* Store one value into the struct at base per def. */
static int set_value(void *base, const struct key_def *d, const char *v, const char *file, int line,
                     char *err, size_t errlen)
{
    char *field = (char *)base + d->offset;
    switch (d->type) {
    case K_STR:
    case K_FLOWS: {
        char **dst = (char **)field;
        free(*dst);
        *dst = strdup(v);
        if (*dst == NULL)
            return -1;
        if (d->type == K_FLOWS) {
            unsigned bits;
            char bad[64];
            if (parse_flows(v, &bits, bad, sizeof bad) < 0) {
                gw_errf(err, errlen,
                        "%s:%d: key '%s': unknown flow '%s' (expected sales, customers, "
                        "products, stock)",
                        file, line, d->name, bad);
                return -1;
            }
            ((struct gw_connection *)base)->flows = bits;
        }
        return 0;
    }
    case K_INT: {
        int64_t n;
        if (!gw_strtoi64(v, &n) || n < d->min || n > d->max) {
            gw_errf(err, errlen,
                    "%s:%d: key '%s': expected a whole number from %ld to %ld, got '%s'", file,
                    line, d->name, d->min, d->max, v);
            return -1;
        }
        *(long *)field = (long)n;
        return 0;
    }
    case K_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
            strcmp(v, "1") == 0) {
            *(bool *)field = true;
        } else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 || strcmp(v, "off") == 0 ||
                   strcmp(v, "0") == 0) {
            *(bool *)field = false;
        } else {
            gw_errf(err, errlen, "%s:%d: key '%s': expected true or false, got '%s'", file, line,
                    d->name, v);
            return -1;
        }
        return 0;
    case K_ENUM_ENCODING:
        if (strcmp(v, "raw") == 0) {
            *(int *)field = GW_SECRET_RAW;
        } else if (strcmp(v, "base64") == 0) {
            *(int *)field = GW_SECRET_BASE64;
        } else {
            gw_errf(err, errlen, "%s:%d: key '%s': expected raw or base64, got '%s'", file, line,
                    d->name, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int apply_defaults(void *base, const struct key_def *keys, const char *file, char *err,
                          size_t errlen)
{
    for (const struct key_def *d = keys; d->name; d++) {
        if (d->def == NULL)
            continue;
        if (set_value(base, d, d->def, file, 0, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static const struct key_def *find_key(const struct key_def *keys, const char *name)
{
    for (const struct key_def *d = keys; d->name; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void free_fields(void *base, const struct key_def *keys)
{
    for (const struct key_def *d = keys; d->name; d++) {
        if (d->type == K_STR || d->type == K_FLOWS) {
            char **p = (char **)((char *)base + d->offset);
            free(*p);
            *p = NULL;
        }
    }
}

void config_free(struct gw_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        free_fields(cfg, sections[i].keys);
    for (size_t i = 0; i < cfg->nconns; i++) {
        free_fields(&cfg->conns[i], connection_keys);
        free(cfg->conns[i].name);
        free(cfg->conns[i].mplus_webhook_key);
    }
    free(cfg->conns);
    free(cfg->trusted);
    free(cfg->file);
    free(cfg);
}

static bool valid_conn_name(const char *s)
{
    if (*s == '\0' || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

bool config_products_back(const struct gw_connection *c)
{
    return strcmp(c->products_direction, "both") == 0;
}

int config_parse_addr(const char *s, char *host, size_t hostlen, unsigned short *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        size_t n = (size_t)(rb - s - 1);
        if (n == 0 || n >= hostlen)
            return -1;
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        size_t n = (size_t)(colon - s);
        if (n == 0 || n >= hostlen)
            return -1;
        memcpy(host, s, n);
        host[n] = '\0';
    }
    uint64_t p;
    if (!gw_strtou64(colon + 1, &p) || p > 65535)
        return -1;
    *port = (unsigned short)p;
    return 0;
}

/* Every word of a list must be a whole number (group, branch numbers). */
static int check_numbers(const struct gw_config *cfg, const struct gw_connection *c,
                         const char *key, const char *value, char *err, size_t errlen)
{
    char buf[1024];
    if (value == NULL)
        return 0;
    gw_strlcpy(buf, value, sizeof buf);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        int64_t n;
        if (!gw_strtoi64(t, &n) || n < 0) {
            gw_errf(err, errlen,
                    "%s: key '%s' in [connection.%s]: expected numbers separated by commas, "
                    "got '%s'",
                    cfg->file, key, c->name, t);
            return -1;
        }
    }
    return 0;
}

/*
 * sales_mode: "documents", "daily_summary", or per kind "receipts:daily_summary,
 * invoices:documents". A bare mode is the receipts'. Only till receipts can go
 * into the daily summary; with it, sales_mode_since names its first day, and
 * orders cannot be booked too (a receipt made of an order is in the day's
 * figures, and its order would book the sale a second time).
 */
static int check_sales_mode(const struct gw_config *cfg, struct gw_connection *c, char *err,
                            size_t errlen)
{
    char buf[512];
    gw_strlcpy(buf, c->sales_mode ? c->sales_mode : "", sizeof buf);
    c->summary_receipts = false;
    char *save = NULL;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        char *colon = strchr(t, ':');
        const char *kind = colon ? t : "receipts";
        const char *mode = colon ? colon + 1 : t;
        if (colon)
            *colon = '\0';
        bool summary = strcmp(mode, "daily_summary") == 0;
        if (!summary && strcmp(mode, "documents") != 0) {
            gw_errf(err, errlen,
                    "%s: key 'sales_mode' in [connection.%s]: expected documents or daily_summary, "
                    "got '%s'",
                    cfg->file, c->name, mode);
            return -1;
        }
        if (strcmp(kind, "receipts") == 0) {
            c->summary_receipts = summary;
        } else if (strcmp(kind, "invoices") != 0 && strcmp(kind, "orders") != 0) {
            gw_errf(
                err, errlen,
                "%s: key 'sales_mode' in [connection.%s]: expected receipts, invoices or orders "
                "before ':', got '%s'",
                cfg->file, c->name, kind);
            return -1;
        } else if (summary) {
            gw_errf(err, errlen,
                    "%s: key 'sales_mode' in [connection.%s]: only receipts go into the daily "
                    "summary; %s carry a customer and are booked per document",
                    cfg->file, c->name, kind);
            return -1;
        }
    }
    if (!c->summary_receipts)
        return 0;
    if (gw_day_parse(c->sales_mode_since) < 0) {
        gw_errf(err, errlen,
                "%s: key 'sales_mode_since' in [connection.%s]: the daily summary needs its first "
                "financial day as YYYY-MM-DD (receipts before it are booked per document)",
                cfg->file, c->name);
        return -1;
    }
    if (c->sales_kinds & GW_SALES_ORDERS) {
        gw_errf(err, errlen,
                "%s: key 'sales_mode' in [connection.%s]: with receipts in the daily summary, "
                "leave orders out of sales_documents (a receipt made of an order is in the day's "
                "figures, and its order would book the sale again)",
                cfg->file, c->name);
        return -1;
    }
    int hh, mm;
    char tail;
    if (sscanf(c->summary_book_at, "%2d:%2d%c", &hh, &mm, &tail) != 2 || hh < 0 || hh > 23 ||
        mm < 0 || mm > 59) {
        gw_errf(err, errlen,
                "%s: key 'summary_book_at' in [connection.%s]: expected HH:MM, got '%s'", cfg->file,
                c->name, c->summary_book_at);
        return -1;
    }
    c->summary_book_minute = hh * 60 + mm;
    return 0;
}

/* Which of the comma-separated choices word is (0-based), or -1. */
static int choice_of(const char *word, size_t len, const char *choices)
{
    int i = 0;
    for (const char *p = choices; *p; i++) {
        size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, word, len) == 0)
            return i;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return -1;
}

static int check_choice(const struct gw_config *cfg, const struct gw_connection *c, const char *key,
                        const char *value, const char *choices, char *err, size_t errlen)
{
    if (value != NULL && choice_of(value, strlen(value), choices) >= 0)
        return 0;
    gw_errf(err, errlen, "%s: key '%s' in [connection.%s]: expected one of %s, got '%s'", cfg->file,
            key, c->name, choices, value ? value : "");
    return -1;
}

/* Every word of a list must be one of choices; *mask gets bit i for the i-th. */
static int check_list(const struct gw_config *cfg, const struct gw_connection *c, const char *key,
                      const char *value, const char *choices, unsigned *mask, char *err,
                      size_t errlen)
{
    *mask = 0;
    for (const char *p = value ? value : ""; *p;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        int i = n > 0 ? choice_of(p, n, choices) : 0;
        if (n > 0 && i >= 0)
            *mask |= 1u << i;
        if (i < 0) {
            gw_errf(err, errlen, "%s: key '%s' in [connection.%s]: '%.*s' is not one of %s",
                    cfg->file, key, c->name, (int)n, p, choices);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* trusted_proxies into cfg->trusted: numeric addresses only, since the
 * peer address is compared with them as it is, never resolved. */
static int parse_trusted(struct gw_config *cfg, char *err, size_t errlen)
{
    const char *list = cfg->trusted_proxies ? cfg->trusted_proxies : "";
    size_t n = 0;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    cfg->trusted = calloc(n + 1, sizeof *cfg->trusted);
    if (cfg->trusted == NULL) {
        gw_errf(err, errlen, "out of memory");
        return -1;
    }
    for (const char *p = list; *p;) {
        p += strspn(p, ", \t");
        size_t len = strcspn(p, ", \t");
        if (len == 0)
            break;
        if (!gw_ip_parse(p, len, &cfg->trusted[cfg->ntrusted])) {
            gw_errf(err, errlen,
                    "%s: key 'trusted_proxies' in [server]: expected IP addresses separated by "
                    "commas (no host names, networks or ports), got '%.*s'",
                    cfg->file, (int)len, p);
            return -1;
        }
        cfg->ntrusted++;
        p += len;
    }
    return 0;
}

static int validate(struct gw_config *cfg, char *err, size_t errlen)
{
    char host[256];
    unsigned short port;
    if (config_parse_addr(cfg->listen, host, sizeof host, &port) < 0) {
        gw_errf(err, errlen, "%s: key 'listen' in [server]: expected HOST:PORT, got '%s'",
                cfg->file, cfg->listen);
        return -1;
    }
    if (cfg->admin_listen[0] != '\0' &&
        config_parse_addr(cfg->admin_listen, host, sizeof host, &port) < 0) {
        gw_errf(err, errlen, "%s: key 'admin_listen' in [server]: expected HOST:PORT, got '%s'",
                cfg->file, cfg->admin_listen);
        return -1;
    }
    if (parse_trusted(cfg, err, errlen) < 0)
        return -1;
    if (gw_log_level_parse(cfg->log_level) < 0) {
        gw_errf(err, errlen, "%s: key 'level' in [log]: expected debug, info, warn or error",
                cfg->file);
        return -1;
    }
    if (cfg->alert_url && cfg->alert_url[0] &&
        (strncmp(cfg->alert_url, "https://", 8) != 0 &&
         strncmp(cfg->alert_url, "http://", 7) != 0)) {
        gw_errf(err, errlen, "%s: key 'webhook_url' in [alerts]: expected an http(s) URL",
                cfg->file);
        return -1;
    }
    if (cfg->alert_url && cfg->alert_url[0] &&
        (cfg->alert_secret == NULL || !cfg->alert_secret[0])) {
        gw_errf(err, errlen,
                "%s: key 'secret' in [alerts]: needed with webhook_url (the messages are signed)",
                cfg->file);
        return -1;
    }
    if (cfg->map_max_mb < cfg->map_size_mb) {
        gw_errf(err, errlen, "%s: key 'map_max_mb' in [storage]: must be at least map_size_mb",
                cfg->file);
        return -1;
    }
    for (size_t i = 0; i < cfg->nconns; i++) {
        struct gw_connection *c = &cfg->conns[i];
        for (size_t j = 0; j < i; j++) {
            if (c->realm_id && cfg->conns[j].realm_id &&
                strcmp(c->realm_id, cfg->conns[j].realm_id) == 0) {
                gw_errf(err, errlen,
                        "%s: key 'realm_id' in [connection.%s]: realm %s is already used by "
                        "[connection.%s]",
                        cfg->file, c->name, c->realm_id, cfg->conns[j].name);
                return -1;
            }
        }
        if (check_choice(cfg, c, "customers_direction", c->customers_direction,
                         "both, to_qbo, to_mplus", err, errlen) != 0 ||
            check_choice(cfg, c, "sales_order_state", c->sales_order_state,
                         "created, paid, delivered, complete", err, errlen) != 0 ||
            check_choice(cfg, c, "sales_order_as", c->sales_order_as, "invoice, receipt_when_paid",
                         err, errlen) != 0 ||
            check_choice(cfg, c, "sales_zero_lines", c->sales_zero_lines, "drop, keep", err,
                         errlen) != 0 ||
            check_choice(cfg, c, "sales_split_payments", c->sales_split_payments,
                         "invoice, clearing", err, errlen) != 0 ||
            check_choice(cfg, c, "sales_order_invoices", c->sales_order_invoices,
                         "each, with_order", err, errlen) != 0 ||
            check_choice(cfg, c, "closed_period", c->closed_period, "dead, next_open", err,
                         errlen) != 0 ||
            check_choice(cfg, c, "products_price", c->products_price, "incl, excl", err, errlen) !=
                0 ||
            check_choice(cfg, c, "products_direction", c->products_direction, "to_qbo, both", err,
                         errlen) != 0 ||
            check_choice(cfg, c, "stock_amount", c->stock_amount, "free, free_incoming", err,
                         errlen) != 0 ||
            check_choice(cfg, c, "products_variant_parent", c->products_variant_parent,
                         "description, category", err, errlen) != 0 ||
            check_list(cfg, c, "sales_documents", c->sales_documents, "receipts, invoices, orders",
                       &c->sales_kinds, err, errlen) != 0 ||
            check_numbers(cfg, c, "products_groups", c->products_groups, err, errlen) != 0 ||
            check_numbers(cfg, c, "sales_shipping_articles", c->sales_shipping_articles, err,
                          errlen) != 0 ||
            check_numbers(cfg, c, "products_exclude_groups", c->products_exclude_groups, err,
                          errlen) != 0 ||
            check_numbers(cfg, c, "products_turnover_groups", c->products_turnover_groups, err,
                          errlen) != 0 ||
            check_numbers(cfg, c, "stock_branches", c->stock_branches, err, errlen) != 0 ||
            check_sales_mode(cfg, c, err, errlen) != 0)
            return -1;
        const char *secret = c->mplus_webhook_secret;
        if (secret == NULL || secret[0] == '\0')
            continue;
        if (c->mplus_webhook_secret_encoding == GW_SECRET_BASE64) {
            size_t n = strlen(secret);
            unsigned char *key = malloc(n + 3);
            int len = key ? EVP_DecodeBlock(key, (const unsigned char *)secret, (int)n) : -1;
            if (len < 0 || n % 4 != 0) {
                free(key);
                gw_errf(err, errlen,
                        "%s: key 'mplus_webhook_secret' in [connection.%s]: not valid base64 "
                        "(or set mplus_webhook_secret_encoding = raw)",
                        cfg->file, c->name);
                return -1;
            }
            /* EVP_DecodeBlock counts '=' padding as zero bytes. */
            if (n >= 1 && secret[n - 1] == '=')
                len--;
            if (n >= 2 && secret[n - 2] == '=')
                len--;
            c->mplus_webhook_key = key;
            c->mplus_webhook_key_len = (size_t)len;
        } else {
            c->mplus_webhook_key = (unsigned char *)strdup(secret);
            c->mplus_webhook_key_len = strlen(secret);
        }
    }
    return 0;
}

int config_load(const char *path, struct gw_config **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        gw_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct gw_config *cfg = calloc(1, sizeof *cfg);
    cfg->file = strdup(path);
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (apply_defaults(cfg, sections[i].keys, path, err, errlen) < 0)
            goto fail;

    const struct key_def *keys = NULL;
    void *base = NULL;
    char section[128] = "";
    char line[8192];
    int lineno = 0;
    unsigned char seen[256] = {0}; /* duplicate detection per section */
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            gw_errf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno,
                    sizeof line - 1);
            goto fail;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *rb = strchr(s, ']');
            if (rb == NULL || *trim(rb + 1) != '\0') {
                gw_errf(err, errlen, "%s:%d: malformed section header", path, lineno);
                goto fail;
            }
            *rb = '\0';
            char *name = trim(s + 1);
            gw_strlcpy(section, name, sizeof section);
            memset(seen, 0, sizeof seen);
            keys = NULL;
            for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
                if (strcmp(name, sections[i].name) == 0) {
                    keys = sections[i].keys;
                    base = cfg;
                }
            }
            if (keys == NULL && strncmp(name, "connection.", 11) == 0) {
                const char *cname = name + 11;
                if (!valid_conn_name(cname)) {
                    gw_errf(err, errlen,
                            "%s:%d: section [%s]: a connection name is 1-64 letters, digits, "
                            "'_' or '-'",
                            path, lineno, name);
                    goto fail;
                }
                if (config_connection(cfg, cname) != NULL) {
                    gw_errf(err, errlen, "%s:%d: section [%s] appears twice", path, lineno, name);
                    goto fail;
                }
                struct gw_connection *n = realloc(cfg->conns, (cfg->nconns + 1) * sizeof *n);
                if (n == NULL)
                    goto fail;
                cfg->conns = n;
                struct gw_connection *c = &cfg->conns[cfg->nconns++];
                memset(c, 0, sizeof *c);
                c->name = strdup(cname);
                if (apply_defaults(c, connection_keys, path, err, errlen) < 0)
                    goto fail;
                keys = connection_keys;
                base = c;
            }
            if (keys == NULL) {
                gw_errf(err, errlen,
                        "%s:%d: unknown section [%s] (expected server, storage, quickbooks, "
                        "dispatch, mapping, log, alerts or connection.NAME)",
                        path, lineno, name);
                goto fail;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            gw_errf(err, errlen, "%s:%d: expected 'key = value', got '%.60s'", path, lineno, s);
            goto fail;
        }
        *eq = '\0';
        char *key = trim(s);
        char *val = eq + 1;
        /* An inline comment starts at ';' or '#' preceded by whitespace. */
        for (char *p = val; *p; p++) {
            if ((*p == ';' || *p == '#') && p > val && isspace((unsigned char)p[-1])) {
                *p = '\0';
                break;
            }
        }
        val = trim(val);
        if (keys == NULL) {
            gw_errf(err, errlen, "%s:%d: key '%s' outside of any section", path, lineno, key);
            goto fail;
        }
        const struct key_def *d = find_key(keys, key);
        if (d == NULL) {
            gw_errf(err, errlen, "%s:%d: unknown key '%s' in [%s]", path, lineno, key, section);
            goto fail;
        }
        size_t idx = (size_t)(d - keys);
        _Static_assert(sizeof connection_keys / sizeof connection_keys[0] <= sizeof seen,
                       "seen[] has room for every key of a section");
        if (seen[idx]) {
            gw_errf(err, errlen, "%s:%d: key '%s' set twice in [%s]", path, lineno, key, section);
            goto fail;
        }
        seen[idx] = 1;
        char *expanded = expand_env(val, path, lineno, key, err, errlen);
        if (expanded == NULL)
            goto fail;
        int rc = set_value(base, d, expanded, path, lineno, err, errlen);
        free(expanded);
        if (rc < 0)
            goto fail;
    }
    fclose(f);
    f = NULL;
    if (validate(cfg, err, errlen) < 0)
        goto fail;
    *out = cfg;
    return 0;
fail:
    if (f != NULL)
        fclose(f);
    config_free(cfg);
    return -1;
}

const struct gw_connection *config_connection(const struct gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nconns; i++)
        if (strcmp(cfg->conns[i].name, name) == 0)
            return &cfg->conns[i];
    return NULL;
}

const struct gw_connection *config_connection_by_realm(const struct gw_config *cfg,
                                                       const char *realm_id)
{
    for (size_t i = 0; i < cfg->nconns; i++)
        if (cfg->conns[i].realm_id && strcmp(cfg->conns[i].realm_id, realm_id) == 0)
            return &cfg->conns[i];
    return NULL;
}

static void print_keys(const void *base, const struct key_def *keys, FILE *out)
{
    for (const struct key_def *d = keys; d->name; d++) {
        const char *field = (const char *)base + d->offset;
        switch (d->type) {
        case K_STR:
        case K_FLOWS: {
            const char *v = *(char *const *)field;
            if (v == NULL || v[0] == '\0')
                fprintf(out, "%s =\n", d->name);
            else if (d->secret)
                fprintf(out, "%s = ******** (set)\n", d->name);
            else
                fprintf(out, "%s = %s\n", d->name, v);
            break;
        }
        case K_INT:
            fprintf(out, "%s = %ld\n", d->name, *(const long *)field);
            break;
        case K_BOOL:
            fprintf(out, "%s = %s\n", d->name, *(const bool *)field ? "true" : "false");
            break;
        case K_ENUM_ENCODING:
            fprintf(out, "%s = %s\n", d->name,
                    *(const int *)field == GW_SECRET_BASE64 ? "base64" : "raw");
            break;
        }
    }
}

void config_print(const struct gw_config *cfg, FILE *out)
{
    fprintf(out, "; effective settings of %s (secrets masked)\n", cfg->file);
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        fprintf(out, "\n[%s]\n", sections[i].name);
        print_keys(cfg, sections[i].keys, out);
    }
    for (size_t i = 0; i < cfg->nconns; i++) {
        fprintf(out, "\n[connection.%s]\n", cfg->conns[i].name);
        print_keys(&cfg->conns[i], connection_keys, out);
    }
}
