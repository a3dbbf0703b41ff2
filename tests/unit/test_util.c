/* Unit tests: checked parsers and timestamp normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "util.h"

static void norm_is(const char *in, const char *want)
{
    char out[GW_TS_LEN];
    assert_true(gw_ts_normalise(in, out, sizeof out));
    assert_string_equal(out, want);
}

static void test_timestamps_intuit_formats(void **state)
{
    (void)state;
    /* The three forms seen in Intuit's own material, plus epoch ms. */
    norm_is("2015-10-05T14:42:19-0700", "2015-10-05T21:42:19.000Z");
    norm_is("2016-10-05T03:09:04.000Z", "2016-10-05T03:09:04.000Z");
    norm_is("2025-09-08T20:52:31.657Z", "2025-09-08T20:52:31.657Z");
    norm_is("2025-09-10T21:31:25.179851517Z", "2025-09-10T21:31:25.179Z");
    norm_is("1444081339000", "2015-10-05T21:42:19.000Z");
    norm_is("2015-10-05T14:42:19-07:00", "2015-10-05T21:42:19.000Z");
    norm_is("2015-10-05T23:42:19+02", "2015-10-05T21:42:19.000Z");
    /* One instant, written three ways, normalises to one key. */
    norm_is("2016-10-05T03:09:04Z", "2016-10-05T03:09:04.000Z");
}

static void test_timestamps_rejected(void **state)
{
    (void)state;
    char out[GW_TS_LEN];
    const char *bad[] = {"",
                         "yesterday",
                         "2015-10-05T14:42:19",      /* no zone: ambiguous */
                         "2015-13-05T14:42:19Z",     /* month 13 */
                         "2015-02-30T14:42:19Z",     /* 30 February */
                         "2015-10-05T14:42:19Zjunk", /* trailing junk */
                         "2015-10-05T14:42:19.Z",    /* empty fraction */
                         "2015-10-05T14:42:19+2500", /* offset hours */
                         "123",
                         "413133141339314", /* epoch ms past year 9999 */
                         "1969-12-31T23:59:59Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(gw_ts_normalise(bad[i], out, sizeof out));
}

static void test_checked_numbers(void **state)
{
    (void)state;
    uint64_t u;
    int64_t i;
    assert_true(gw_strtou64("18446744073709551615", &u));
    assert_true(u == UINT64_MAX);
    assert_false(gw_strtou64("18446744073709551616", &u));
    assert_false(gw_strtou64("-1", &u));
    assert_false(gw_strtou64("12x", &u));
    assert_false(gw_strtou64("", &u));
    assert_false(gw_strtou64(" 1", &u));
    assert_true(gw_strtoi64("-42", &i));
    assert_int_equal(i, -42);
    assert_false(gw_strtoi64("4 2", &i));
    /* As written: a leading zero is another text of the number. */
    assert_true(gw_strtou64_plain("0", &u));
    assert_int_equal(u, 0);
    assert_true(gw_strtou64_plain("1001", &u));
    assert_int_equal(u, 1001);
    assert_false(gw_strtou64_plain("01001", &u));
    assert_false(gw_strtou64_plain("00", &u));
    assert_false(gw_strtou64_plain("", &u));
    assert_false(gw_strtou64_plain(NULL, &u));
}

static void test_utf8_prefix_and_lists(void **state)
{
    (void)state;
    assert_int_equal(gw_utf8_prefix("abc", 2), 2);
    assert_int_equal(gw_utf8_prefix("abc", 5), 3);
    /* "é" is two bytes, "–" three: a cut never splits one. */
    assert_int_equal(gw_utf8_prefix("\u00e9\u00e9x", 2), 4);
    assert_int_equal(gw_utf8_prefix("a\u2013b", 2), 4);
    assert_int_equal(gw_utf8_prefix("", 3), 0);
    assert_true(gw_list_has("1, 12 3", "12"));
    assert_true(gw_list_has("1,12,3", "3"));
    assert_false(gw_list_has("1, 12 3", "2"));
    assert_false(gw_list_has("", "1"));
    assert_false(gw_list_has(NULL, "1"));
    assert_false(gw_list_has("1", ""));
}

/* Character c as UTF-8 in out (room for 4 and a NUL): its length. */
static int encode(unsigned c, char *out)
{
    if (c < 0x80)
        return out[0] = (char)c, 1;
    if (c < 0x800)
        return out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F)), 2;
    if (c < 0x10000)
        return out[0] = (char)(0xE0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3F)),
               out[2] = (char)(0x80 | (c & 0x3F)), 3;
    return out[0] = (char)(0xF0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3F)),
           out[2] = (char)(0x80 | (c >> 6 & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F)), 4;
}

