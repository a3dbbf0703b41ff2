/*
 * config.h - gateway.ini: a table-driven INI reader. Every key has a name, a
 * type, a default and a flag saying whether it is a secret; an unknown key, a
 * bad value or an unset ${ENV} reference fails with file, line and key.
 * gateway.ini in the repository documents every key.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct gw_ip;

enum gw_flow {
    GW_FLOW_SALES = 1 << 0,
    GW_FLOW_CUSTOMERS = 1 << 1,
    GW_FLOW_PRODUCTS = 1 << 2,
    GW_FLOW_STOCK = 1 << 3,
};

/* The Mplus documents the sales flow books (sales_documents, in this order). */
enum gw_sales_kind {
    GW_SALES_RECEIPTS = 1 << 0,
    GW_SALES_INVOICES = 1 << 1,
    GW_SALES_ORDERS = 1 << 2,
};

enum gw_secret_encoding { GW_SECRET_RAW, GW_SECRET_BASE64 };

struct gw_connection {
    char *name;
    char *realm_id;
    char *mplus_url;
    char *mplus_ident;
    char *mplus_secret;
    char *mplus_webhook_secret;
    int mplus_webhook_secret_encoding; /* enum gw_secret_encoding */
    char *mplus_subscription_id;
    long mplus_poll_interval_s;
    long mplus_page_size;
    long mplus_document_page_size;
    long mplus_stock_branch;
    bool mplus_backfill;
    /* customers flow and its mappings */
    char *customers_direction; /* both | to_qbo | to_mplus */
    char *map_customers_to_qbo;
    char *map_customers_to_mplus;
    char *tax_code_by_country;
    char *income_account_by_country;
    char *customer_create_only;
    char *relation_create_only;
    long mplus_employee_number;
    char *default_country;
    /* sales flow (gateway.ini documents each) */
    char *sales_documents;
    unsigned sales_kinds; /* enum gw_sales_kind bits, derived from sales_documents */
    char *sales_order_as;
    char *sales_order_state; /* created | paid | delivered | complete */
    char *sales_default_customer;
    char *sales_tax_codes;
    char *sales_payment_methods;
    char *sales_deposit_accounts;
    char *sales_split_account;
    char *sales_rounding_item;
    int sales_rounding_max_cents; /* per VAT group of a document */
    char *sales_rounding_tax_code;
    char *sales_split_payments; /* invoice | clearing */
    char *sales_order_invoices; /* each | with_order */
    char *sales_shipping_items;
    char *sales_shipping_articles;
    char *sales_department_by_country;
    char *sales_department_by_branch;
    bool sales_create_items;
    char *sales_item_income_account;
    char *sales_zero_lines;
    char *sales_class_by_branch;
    char *sales_terms;
    char *map_sales_to_qbo;
    char *closed_period; /* dead | next_open */
    /* daily summary of till receipts (gateway.ini documents each) */
    char *sales_mode;       /* per kind: documents | daily_summary (receipts only) */
    bool summary_receipts;  /* derived: receipts go into the daily summary */
    char *sales_mode_since; /* YYYY-MM-DD: the first financial day in the summary */
    char *summary_income_accounts;
    char *summary_tax_account;
    char *summary_rounding_account;
    int summary_rounding_max_cents; /* per day and branch */
    char *summary_book_at;          /* HH:MM the next morning */
    int summary_book_minute;        /* derived: minutes after midnight */
    long summary_recheck_days;
    char *map_summary_to_qbo;
    /* products and stock flows (gateway.ini documents each) */
    bool products_update_existing;
    char *products_create_only;
    char *products_price; /* incl | excl */
    bool products_track_stock;
    char *products_inventory_start;
    char *products_income_accounts;
    char *products_expense_accounts;
    char *products_asset_accounts;
    bool products_categories;
    char *products_variant_parent; /* description | category */
    bool products_only_active;
    bool products_only_webshop;
    char *products_groups;
    char *products_exclude_groups;
    char *products_turnover_groups;
    char *map_products_to_qbo;
    char *products_direction; /* to_qbo | both */
    char *map_products_to_mplus;
    char *stock_amount;   /* free | free_incoming */
    char *stock_branches; /* branch numbers summed; empty: mplus_stock_branch */
    char *flows_text;
    unsigned flows; /* enum gw_flow bits, derived from flows_text */
    /* The webhook secret as key bytes (decoded when the encoding is base64). */
    unsigned char *mplus_webhook_key;
    size_t mplus_webhook_key_len;
};

