/*
 * sig.c - HMAC-SHA256 signatures and constant-time comparison (OpenSSL).
 */
#include "sig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct sig_key {
    EVP_MAC_CTX *ctx; /* keyed with the key once (its pads computed) */
};

struct sig_key *sig_key_new(const void *key, size_t keylen)
{
    static const unsigned char empty = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    struct sig_key *k = calloc(1, sizeof *k);
    if (mac == NULL || k == NULL || (k->ctx = EVP_MAC_CTX_new(mac)) == NULL) {
        EVP_MAC_free(mac);
        free(k);
        return NULL;
    }
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(k->ctx, keylen ? key : &empty, keylen, params) != 1) {
        sig_key_free(k);
        return NULL;
    }
    return k;
}

void sig_key_free(struct sig_key *k)
{
    if (k == NULL)
        return;
    EVP_MAC_CTX_free(k->ctx);
    free(k);
}

void sig_key_sign(const struct sig_key *k, const void *msg, size_t msglen, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    /* Init without a key starts a message with the key already set: no
     * copy of the context per message. */
    if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(k->ctx, msg, msglen) != 1 ||
        EVP_MAC_final(k->ctx, mac, &maclen, sizeof mac) != 1)
        maclen = 0;
    if (maclen == 0) {
        out[0] = '\0'; /* matches no header */
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    OPENSSL_cleanse(mac, sizeof mac);
}

bool sig_key_verify(const struct sig_key *k, const void *msg, size_t msglen, const char *header)
{
    if (header == NULL || k == NULL)
        return false;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t hlen = strlen(header);
    while (hlen > 0 && (header[hlen - 1] == ' ' || header[hlen - 1] == '\t'))
        hlen--;
    char want[GW_SIG_B64_LEN];
    sig_key_sign(k, msg, msglen, want);
    if (hlen != GW_SIG_B64_LEN - 1 || want[0] == '\0')
        return false;
    return CRYPTO_memcmp(want, header, GW_SIG_B64_LEN - 1) == 0;
}

void sig_sign(const void *key, size_t keylen, const void *msg, size_t msglen, char *out)
{
    struct sig_key *k = sig_key_new(key, keylen);
    if (k == NULL) {
        out[0] = '\0';
        return;
    }
    sig_key_sign(k, msg, msglen, out);
    sig_key_free(k);
}

bool sig_verify(const void *key, size_t keylen, const void *msg, size_t msglen, const char *header)
{
    struct sig_key *k = sig_key_new(key, keylen);
    bool ok = sig_key_verify(k, msg, msglen, header);
    sig_key_free(k);
    return ok;
}

void sig_sha256(const void *msg, size_t msglen, unsigned char out[32])
{
    SHA256(msg, msglen, out);
}

/*
 * SHA-256 fetched once: EVP_sha256() makes each digest look the algorithm up
 * again (a lock and a cache search), a third of the cost of an inbox
 * record's check. Kept for the life of the process.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

bool sig_sha256_2(const void *a, size_t alen, const void *b, size_t blen, unsigned char out[32])
{
    pthread_once(&sha256_once, sha256_fetch);
    const EVP_MD *md = sha256_md != NULL ? sha256_md : EVP_sha256();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
              EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
              EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool sig_token_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return false;
    /* Hash both sides so the compare has a fixed length whatever the input. */
    unsigned char ha[32], hb[32];
    SHA256((const unsigned char *)a, strlen(a), ha);
    SHA256((const unsigned char *)b, strlen(b), hb);
    return CRYPTO_memcmp(ha, hb, 32) == 0;
}

char *sig_base64(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

int sig_random(unsigned char *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}