/* s trimmed by gw_trim_space, as a new string. */
static char *trimmed(const char *s)
{
    size_t start, len = gw_trim_space(s, strlen(s), &start);
    return strndup(s + start, len);
}

static void expect_trim(const char *s, const char *want)
{
    char *got = trimmed(s);
    assert_string_equal(got, want);
    free(got);
}

/* Exactly what jq's \s (Unicode White_Space) trims: its 25 characters,
 * listed by running every character through `test("^\\s$")` in jq 1.6. */
static void test_trim_space(void **state)
{
    (void)state;
    static const unsigned space[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,
                                     0xA0,   0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                                     0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028,
                                     0x2029, 0x202F, 0x205F, 0x3000};
    /* Their neighbours and look-alikes are text. */
    static const unsigned text[] = {0x08,   0x0E,   0x1F,   0x21,   0x84,   0x86,   0x9F,   0xA1,
                                    0x167F, 0x1681, 0x180E, 0x1FFF, 0x200B, 0x2027, 0x202A, 0x202E,
                                    0x2030, 0x205E, 0x2060, 0x2FFF, 0x3001, 0xFEFF, 0x1F37A};
    char buf[32], want[16];
    for (size_t i = 0; i < sizeof space / sizeof space[0]; i++) {
        char c[5] = {0};
        assert_true(encode(space[i], c) > 0);
        snprintf(buf, sizeof buf, "%sa%sb%s%s", c, c, c, c);
        snprintf(want, sizeof want, "a%sb", c);
        expect_trim(buf, want);
        expect_trim(c, "");
    }
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        char c[5] = {0};
        assert_true(encode(text[i], c) > 0);
        snprintf(buf, sizeof buf, " %sa%s ", c, c);
        snprintf(want, sizeof want, "%sa%s", c, c);
        expect_trim(buf, want);
    }
    expect_trim("", "");
    expect_trim("Koffie", "Koffie");
    expect_trim(" \u00a0\u3000 ", "");
    /* A sequence that is not well formed is text, whatever its bytes. */
    expect_trim(" \xc2", "\xc2");
    expect_trim("\x80 ", "\x80");
    expect_trim(" \xe2\x80", "\xe2\x80");
    expect_trim("\xa0 x", "\xa0 x");
    expect_trim("\xc0\xa0x\xc0\xa0", "\xc0\xa0x\xc0\xa0"); /* an overlong space */
}

static void test_media_type(void **state)
{
    (void)state;
    assert_true(gw_media_type_is("application/json", "application/json"));
    assert_true(gw_media_type_is("Application/JSON; charset=utf-8", "application/json"));
    assert_false(gw_media_type_is("application/jsonx", "application/json"));
    assert_false(gw_media_type_is("text/plain", "application/json"));
    assert_false(gw_media_type_is(NULL, "application/json"));
}

/* gw_json_stringn is json_stringn: the same string, the same refusals,
 * wherever in the word-at-a-time check a byte falls. */
static void test_json_stringn(void **state)
{
    (void)state;
    char buf[40];
    for (size_t len = 0; len <= 24; len++) {
        for (size_t at = 0; at <= len; at++) {
            static const char *const odd[] = {"\xc3\xa9", "\xff", "\xc3", "\x00", "\xe2\x80\x83"};
            for (size_t k = 0; k < sizeof odd / sizeof *odd; k++) {
                size_t olen = k == 3 ? 1 : strlen(odd[k]);
                memset(buf, 'a' + (int)(len % 26), sizeof buf);
                memcpy(buf + at, odd[k], olen);
                size_t n = at + olen > len ? at + olen : len;
                json_t *want = json_stringn(buf, n), *got = gw_json_stringn(buf, n);
                if ((want == NULL) != (got == NULL) ||
                    (want && (json_string_length(want) != json_string_length(got) ||
                              memcmp(json_string_value(want), json_string_value(got), n) != 0)))
                    fail_msg("%zu bytes with %s at %zu: not as json_stringn", n, odd[k], at);
                json_decref(want);
                json_decref(got);
            }
        }
        json_t *plain = gw_json_stringn("abcdefghijklmnopqrstuvwxyz", len);
        assert_non_null(plain);
        assert_int_equal(json_string_length(plain), len);
        json_decref(plain);
    }
}

