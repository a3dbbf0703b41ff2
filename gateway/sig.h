/*
 * sig.h - webhook signatures: base64(HMAC-SHA256(key, raw body)), as Intuit
 * (intuit-signature) and MplusKASSA (X-Mplus-Signature) both use, checked in
 * constant time. The only module that includes OpenSSL's HMAC.
 */
#ifndef GW_SIG_H
#define GW_SIG_H

#include <stdbool.h>
#include <stddef.h>

#define GW_SIG_B64_LEN 45 /* 44 base64 characters and a NUL */

/* Write base64(HMAC-SHA256(key, msg)) into out (GW_SIG_B64_LEN bytes). */
void sig_sign(const void *key, size_t keylen, const void *msg, size_t msglen, char *out);

/*
 * True when header (may be NULL) is the base64 HMAC-SHA256 of msg under key.
 * The comparison does not depend on where the strings differ.
 */
bool sig_verify(const void *key, size_t keylen, const void *msg, size_t msglen, const char *header);

/*
 * A prepared HMAC-SHA256 key: set up once, then each signature costs only
 * the hashing (the one-shot form looks the algorithm up on every call).
 * It holds the state of the message being signed: one thread at a time.
 */
struct sig_key;
struct sig_key *sig_key_new(const void *key, size_t keylen);
void sig_key_free(struct sig_key *k);
void sig_key_sign(const struct sig_key *k, const void *msg, size_t msglen, char *out);
bool sig_key_verify(const struct sig_key *k, const void *msg, size_t msglen, const char *header);

/* SHA-256 of msg into out[32]; used to make fixed-size dedupe keys. */
void sig_sha256(const void *msg, size_t msglen, unsigned char out[32]);
/* SHA-256 of a followed by b; false when OpenSSL fails. */
bool sig_sha256_2(const void *a, size_t alen, const void *b, size_t blen, unsigned char out[32]);

/* Constant-time equality of two NUL-terminated secrets (e.g. a bearer token). */
bool sig_token_equal(const char *a, const char *b);

/* base64 of data, new NUL-terminated string. */
char *sig_base64(const void *data, size_t len);

/* Fill buf with cryptographically strong random bytes; 0 or -1. */
int sig_random(unsigned char *buf, size_t len);

#endif