struct gw_config {
    char *file;
    /* [server] */
    char *listen;
    char *admin_listen;
    char *admin_token;
    long max_body_bytes;
    long max_header_bytes;
    long timeout_s;
    char *trusted_proxies;
    struct gw_ip *trusted; /* trusted_proxies parsed, ntrusted of them */
    size_t ntrusted;
    /* [storage] */
    char *storage_path;
    long map_size_mb;
    long map_max_mb;
    long retention_days;
    long retention_s;        /* when set, instead of retention_days (tests, short-lived setups) */
    bool keep_dead_payloads; /* dead events keep payload and bodies past retention */
    long janitor_interval_s; /* how often the daemon purges what is past retention */
    long activity_body_max;  /* bytes of one request or response body kept in the activity log */
    long commit_batch;
    long index_inline_max;
    long inbox_quiet_ms;
    /* [quickbooks] */
    char *client_id;
    char *client_secret;
    char *verifier_token;
    char *redirect_url;
    char *api_base;
    char *oauth_token_url;
    char *oauth_authorize_url;
    long qbo_rate_per_sec;
    long qbo_rate_per_min;
    long qbo_max_concurrent;
    long qbo_batch_items;   /* new Items per batch request; 1: each on its own */
    long qbo_batch_per_min; /* batch requests a minute (Intuit allows 40) */
    long qbo_timeout_s;
    long cdc_interval_s;
    /* [alerts] */
    char *alert_url;
    char *alert_secret;
    long alert_period_s;
    long alert_oldest_pending_s;
    long alert_store_full_pct; /* store_full: used part of map_max_mb */
    long alert_inbox_stall_s;  /* inbox_stalled: the inbox does not shrink this long */
    char *alert_dashboard_url; /* links in messages; empty: http://admin_listen/ */
    long alert_timeout_s;
    long alert_retry_first_s, alert_retry_max_s; /* delivery backoff */
    /* [dispatch] */
    bool dispatch_enabled;
    long max_in_flight;
    long max_in_flight_per_connection;
    long retry_first_s;
    long retry_max_s;
    long retry_give_up_s;
    long circuit_failures;
    long circuit_open_s;
    /* [mapping] */
    char *mapping_dir;
    /* [log] */
    char *log_level;

    struct gw_connection *conns;
    size_t nconns;
};

/*
 * Load and validate a config file. On success *out is a new config owned by
 * the caller (free with config_free). On failure returns -1 and err holds
 * "FILE:LINE: key 'K': what is wrong".
 */
int config_load(const char *path, struct gw_config **out, char *err, size_t errlen);
void config_free(struct gw_config *cfg);

/* Connection by name or by QBO realm id; borrowed, NULL when absent. */
const struct gw_connection *config_connection(const struct gw_config *cfg, const char *name);
const struct gw_connection *config_connection_by_realm(const struct gw_config *cfg,
                                                       const char *realm_id);

/* Print the effective settings, secrets masked, in INI form. */
void config_print(const struct gw_config *cfg, FILE *out);

/* Whether Item changes go back onto articles (products_direction = both). */
bool config_products_back(const struct gw_connection *c);

/* Split "host:port" or "[v6]:port"; host written into host (NUL-terminated). */
int config_parse_addr(const char *s, char *host, size_t hostlen, unsigned short *port);

#endif
