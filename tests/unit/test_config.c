/* Unit tests: gateway.ini parsing, defaults, ${ENV} and errors that name file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static int load(const char *text, struct gw_config **cfg, char *err, size_t errlen)
{
    snprintf(path, sizeof path, "/tmp/gw_config_XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    int rc = config_load(path, cfg, err, errlen);
    unlink(path);
    return rc;
}

/* The error must name this file, the line, and the key. */
static void expect_error(const char *text, int line, const char *needle)
{
    struct gw_config *cfg = NULL;
    char err[512] = "";
    assert_int_equal(load(text, &cfg, err, sizeof err), -1);
    assert_null(cfg);
    char where[96];
    if (line > 0)
        snprintf(where, sizeof where, "%s:%d:", path, line);
    else
        snprintf(where, sizeof where, "%s", path);
    if (strstr(err, where) == NULL || strstr(err, needle) == NULL)
        fail_msg("error '%s' should name '%s' and '%s'", err, where, needle);
}

static void test_shipped_file_loads(void **state)
{
    (void)state;
    setenv("GATEWAY_ADMIN_TOKEN", "adm", 1);
    setenv("QBO_CLIENT_ID", "id", 1);
    setenv("QBO_CLIENT_SECRET", "cs", 1);
    setenv("QBO_VERIFIER_TOKEN", "vt", 1);
    setenv("SHOP1_MPLUS_URL", "https://mplus.example:50123/", 1);
    setenv("SHOP1_MPLUS_IDENT", "i", 1);
    setenv("SHOP1_MPLUS_SECRET", "s", 1);
    setenv("SHOP1_MPLUS_WEBHOOK_SECRET", "w", 1);
    struct gw_config *cfg;
    char err[512];
    int rc = config_load(GW_SOURCE_DIR "/gateway.ini", &cfg, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_string_equal(cfg->admin_token, "adm");
    assert_int_equal(cfg->max_body_bytes, 1048576);
    assert_int_equal(cfg->nconns, 1);
    assert_string_equal(cfg->conns[0].name, "shop1");
    assert_int_equal(cfg->conns[0].flows, GW_FLOW_CUSTOMERS | GW_FLOW_SALES);
    assert_int_equal(cfg->conns[0].mplus_poll_interval_s, 60);
    assert_ptr_equal(config_connection_by_realm(cfg, "1234567890"), &cfg->conns[0]);
    config_free(cfg);
}

static void test_defaults_and_env(void **state)
{
    (void)state;
    setenv("GW_TEST_TOKEN", "tok-123", 1);
    struct gw_config *cfg;
    char err[512];
    assert_int_equal(load("[quickbooks]\nverifier_token = pre-${GW_TEST_TOKEN}-post ; note\n", &cfg,
                          err, sizeof err),
                     0);
    assert_string_equal(cfg->verifier_token, "pre-tok-123-post");
    assert_string_equal(cfg->storage_path, "var/gateway");
    assert_int_equal(cfg->timeout_s, 30);
    assert_int_equal(cfg->nconns, 0);
    config_free(cfg);
}

static void test_base64_secret(void **state)
{
    (void)state;
    struct gw_config *cfg;
    char err[512];
    assert_int_equal(load("[connection.a]\nmplus_webhook_secret = c2VjcmV0\n"
                          "mplus_webhook_secret_encoding = base64\n"
                          "[connection.b]\nmplus_webhook_secret = c2VjcmV0IQ==\n"
                          "mplus_webhook_secret_encoding = base64\n",
                          &cfg, err, sizeof err),
                     0);
    assert_int_equal(cfg->conns[0].mplus_webhook_key_len, 6);
    assert_memory_equal(cfg->conns[0].mplus_webhook_key, "secret", 6);
    assert_int_equal(cfg->conns[1].mplus_webhook_key_len, 7);
    assert_memory_equal(cfg->conns[1].mplus_webhook_key, "secret!", 7);
    config_free(cfg);
}

static void test_errors_name_file_line_key(void **state)
{
    (void)state;
    unsetenv("GW_TEST_UNSET");
    expect_error("[server]\nlisten = 127.0.0.1:1\nlisen = x\n", 3, "lisen");
    expect_error("[server]\nmax_body_bytes = 12abc\n", 2, "max_body_bytes");
    expect_error("[server]\ntimeout_s = 0\n", 2, "timeout_s");
    expect_error("\n[quickbooks]\nverifier_token = ${GW_TEST_UNSET}\n", 3, "GW_TEST_UNSET");
    expect_error("[quickbooks]\nclient_id = ${GW_TEST_UNSET\n", 2, "client_id");
    expect_error("[nope]\n", 1, "[nope]");
    expect_error("listen = x\n", 1, "listen");
    expect_error("[server]\nlisten\n", 2, "key = value");
    expect_error("[connection.a]\nflows = sales, cakes\n", 2, "cakes");
    expect_error("[connection.a]\nmplus_webhook_secret_encoding = hex\n", 2,
                 "mplus_webhook_secret_encoding");
    expect_error("[connection.bad name]\n", 1, "connection name");
    expect_error("[connection.a]\n[connection.a]\n", 2, "twice");
    expect_error("[server]\ntimeout_s = 5\ntimeout_s = 6\n", 3, "timeout_s");
    /* Whole-file checks name the file and the key. */
    expect_error("[connection.a]\nrealm_id = 1\n[connection.b]\nrealm_id = 1\n", 0, "realm_id");
    expect_error("[server]\nlisten = localhost\n", 0, "listen");
    expect_error("[connection.a]\nmplus_webhook_secret = not*base64\n"
                 "mplus_webhook_secret_encoding = base64\n",
                 0, "mplus_webhook_secret");
    expect_error("[log]\nlevel = loud\n", 0, "level");
}

static void test_sales_mode(void **state)
{
    (void)state;
    struct gw_config *cfg;
    char err[512];
    assert_int_equal(load("[connection.a]\nsales_documents = receipts, invoices\n"
                          "sales_mode = receipts:daily_summary, invoices:documents\n"
                          "sales_mode_since = 2026-11-01\nsummary_book_at = 05:30\n",
                          &cfg, err, sizeof err),
                     0);
    assert_true(cfg->conns[0].summary_receipts);
    assert_int_equal(cfg->conns[0].summary_book_minute, 5 * 60 + 30);
    config_free(cfg);
    /* A bare mode is the receipts'; documents is the default. */
    assert_int_equal(load("[connection.a]\nsales_mode = documents\n", &cfg, err, sizeof err), 0);
    assert_false(cfg->conns[0].summary_receipts);
    config_free(cfg);
    expect_error("[connection.a]\nsales_mode = weekly\n", 0, "sales_mode");
    expect_error(
        "[connection.a]\nsales_documents = receipts\nsales_mode = invoices:daily_summary\n", 0,
        "only receipts");
    expect_error("[connection.a]\nsales_documents = receipts\nsales_mode = daily_summary\n", 0,
                 "sales_mode_since");
    expect_error("[connection.a]\nsales_documents = receipts\nsales_mode = daily_summary\n"
                 "sales_mode_since = 1 Nov\n",
                 0, "sales_mode_since");
    /* Orders too would book a sale twice: a receipt made of an order is in the day's figures. */
    expect_error("[connection.a]\nsales_mode = daily_summary\nsales_mode_since = 2026-11-01\n", 0,
                 "leave orders out");
    expect_error("[connection.a]\nsales_documents = receipts\nsales_mode = daily_summary\n"
                 "sales_mode_since = 2026-11-01\nsummary_book_at = 25:00\n",
                 0, "summary_book_at");
}

static void test_missing_file(void **state)
{
    (void)state;
    struct gw_config *cfg = NULL;
    char err[512];
    assert_int_equal(config_load("/nonexistent/gateway.ini", &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/gateway.ini"));
}

static void test_print_masks_secrets(void **state)
{
    (void)state;
    struct gw_config *cfg;
    char err[512];
    assert_int_equal(load("[server]\nadmin_token = hunter2-admin\n[quickbooks]\n"
                          "verifier_token = hunter2-verifier\n[connection.a]\n"
                          "mplus_secret = hunter2-mplus\nmplus_webhook_secret = hunter2-wh\n",
                          &cfg, err, sizeof err),
                     0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_print(cfg, f);
    fclose(f);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "admin_token = ********"));
    assert_non_null(strstr(out, "[connection.a]"));
    free(out);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_file_loads), cmocka_unit_test(test_defaults_and_env),
        cmocka_unit_test(test_base64_secret),      cmocka_unit_test(test_errors_name_file_line_key),
        cmocka_unit_test(test_missing_file),       cmocka_unit_test(test_print_masks_secrets),
        cmocka_unit_test(test_sales_mode),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
