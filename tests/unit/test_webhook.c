/* Unit tests: QuickBooks and Mplus webhook bodies to events, on the real fixtures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cdc.h"
#include "config.h"
#include "testutil.h"
#include "util.h"
#include "webhook.h"

static struct gw_config *cfg;
static const int64_t NOW = 1767225600000; /* 2026-01-01T00:00:00Z */

static int setup(void **state)
{
    (void)state;
    char path[] = "/tmp/gw_webhook_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs("[storage]\npath = /tmp/unused\n"
          "[connection.java]\nrealm_id = 1185883450\n"
          "[connection.dotnet]\nrealm_id = 1269959970\n"
          "[connection.sample]\nrealm_id = 310687\nmplus_webhook_secret = s3cret\n",
          f);
    fclose(f);
    char err[512];
    int rc = config_load(path, &cfg, err, sizeof err);
    unlink(path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    config_free(cfg);
    return 0;
}

static const char *field(const struct gw_new_event *e, const char *k)
{
    return json_string_value(json_object_get(e->record, k));
}

static void parse_fixture(const char *name, struct gw_batch *b)
{
    char rel[256];
    snprintf(rel, sizeof rel, "quickbooks/webhooks/%s", name);
    size_t len;
    char *body = read_fixture(rel, &len);
    assert_int_equal(webhook_parse_qbo(cfg, body, len, NOW, b), 0);
    free(body);
    for (size_t i = 0; i < b->n; i++)
        b->ev[i].raw = NULL; /* the body is gone; raw pointers are only for malformed */
}

static void expect_event(const struct gw_new_event *e, const char *conn, const char *entity,
                         const char *id, const char *op, const char *state, const char *key)
{
    assert_string_equal(field(e, "connection"), conn);
    assert_string_equal(field(e, "source"), "quickbooks");
    assert_string_equal(field(e, "entity"), entity);
    assert_string_equal(field(e, "entity_id"), id);
    assert_string_equal(field(e, "operation"), op);
    assert_string_equal(field(e, "state"), state);
    assert_string_equal(e->dedupe_key, key);
    assert_string_equal(field(e, "dedupe_key"), key);
}

static void test_legacy_java_fixture(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_fixture("legacy_java_sdk_test_body.json", &b);
    assert_int_equal(b.n, 1);
    expect_event(&b.ev[0], "java", "Customer", "1", "Create", "pending",
                 "qbo|1185883450|Customer|1|Create|2015-10-05T21:42:19.000Z");
    assert_string_equal(field(&b.ev[0], "occurred_at"), "2015-10-05T21:42:19.000Z");
    assert_string_equal(field(&b.ev[0], "realm_id"), "1185883450");
    assert_int_equal(b.ev[0].state, GW_PENDING);
    batch_free(&b);
}

static void test_legacy_dotnet_fixture_two_entities(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_fixture("legacy_dotnet_sdk_test_body.json", &b);
    assert_int_equal(b.n, 2);
    expect_event(&b.ev[0], "dotnet", "Vendor", "40", "Update", "pending",
                 "qbo|1269959970|Vendor|40|Update|2016-10-05T03:09:04.000Z");
    expect_event(&b.ev[1], "dotnet", "Customer", "43", "Create", "pending",
                 "qbo|1269959970|Customer|43|Create|2016-10-05T03:07:04.000Z");
    batch_free(&b);
}

static void test_cloudevents_customer_created(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_fixture("cloudevents_customer_created_intuit_sample.json", &b);
    assert_int_equal(b.n, 1);
    expect_event(&b.ev[0], "sample", "Customer", "1234", "Create", "pending",
                 "qbo-ce|310687|88cd52aa-33b6-4351-9aa4-47572edbd068");
    assert_string_equal(field(&b.ev[0], "occurred_at"), "2025-09-10T21:31:25.179Z");
    /* The CloudEvent itself is kept as the payload. */
    assert_null(json_object_get(b.ev[0].record, "payload")); /* stored apart */
    json_t *p = b.ev[0].payload;
    assert_string_equal(json_string_value(json_object_get(p, "type")), "qbo.customer.created.v1");
    batch_free(&b);
}

