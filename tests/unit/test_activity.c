/*
 * test_activity.c - the activity log's redaction: which members are hidden,
 * and the one-pass check that lets a body without any be logged as it is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "task.h"

static json_t *load(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    return v;
}

static bool check(const char *text)
{
    return activity_may_hold_secret(text, strlen(text));
}

static void test_redacted_members(void **state)
{
    (void)state;
    json_t *v = load("{\"Name\": \"Amy\", \"Password\": \"p1\", \"x_API_KEY_y\": 7,"
                     " \"nested\": [{\"client_secret\": \"s\", \"token\": \"t\", \"Tokens\": 2,"
                     " \"Id_Token\": {\"deep\": 1}, \"PIN\": \"0000\", \"pinned\": true}],"
                     " \"Authorization\": \"Bearer x\", \"SyncToken\": \"3\","
                     " \"refresh_token\": \"r\", \"ident\": \"i\", \"identity\": \"kept\"}");
    json_t *r = activity_redacted(v);
    json_t *want =
        load("{\"Name\": \"Amy\", \"Password\": \"***\", \"x_API_KEY_y\": \"***\","
             " \"nested\": [{\"client_secret\": \"***\", \"token\": \"***\","
             " \"Tokens\": 2, \"Id_Token\": \"***\", \"PIN\": \"***\", \"pinned\": true}],"
             " \"Authorization\": \"***\", \"SyncToken\": \"3\","
             " \"refresh_token\": \"***\", \"ident\": \"***\", \"identity\": \"kept\"}");
    assert_true(json_equal(r, want));
    /* The original is untouched. */
    assert_string_equal(json_string_value(json_object_get(v, "Password")), "p1");
    json_decref(v);
    json_decref(r);
    json_decref(want);
}

static void test_check_finds_every_secret(void **state)
{
    (void)state;
    static const char *const secret[] = {
        "{\"password\":1}",
        "{\"PassWord\":1}",
        "{\"a\":{\"my_secret\":1}}",
        "{\"Authorization\":1}",
        "{\"APIKEY\":1}",
        "{\"x_api_key\":1}",
        "{\"access_token\":1}",
        "{\"Refresh_Token\":1}",
        "{\"token\":\"a\"}",
        "{\"TOKEN\":\"a\"}",
        "{\"id_token\":1}",
        "{\"Ident\":1}",
        "{\"pin\":1}",
        "{\"pass\\u0077ord\":1}",
        "[{\"b\":[{\"Secret\":2}]}]",
        "{\"password\"",
        "secret",
    };
    for (size_t i = 0; i < sizeof secret / sizeof *secret; i++) {
        if (!check(secret[i]))
            fail_msg("no secret seen in %s", secret[i]);
    }
    static const char *const plain[] = {
        "{\"Name\":\"Amy\",\"SyncToken\":\"0\"}",
        "{\"Tokens\":1,\"pinned\":2,\"identity\":3}",
        "{\"Description\":\"a \\\"quoted\\\" line\\nand a tab\\t\"}",
        "{\"Line\":[{\"Amount\":\"12.50\",\"DetailType\":\"SalesItemLineDetail\"}]}",
        "",
        "\"",
    };
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        if (check(plain[i]))
            fail_msg("a secret seen in %s", plain[i]);
    }
    /* Cut short: a name at the very end is still compared safely. */
    assert_false(activity_may_hold_secret("{\"passwor", 9));
    assert_true(activity_may_hold_secret("{\"password", 10));
}

/* Wherever redaction changes a body, the check says so. */
static void test_check_covers_redaction(void **state)
{
    (void)state;
    static const char *const names[] = {"password", "Secret",       "AUTHORIZATION", "apikey",
                                        "api_key",  "access_token", "refresh_token", "token",
                                        "Id_Token", "ident",        "pin",           "name",
                                        "Tokens",   "SyncToken",    "spin",          "x"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        for (int shape = 0; shape < 3; shape++) {
            json_t *v = json_object();
            json_t *inner = json_pack("{s:s}", names[i], "value");
            if (shape == 0) {
                json_object_set_new(v, "a", inner);
            } else if (shape == 1) {
                json_object_set_new(v, "list", json_pack("[i,o]", 1, inner));
            } else {
                json_object_update(v, inner);
                json_decref(inner);
            }
            json_t *r = activity_redacted(v);
            char *text = json_dumps(v, JSON_COMPACT);
            if (!json_equal(r, v) && !check(text))
                fail_msg("redaction changes %s, the check missed it", text);
            free(text);
            json_decref(r);
            json_decref(v);
        }
    }
}

/* What the check must find, the slow way: a \\u escape, a secret part
 * anywhere, or a secret name between quotes, in any letter case. */
static bool has_at(const char *text, size_t len, size_t at, const char *word)
{
    size_t n = strlen(word);
    return at + n <= len && strncasecmp(text + at, word, n) == 0;
}

static bool reference(const char *text, size_t len)
{
    static const char *const parts[] = {"password", "secret",       "authorization", "apikey",
                                        "api_key",  "access_token", "refresh_token"};
    static const char *const names[] = {"token", "id_token", "ident", "pin"};
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\' && i + 1 < len && text[i + 1] == 'u')
            return true;
        for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
            if (has_at(text, len, i, parts[k]))
                return true;
        for (size_t k = 0; text[i] == '"' && k < sizeof names / sizeof *names; k++) {
            size_t end = i + 1 + strlen(names[k]);
            if (has_at(text, len, i + 1, names[k]) && end < len && text[end] == '"')
                return true;
        }
    }
    return false;
}

/* Random texts built from the letters of the secret words, quotes and
 * backslashes, in both cases: the check agrees with the slow way on each. */
static void test_check_as_the_slow_way(void **state)
{
    (void)state;
    static const char pieces[][16] = {
        "pa",     "ss",  "word", "se",    "cret", "au", "thorization", "api", "key", "_",
        "access", "ref", "resh", "token", "id",   "en", "pin",         "\"",  "\\",  "u",
        "a",      "s",   "p",    "r",     "t",    "i",  "x",           ":",   " ",   "\xc3\xa9"};
    unsigned seed = 7;
    char text[96];
    for (int round = 0; round < 50000; round++) {
        size_t len = 0;
        int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
        for (int k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            const char *p = pieces[(seed >> 16) % (sizeof pieces / sizeof *pieces)];
            bool upper = (seed >> 8) & 1;
            for (; *p && len < sizeof text - 1; p++)
                text[len++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        }
        text[len] = '\0';
        bool want = reference(text, len);
        if (activity_may_hold_secret(text, len) != want)
            fail_msg("the check says %s for <%s>", want ? "no secret" : "a secret", text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redacted_members),
        cmocka_unit_test(test_check_finds_every_secret),
        cmocka_unit_test(test_check_covers_redaction),
        cmocka_unit_test(test_check_as_the_slow_way),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
