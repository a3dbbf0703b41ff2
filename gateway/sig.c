/*
 * sig.c - HMAC-SHA256 signatures and constant-time comparison (OpenSSL).
 */
#include "sig.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

void sig_sign(const void *key, size_t keylen, const void *msg, size_t msglen, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    /* HMAC() with an empty key needs a non-NULL pointer. */
    static const unsigned char empty = 0;
    HMAC(EVP_sha256(), keylen ? key : &empty, (int)keylen, msglen ? msg : &empty, msglen, mac,
         &maclen);
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    OPENSSL_cleanse(mac, sizeof mac);
}

bool sig_verify(const void *key, size_t keylen, const void *msg, size_t msglen, const char *header)
{
    if (header == NULL)
        return false;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t hlen = strlen(header);
    while (hlen > 0 && (header[hlen - 1] == ' ' || header[hlen - 1] == '\t'))
        hlen--;
    char want[GW_SIG_B64_LEN];
    sig_sign(key, keylen, msg, msglen, want);
    if (hlen != GW_SIG_B64_LEN - 1)
        return false;
    return CRYPTO_memcmp(want, header, GW_SIG_B64_LEN - 1) == 0;
}

void sig_sha256(const void *msg, size_t msglen, unsigned char out[32])
{
    SHA256(msg, msglen, out);
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