/* gw_json_trimmed: trimmed as gw_trim_space, cut by characters, or null. */
static void test_json_trimmed(void **state)
{
    (void)state;
    json_t *v = gw_json_trimmed("\xe2\x80\x83 caf\xc3\xa9 bar\xe3\x80\x80", 5);
    assert_string_equal(json_string_value(v), "caf\xc3\xa9 "); /* 5 characters, 6 bytes */
    json_decref(v);
    v = gw_json_trimmed(" 1-12 ", SIZE_MAX);
    assert_string_equal(json_string_value(v), "1-12");
    json_decref(v);
    assert_true(json_is_null(gw_json_trimmed(" \xc2\xa0\t", 21)));
    assert_true(json_is_null(gw_json_trimmed("", 21)));
    assert_true(json_is_null(gw_json_trimmed(NULL, 21)));
}

static void test_hex(void **state)
{
    (void)state;
    const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
    char out[2 * sizeof in + 1];
    memset(out, 'x', sizeof out);
    gw_hex(in, sizeof in, out);
    assert_string_equal(out, "000fa5ff10");
    gw_hex(in, 0, out);
    assert_string_equal(out, "");
}

static void test_financial_days(void **state)
{
    (void)state;
    assert_int_equal(gw_day_parse("2026-12-07"), 20261207);
    assert_int_equal(gw_day_parse("2026-13-01"), -1);
    assert_int_equal(gw_day_parse("2026-1-07"), -1);
    assert_int_equal(gw_day_parse("2026- 1-07"), -1);
    assert_int_equal(gw_day_parse("+026-12-07"), -1);
    assert_int_equal(gw_day_parse("2026-02-31"), -1);
    assert_int_equal(gw_day_parse("2026-02-29"), -1);
    assert_int_equal(gw_day_parse("2028-02-29"), 20280229);
    assert_int_equal(gw_day_parse("2100-02-29"), -1);
    assert_int_equal(gw_day_parse("2026-12-07x"), -1);
    assert_int_equal(gw_day_parse(NULL), -1);
    assert_int_equal(gw_day_add(20261231, 1), 20270101);
    assert_int_equal(gw_day_add(20240301, -1), 20240229);
    assert_int_equal(gw_day_add(20261207, -7), 20261130);
    char out[16];
    gw_day_text(20270105, out);
    assert_string_equal(out, "2027-01-05");
}

/* gw_ts_format writes what snprintf would, whatever the time (years out of
 * 0..9999 and buffers too short included). */
static void test_ts_format_as_snprintf(void **state)
{
    (void)state;
    const int64_t fixed[] = {0,
                             -1,
                             -999,
                             -1000,
                             -1001,
                             999,
                             1000,
                             951782400000,    /* 2000-02-29 */
                             1796680000123,   /* 2026 */
                             253402300799999, /* 9999-12-31T23:59:59.999 */
                             253402300800000, /* year 10000 */
                             -62167219200000, /* year 0 */
                             -62167219200001, /* year -1 */
                             -62135596800000 /* 0001-01-01 */};
    unsigned seed = 7;
    for (int i = 0; i < 20000; i++) {
        int64_t ms;
        if (i < (int)(sizeof fixed / sizeof fixed[0])) {
            ms = fixed[i];
        } else {
            seed = seed * 1103515245u + 12345u;
            int64_t hi = (int64_t)(seed >> 8);
            seed = seed * 1103515245u + 12345u;
            ms = (hi * 16777216 + (int64_t)(seed >> 8)) % 300000000000000 - 70000000000000;
        }
        time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char want[64], got[64];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(ms - (int64_t)t * 1000));
        memset(got, 'x', sizeof got);
        gw_ts_format(ms, got, sizeof got);
        assert_string_equal(got, want);
        size_t shortn = (size_t)(i % 26); /* too short: cut as snprintf cuts */
        char cut[32], cutwant[32];
        memset(cut, 'x', sizeof cut);
        memset(cutwant, 'x', sizeof cutwant);
        gw_ts_format(ms, cut, shortn);
        if (shortn > 0)
            snprintf(cutwant, shortn, "%s", want);
        assert_memory_equal(cut, cutwant, sizeof cut);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps_intuit_formats),
        cmocka_unit_test(test_timestamps_rejected),
        cmocka_unit_test(test_checked_numbers),
        cmocka_unit_test(test_media_type),
        cmocka_unit_test(test_utf8_prefix_and_lists),
        cmocka_unit_test(test_trim_space),
        cmocka_unit_test(test_financial_days),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_json_stringn),
        cmocka_unit_test(test_json_trimmed),
        cmocka_unit_test(test_ts_format_as_snprintf),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
