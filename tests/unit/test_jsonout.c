/* Unit tests: gw_json_text writes what json_dumps writes, byte for byte. */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "jsonout.h"

static const size_t flag_sets[] = {
    JSON_COMPACT,
    JSON_COMPACT | JSON_PRESERVE_ORDER,
    JSON_COMPACT | JSON_SORT_KEYS,
    JSON_COMPACT | JSON_ENCODE_ANY,
    JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(4),
    JSON_INDENT(2) | JSON_PRESERVE_ORDER,               /* handed to json_dumps */
    JSON_COMPACT | JSON_ENSURE_ASCII,                   /* handed to json_dumps */
    JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_ENCODE_ANY, /* handed to json_dumps */
};
#define NFLAGS (sizeof flag_sets / sizeof flag_sets[0])

/* Both writers agree on v under every flag set: the same text (or both
 * NULL), and the length given is the text's. Returns how many texts. */
static int same_as_jansson(const json_t *v)
{
    int texts = 0;
    for (size_t f = 0; f < NFLAGS; f++) {
        char *want = json_dumps(v, flag_sets[f]);
        size_t len = 12345;
        char *got = gw_json_text(v, flag_sets[f], &len);
        if (want == NULL) {
            assert_null(got);
        } else {
            assert_non_null(got);
            assert_string_equal(got, want);
            assert_int_equal(len, strlen(want));
            texts++;
        }
        free(want);
        free(got);
    }
    return texts;
}

static void test_fixtures_as_jansson_writes_them(void **state)
{
    (void)state;
    const char *dirs[] = {GW_FIXTURES "/quickbooks/errors", GW_FIXTURES "/quickbooks/oauth",
                          GW_FIXTURES "/quickbooks/rest", GW_FIXTURES "/quickbooks/webhooks"};
    int files = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        DIR *dir = opendir(dirs[d]);
        assert_non_null(dir);
        for (struct dirent *e; (e = readdir(dir)) != NULL;) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            json_error_t err;
            json_t *v = json_load_file(path, JSON_DECODE_ANY, &err);
            if (v == NULL)
                continue; /* two are annotated, not JSON */
            assert_int_equal(same_as_jansson(v), NFLAGS);
            json_decref(v);
            files++;
        }
        closedir(dir);
    }
    assert_true(files >= 15); /* the fixtures were found */
}

static void test_strings_escaped_as_jansson_does(void **state)
{
    (void)state;
    /* Every ASCII byte, with the two-character escapes and \u00XX. */
    char all[128];
    for (int c = 1; c < 128; c++)
        all[c - 1] = (char)c;
    json_t *v = json_pack("{s:s#, s:s, s:s, s:s, s:s#}", "ascii", all, (int)sizeof all - 1, "utf8",
                          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "quote\"back\\", "x\"y", "",
                          "", "nul", "a\0b", 3);
    assert_non_null(v);
    json_object_set_new(v, "key\twith\x01 controls", json_string("v"));
    assert_int_equal(same_as_jansson(v), NFLAGS);
    size_t len;
    char *text = gw_json_text(v, JSON_COMPACT, &len);
    assert_non_null(strstr(text, "\\u0001\\u0002"));
    assert_non_null(strstr(text, "\\b\\t\\n\\u000B\\f\\r"));
    assert_non_null(strstr(text, "\"nul\":\"a\\u0000b\""));
    free(text);
    json_decref(v);
}

/* Strings read a word at a time: a byte to escape anywhere in a word, or
 * none, with bytes on either side of each that must be escaped and UTF-8
 * sequences (high bytes) among them. */
