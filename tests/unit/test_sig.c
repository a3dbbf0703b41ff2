/* Unit tests: webhook signatures against Intuit's SDK test vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "sig.h"
#include "testutil.h"

static json_t *vectors(void)
{
    char *text = read_fixture("quickbooks/webhooks/signature_vectors.json", NULL);
    json_t *v = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(v);
    json_t *a = json_object_get(v, "vectors");
    assert_int_equal(json_array_size(a), 2);
    json_incref(a);
    json_decref(v);
    return a;
}

static void test_sdk_vectors_verify(void **state)
{
    (void)state;
    json_t *a = vectors();
    size_t i;
    json_t *vec;
    json_array_foreach(a, i, vec)
    {
        char rel[256];
        snprintf(rel, sizeof rel, "quickbooks/webhooks/%s",
                 json_string_value(json_object_get(vec, "body_file")));
        size_t len;
        char *body = read_fixture(rel, &len);
        assert_int_equal(len, json_integer_value(json_object_get(vec, "body_length")));
        const char *token = json_string_value(json_object_get(vec, "verifier_token"));
        const char *sig = json_string_value(json_object_get(vec, "intuit_signature"));
        assert_true(sig_verify(token, strlen(token), body, len, sig));

        char mine[GW_SIG_B64_LEN];
        sig_sign(token, strlen(token), body, len, mine);
        assert_string_equal(mine, sig);

        /* Any one-byte change to the body fails, wherever it is. */
        for (size_t pos = 0; pos < len; pos += 7) {
            body[pos] ^= 0x01;
            assert_false(sig_verify(token, strlen(token), body, len, sig));
            body[pos] ^= 0x01;
        }
        /* So does a one-character change to the signature, or the wrong key. */
        char bad[GW_SIG_B64_LEN];
        memcpy(bad, sig, sizeof bad);
        bad[5] = bad[5] == 'A' ? 'B' : 'A';
        assert_false(sig_verify(token, strlen(token), body, len, bad));
        assert_false(sig_verify("wrong", 5, body, len, sig));
        json_t *neg = json_object_get(vec, "negative_signature");
        if (neg != NULL)
            assert_false(sig_verify(token, strlen(token), body, len, json_string_value(neg)));
        free(body);
    }
    json_decref(a);
}

static void test_missing_and_truncated_header(void **state)
{
    (void)state;
    assert_false(sig_verify("k", 1, "x", 1, NULL));
    assert_false(sig_verify("k", 1, "x", 1, ""));
    char s[GW_SIG_B64_LEN];
    sig_sign("k", 1, "x", 1, s);
    s[43] = '\0'; /* one character short */
    assert_false(sig_verify("k", 1, "x", 1, s));
}

static void test_token_equal(void **state)
{
    (void)state;
    assert_true(sig_token_equal("secret-token", "secret-token"));
    assert_false(sig_token_equal("secret-token", "secret-tokeN"));
    assert_false(sig_token_equal("secret-token", "secret-token-longer"));
    assert_false(sig_token_equal(NULL, "x"));
}

/* The inbox's record check is plain SHA-256 over two pieces: the FIPS 180-2
 * vector for "abc", split anywhere, so inbox files stay readable. */
static void test_sha256_of_two_pieces(void **state)
{
    (void)state;
    static const unsigned char want[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                           0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                           0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                           0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    unsigned char got[32];
    for (size_t cut = 0; cut <= 3; cut++) {
        memset(got, 0, sizeof got);
        assert_true(sig_sha256_2("abc", cut, &"abc"[cut], 3 - cut, got));
        assert_memory_equal(got, want, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdk_vectors_verify),
        cmocka_unit_test(test_missing_and_truncated_header),
        cmocka_unit_test(test_token_equal),
        cmocka_unit_test(test_sha256_of_two_pieces),
    };
    return cmocka_run_group_tests_name("sig", tests, NULL, NULL);
}