static void test_cloudevents_without_datacontenttype(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_fixture("cloudevents_dotnet_sdk_test_class_created.json", &b);
    assert_int_equal(b.n, 1);
    expect_event(&b.ev[0], "sample", "Class", "1234", "Create", "pending",
                 "qbo-ce|310687|d1a3aedd-9670-41bf-a4f9-c148a1cc4e03");
    batch_free(&b);
}

static void test_cloudevents_merge_unknown_realm(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_fixture("cloudevents_customer_merged_synthetic.json", &b);
    assert_int_equal(b.n, 1);
    /* Realm 999000111 belongs to no connection: acknowledged, stored skipped. */
    expect_event(&b.ev[0], "", "Customer", "1030", "Merge", "skipped",
                 "qbo-ce|999000111|test-customer-merged-1030");
    assert_string_equal(field(&b.ev[0], "reason"), "unknown realm");
    assert_string_equal(field(&b.ev[0], "deleted_id"), "1030");
    assert_int_equal(b.ev[0].state, GW_SKIPPED);
    batch_free(&b);
}

static void parse_text(const char *body, struct gw_batch *b)
{
    assert_int_equal(webhook_parse_qbo(cfg, body, strlen(body), NOW, b), 0);
}

static void test_deleted_id_lower_case_and_operations(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    parse_text("[{\"id\":\"a\",\"type\":\"qbo.customer.merged.v1\",\"intuitentityid\":\"5\","
               "\"intuitaccountid\":\"310687\",\"data\":{\"deletedid\":\"27\"}},"
               "{\"id\":\"b\",\"type\":\"qbo.salesreceipt.void.v1\",\"intuitentityid\":\"9\","
               "\"intuitaccountid\":\"310687\"},"
               "{\"id\":\"c\",\"type\":\"qbo.invoice.emailed.v1\",\"intuitentityid\":\"10\","
               "\"intuitaccountid\":\"310687\"}]",
               &b);
    assert_int_equal(b.n, 3);
    assert_string_equal(field(&b.ev[0], "deleted_id"), "27");
    assert_string_equal(field(&b.ev[1], "entity"), "SalesReceipt");
    assert_string_equal(field(&b.ev[1], "operation"), "Void");
    assert_string_equal(field(&b.ev[2], "operation"), "Emailed");
    batch_free(&b);
}

static void test_legacy_formats_share_a_key(void **state)
{
    (void)state;
    /* One change announced with lastUpdated in three of Intuit's formats. */
    const char *fmts[] = {"\"2015-10-05T14:42:19-0700\"", "\"2015-10-05T21:42:19.000Z\"",
                          "1444081339000"};
    char first[256] = "";
    for (size_t i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"eventNotifications\":[{\"realmId\":\"1185883450\",\"dataChangeEvent\":"
                 "{\"entities\":[{\"name\":\"Customer\",\"id\":\"1\",\"operation\":\"Update\","
                 "\"lastUpdated\":%s}]}}]}",
                 fmts[i]);
        struct gw_batch b = {0};
        parse_text(body, &b);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.ev[0].state, GW_PENDING);
        if (i == 0)
            snprintf(first, sizeof first, "%s", b.ev[0].dedupe_key);
        else
            assert_string_equal(b.ev[0].dedupe_key, first);
        batch_free(&b);
    }
}

static void test_malformed_bodies(void **state)
{
    (void)state;
    const char *bodies[] = {"{\"eventNotifications\": [",  "[]", "42", "{\"other\":1}",
                            "{\"eventNotifications\":{}}", ""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct gw_batch b = {0};
        assert_int_equal(webhook_parse_qbo(cfg, bodies[i], strlen(bodies[i]), NOW, &b), 0);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.ev[0].state, GW_DEAD);
        assert_string_equal(field(&b.ev[0], "reason"), "malformed");
        assert_non_null(field(&b.ev[0], "last_error"));
        /* The raw body travels with the event so nothing is lost. */
        assert_ptr_equal(b.ev[0].raw, bodies[i]);
        assert_int_equal(b.ev[0].raw_len, strlen(bodies[i]));
        batch_free(&b);
    }
}