static void test_strings_a_word_at_a_time(void **state)
{
    (void)state;
    static const char *const pieces[] = {"a",        " ",
                                         "!",        "#",
                                         "[",        "]",
                                         "\x1f",     "\x7f",
                                         "\"",       "\\",
                                         "\n",       "\x01",
                                         "\xc3\xa9", "\xe2\x82\xac",
                                         "\t",       "~",
                                         "\x1e",     "\xf0\x9f\x98\x80"};
    const size_t np = sizeof pieces / sizeof pieces[0];
    unsigned seed = 12345;
    char text[256]; /* 40 pieces of at most 4 bytes */
    for (int round = 0; round < 4000; round++) {
        size_t len = 0;
        seed = seed * 1103515245u + 12345u;
        size_t count = (seed >> 16) % 40;
        for (size_t k = 0; k < count; k++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly plain letters, so whole words pass untouched too. */
            const char *p = (seed >> 16) % 3 ? "a" : pieces[(seed >> 8) % np];
            size_t pl = strlen(p);
            memcpy(text + len, p, pl);
            len += pl;
        }
        /* As a value and as a key. */
        json_t *v = json_object();
        assert_int_equal(json_object_set_new(v, "s", json_stringn(text, len)), 0);
        assert_int_equal(json_object_setn_new(v, text, len, json_true()), 0);
        assert_int_equal(same_as_jansson(v), NFLAGS);
        json_decref(v);
    }
}

static void test_numbers_as_jansson_writes_them(void **state)
{
    (void)state;
    json_t *v = json_pack("[I,I,I,I,I,f,f,f,f,f,f,f,b,b,n]", (json_int_t)0, (json_int_t)-1,
                          (json_int_t)1234567890123, (json_int_t)INT64_MAX, (json_int_t)INT64_MIN,
                          0.1, -0.0, 3.0, 1e300, 1.5e-7, -2.5, 123456789.125, 1, 0);
    assert_non_null(v);
    assert_int_equal(same_as_jansson(v), NFLAGS);
    char *text = gw_json_text(v, JSON_COMPACT, NULL);
    assert_non_null(strstr(text, "-9223372036854775808"));
    free(text);
    json_decref(v);
}

static void test_keys_sorted_as_jansson_sorts_them(void **state)
{
    (void)state;
    json_t *v = json_object();
    const char *keys[] = {"b", "a", "ab", "aa", "A", "", "a\xc3\xa9", "\xc3\xa9", "z"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        json_object_set_new(v, keys[i], json_integer((json_int_t)i));
    json_object_setn_new(v, "a\0c", 3, json_true()); /* after "a", before "aa" */
    json_object_set_new(v, "nested",
                        json_pack("{s:[{s:i,s:i},{},[]], s:{}}", "y", "q", 1, "p", 2, "x"));
    assert_int_equal(same_as_jansson(v), NFLAGS);
    char *text = gw_json_text(v, JSON_COMPACT | JSON_SORT_KEYS, NULL);
    assert_non_null(strstr(text, "{\"\":5,\"A\":4,\"a\":1,\"a\\u0000c\":true,\"aa\":3,\"ab\":2,"));
    free(text);
    text = gw_json_text(v, JSON_COMPACT, NULL); /* insertion order */
    assert_true(strncmp(text, "{\"b\":0,\"a\":1,", 13) == 0);
    free(text);
    json_decref(v);
}

static void test_scalars_and_depth(void **state)
{
    (void)state;
    json_t *scalars[] = {json_string("x"), json_integer(7), json_real(0.5), json_true(),
                         json_null()};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        assert_null(gw_json_text(scalars[i], JSON_COMPACT, NULL)); /* as json_dumps */
        assert_int_equal(same_as_jansson(scalars[i]), 3);          /* the ENCODE_ANY sets */
        json_decref(scalars[i]);
    }
    assert_null(gw_json_text(NULL, JSON_COMPACT, NULL));

    /* Nested deeper than jansson would ever parse: refused, not a crash. */
    json_t *deep = json_array();
    for (int i = 0; i < 3000; i++)
        deep = json_pack("[o]", deep);
    assert_null(gw_json_text(deep, JSON_COMPACT, NULL));
    json_decref(deep);
    json_t *ok = json_array();
    for (int i = 0; i < 100; i++)
        ok = json_pack("[o]", ok);
    assert_int_equal(same_as_jansson(ok), NFLAGS);
    json_decref(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_as_jansson_writes_them),
        cmocka_unit_test(test_strings_escaped_as_jansson_does),
        cmocka_unit_test(test_strings_a_word_at_a_time),
        cmocka_unit_test(test_numbers_as_jansson_writes_them),
        cmocka_unit_test(test_keys_sorted_as_jansson_sorts_them),
        cmocka_unit_test(test_scalars_and_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
