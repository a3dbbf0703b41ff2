/* Unit tests: QuickBooks fault parsing on Intuit's real error bodies, query quoting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "qbo.h"
#include "testutil.h"

static void fault_is(const char *fixture, const char *code, const char *needle)
{
    size_t len;
    char *body = read_fixture(fixture, &len);
    char c[16], msg[1024];
    if (!qbo_parse_fault(body, len, c, sizeof c, msg, sizeof msg))
        fail_msg("%s: no fault found", fixture);
    assert_string_equal(c, code);
    if (strstr(msg, needle) == NULL)
        fail_msg("%s: message '%s' lacks '%s'", fixture, msg, needle);
    free(body);
}

static void test_json_faults(void **state)
{
    (void)state;
    fault_is("quickbooks/errors/fault_5010_stale_object.json", "5010", "Stale Object Error");
    fault_is("quickbooks/errors/fault_6240_duplicate_name.json", "6240", "Duplicate Name Exists");
    fault_is("quickbooks/errors/fault_610_object_not_found.json", "610", "Object Not Found");
    fault_is("quickbooks/errors/fault_2020_required_param.json", "2020", "Name");
    fault_is("quickbooks/errors/fault_4000_query_parse.json", "4000", "QueryParserError");
}

static void test_xml_throttle_fault(void **state)
{
    (void)state;
    fault_is("quickbooks/errors/throttle_3001_status429.xml", "3001", "ThrottleExceeded");
}

static void test_lower_case_and_several_errors(void **state)
{
    (void)state;
    /* The 401 body Intuit sends uses lower-case keys (vcr/http401_authentication_failed.yml). */
    const char *body = "{\"fault\":{\"error\":[{\"message\":\"message=AuthenticationFailed; "
                       "errorCode=003200; statusCode=401\",\"detail\":\"Token expired\","
                       "\"code\":\"3200\"},{\"message\":\"second\",\"code\":\"120\"}],"
                       "\"type\":\"AUTHENTICATION\"}}";
    char c[16], msg[1024];
    assert_true(qbo_parse_fault(body, strlen(body), c, sizeof c, msg, sizeof msg));
    assert_string_equal(c, "3200");
    assert_non_null(strstr(msg, "AUTHENTICATION"));
    assert_non_null(strstr(msg, "Token expired"));
    assert_non_null(strstr(msg, "120 second"));
}

static void test_not_a_fault(void **state)
{
    (void)state;
    char c[16], msg[256];
    size_t len;
    char *body = read_fixture("quickbooks/rest/item_read_inventory.json", &len);
    assert_false(qbo_parse_fault(body, len, c, sizeof c, msg, sizeof msg));
    free(body);
    assert_false(qbo_parse_fault("", 0, c, sizeof c, msg, sizeof msg));
    assert_false(qbo_parse_fault("<html>oops", 10, c, sizeof c, msg, sizeof msg));
}

static void test_quote(void **state)
{
    (void)state;
    char *q = qbo_quote("Amy's Bird Sanctuary");
    assert_string_equal(q, "'Amy\\'s Bird Sanctuary'");
    free(q);
    q = qbo_quote("back\\slash");
    assert_string_equal(q, "'back\\\\slash'");
    free(q);
}

static void test_where_equals(void **state)
{
    (void)state;
    bool exact = false;
    char *w = qbo_where_equals("Name", "Amy's", &exact);
    assert_string_equal(w, "Name = 'Amy\\'s'");
    assert_true(exact);
    free(w);
    /* Curly quotes and dashes are refused by QuickBooks' lexer even in a
     * literal: a LIKE pattern instead, and the caller compares. */
    w = qbo_where_equals("DisplayName", "Caf\u00e9 \u2019t Hoekje \u2013 Kassa \u201cA\u201d",
                         &exact);
    assert_string_equal(w, "DisplayName LIKE 'Caf\u00e9 %t Hoekje % Kassa %A%'");
    assert_false(exact);
    free(w);
    w = qbo_where_equals("Name", "", &exact);
    assert_string_equal(w, "Name = ''");
    assert_true(exact);
    free(w);
}

static void test_tokens_from_response(void **state)
{
    (void)state;
    size_t len;
    char *text = read_fixture("quickbooks/oauth/token_refresh_success.json", &len);
    /* The fixture starts with a UTF-8 byte order mark, as Intuit's sample does. */
    const char *p = text;
    if (len >= 3 && (unsigned char)p[0] == 0xEF)
        p += 3;
    json_t *resp = json_loads(p, 0, NULL);
    assert_non_null(resp);
    json_t *t = qbo_tokens_from_response(resp, "123", 1000);
    assert_non_null(t);
    assert_string_equal(json_string_value(json_object_get(t, "access_token")),
                        json_string_value(json_object_get(resp, "access_token")));
    assert_int_equal(json_integer_value(json_object_get(t, "access_expires_ms")),
                     1000 + json_integer_value(json_object_get(resp, "expires_in")) * 1000);
    assert_false(json_is_true(json_object_get(t, "needs_reauth")));
    json_decref(t);
    json_decref(resp);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_faults),
        cmocka_unit_test(test_xml_throttle_fault),
        cmocka_unit_test(test_lower_case_and_several_errors),
        cmocka_unit_test(test_not_a_fault),
        cmocka_unit_test(test_quote),
        cmocka_unit_test(test_where_equals),
        cmocka_unit_test(test_tokens_from_response),
    };
    return cmocka_run_group_tests_name("qbo", tests, NULL, NULL);
}