static void test_bad_entity_among_good_ones(void **state)
{
    (void)state;
    struct gw_batch b = {0};
    static const char body[] =
        "{\"eventNotifications\":[{\"realmId\":\"1185883450\",\"dataChangeEvent\":"
        "{\"entities\":[{\"name\":\"Customer\",\"id\":\"1\",\"operation\":\"Update\","
        "\"lastUpdated\":\"2015-10-05T21:42:19Z\"},"
        "{\"name\":\"Customer\",\"operation\":\"Update\"},"
        "{\"name\":\"Item\",\"id\":\"2\",\"operation\":\"Update\",\"lastUpdated\":\"soon\"}"
        "]}}]}";
    parse_text(body, &b);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.ev[0].state, GW_PENDING);
    assert_int_equal(b.ev[1].state, GW_DEAD);
    assert_int_equal(b.ev[2].state, GW_DEAD);
    assert_string_equal(field(&b.ev[1], "connection"), "java");
    assert_non_null(strstr(field(&b.ev[1], "last_error"), "entity 1"));
    assert_non_null(strstr(field(&b.ev[2], "last_error"), "lastUpdated"));
    /* Distinct dead events get distinct keys, stable across redelivery. */
    assert_string_not_equal(b.ev[1].dedupe_key, b.ev[2].dedupe_key);
    struct gw_batch again = {0};
    assert_int_equal(webhook_parse_qbo(cfg, body, strlen(body), NOW + 60000, &again), 0);
    assert_int_equal(again.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(again.ev[i].dedupe_key, b.ev[i].dedupe_key);
    batch_free(&again);
    batch_free(&b);
}

static const char mplus_body[] =
    "{\"event\":{\"eventBlocking\":false,\"eventCounter\":17,"
    "\"eventTimestamp\":\"2026-03-01T10:15:00+01:00\"},"
    "\"sender\":{\"branchNumber\":1,\"workplaceNumber\":2,\"instanceId\":\"inst-9\"},"
    "\"session\":{\"sessionId\":\"6f1c0c1e-2b7a-4a57-9d52-0d6c1b1f7a10\",\"lines\":[]}}";

static void test_cdc_row_shares_the_webhooks_change_key(void **state)
{
    (void)state;
    /* The same change of customer 1234, once by webhook, once by CDC. */
    struct gw_batch hook = {0};
    parse_fixture("cloudevents_customer_created_intuit_sample.json", &hook);
    assert_int_equal(hook.n, 1);
    const char *key = field(&hook.ev[0], "change_key");
    /* The webhook says .179 s; QuickBooks keeps whole seconds, and so does the key. */
    assert_string_equal(key, "qbo-change|310687|Customer|1234|2025-09-10T21:31:25Z");

    const struct gw_connection *c = config_connection(cfg, "sample");
    json_t *resp = json_loads(
        "{\"CDCResponse\":[{\"QueryResponse\":[{\"Customer\":[{\"Id\":\"1234\","
        "\"SyncToken\":\"0\",\"MetaData\":{\"LastUpdatedTime\":\"2025-09-10T14:31:25-07:00\"}},"
        "{\"Id\":\"77\",\"status\":\"Deleted\",\"MetaData\":{\"LastUpdatedTime\":"
        "\"2025-09-11T14:00:00-07:00\"}}],\"startPosition\":1,\"maxResults\":2}]}],"
        "\"time\":\"2025-09-12T00:00:00-07:00\"}",
        0, NULL);
    assert_non_null(resp);
    struct gw_batch cdc = {0};
    char latest[GW_TS_LEN];
    size_t rows;
    assert_int_equal(cdc_parse(c, resp, NOW, &cdc, latest, sizeof latest, &rows), 0);
    assert_int_equal(rows, 2);
    assert_int_equal(cdc.n, 2);
    assert_string_equal(cdc.ev[0].dedupe_key, key); /* so the store sees one change */
    assert_string_equal(field(&cdc.ev[0], "source"), "qbo-cdc");
    assert_string_equal(field(&cdc.ev[1], "operation"), "Delete");
    assert_string_equal(latest, "2025-09-11T21:00:00.000Z");
    json_decref(resp);
    batch_free(&cdc);
    batch_free(&hook);
}

static void test_mplus_complete_session(void **state)
{
    (void)state;
    const struct gw_connection *c = config_connection(cfg, "sample");
    struct gw_batch b = {0};
    int v = webhook_parse_mplus(c, "completeSession", mplus_body, strlen(mplus_body), NOW, &b);
    assert_int_equal(v, MPLUS_STORED);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.ev[0].dedupe_key,
                        "mplus|sample|6f1c0c1e-2b7a-4a57-9d52-0d6c1b1f7a10|completeSession|17|"
                        "inst-9");
    assert_string_equal(field(&b.ev[0], "source"), "mplus");
    assert_string_equal(field(&b.ev[0], "operation"), "completeSession");
    assert_string_equal(field(&b.ev[0], "entity_id"), "6f1c0c1e-2b7a-4a57-9d52-0d6c1b1f7a10");
    assert_string_equal(field(&b.ev[0], "occurred_at"), "2026-03-01T09:15:00.000Z");
    batch_free(&b);
}

static void test_mplus_error_request_unwrapped(void **state)
{
    (void)state;
    const struct gw_connection *c = config_connection(cfg, "sample");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"error\":{\"code\":\"INVALID_RESPONSE\",\"message\":\"x\"},\"original\":%s}",
             mplus_body);
    struct gw_batch b = {0};
    assert_int_equal(webhook_parse_mplus(c, "creditSession", body, strlen(body), NOW, &b),
                     MPLUS_STORED);
    assert_int_equal(b.n, 1);
    assert_non_null(strstr(b.ev[0].dedupe_key, "|creditSession|17|inst-9"));
    assert_non_null(json_object_get(b.ev[0].record, "mplus_error"));
    batch_free(&b);
}

static void test_mplus_other_and_malformed(void **state)
{
    (void)state;
    const struct gw_connection *c = config_connection(cfg, "sample");
    struct gw_batch b = {0};
    assert_int_equal(webhook_parse_mplus(c, "scanCode", mplus_body, strlen(mplus_body), NOW, &b),
                     MPLUS_IGNORED);
    assert_int_equal(b.n, 0);
    assert_int_equal(webhook_parse_mplus(c, "completeSession", "[1,2", 4, NOW, &b),
                     MPLUS_MALFORMED);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.ev[0].state, GW_DEAD);
    assert_int_equal(b.ev[0].raw_len, 4);
    batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_java_fixture),
        cmocka_unit_test(test_legacy_dotnet_fixture_two_entities),
        cmocka_unit_test(test_cloudevents_customer_created),
        cmocka_unit_test(test_cloudevents_without_datacontenttype),
        cmocka_unit_test(test_cloudevents_merge_unknown_realm),
        cmocka_unit_test(test_deleted_id_lower_case_and_operations),
        cmocka_unit_test(test_legacy_formats_share_a_key),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_bad_entity_among_good_ones),
        cmocka_unit_test(test_cdc_row_shares_the_webhooks_change_key),
        cmocka_unit_test(test_mplus_complete_session),
        cmocka_unit_test(test_mplus_error_request_unwrapped),
        cmocka_unit_test(test_mplus_other_and_malformed),
    };
    return cmocka_run_group_tests_name("webhook", tests, setup, teardown);
}
