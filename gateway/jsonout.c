/*
 * jsonout.c - compact JSON text from jansson values (see jsonout.h).
 *
 * One growing buffer; runs of plain bytes are copied whole, integers are
 * written by hand, reals (rare: money travels as decimal text) by jansson
 * itself so that they read exactly as json_dumps writes them.
 */
#include "jsonout.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* jansson's parser goes no deeper */

/* The flags written here; any other is json_dumps's. */
#define HANDLED                                                                                    \
    (JSON_COMPACT | JSON_SORT_KEYS | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY |                       \
     JSON_REAL_PRECISION(0x1F))

static bool reserve(struct gw_out *o, size_t n)
{
    if (o->failed)
        return false;
    if (o->cap - o->len >= n)
        return true;
    size_t cap = o->cap ? o->cap : 512;
    while (cap - o->len < n)
        cap *= 2;
    char *b = realloc(o->buf, cap);
    if (b == NULL) {
        o->failed = true;
        return false;
    }
    o->buf = b;
    o->cap = cap;
    return true;
}

void gw_out_bytes(struct gw_out *o, const char *s, size_t n)
{
    if (n > 0 && reserve(o, n)) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
    }
}

void gw_out_char(struct gw_out *o, char c)
{
    if (reserve(o, 1))
        o->buf[o->len++] = c;
}

/*
 * Whether one of the 8 bytes of w must be escaped: below 0x20, '"' or '\\'.
 * The tests for a zero byte and for a byte below n (n <= 128) may be wrong
 * about which byte, never about whether there is one.
 */
static bool word_needs_escape(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), back = w ^ (ones * '\\');
    return (((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((back - ones) & ~back)) & high;
}

static bool byte_needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* How many bytes at the start of s[0..n) are written as they are. */
static size_t plain_prefix(const char *s, size_t n)
{
    size_t i = 0;
    uint64_t w;
    while (i + 8 <= n && (memcpy(&w, s + i, 8), !word_needs_escape(w)))
        i += 8; /* most text has nothing to escape: a word at a time */
    while (i < n && !byte_needs_escape((unsigned char)s[i]))
        i++;
    return i;
}

/* A string in quotes, escaped as jansson does: the two-character escapes it
 * knows, \u00XX (upper-case hex) for the other control characters. */
void gw_out_string(struct gw_out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char short_escape[128] = {['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
                                           ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't'};
    size_t plain = plain_prefix(s, n);
    if (!reserve(o, plain + 2))
        return;
    o->buf[o->len++] = '"';
    if (plain > 0)
        memcpy(o->buf + o->len, s, plain);
    o->len += plain;
    for (size_t i = plain; i < n;) {
        unsigned char c = (unsigned char)s[i++];         /* one to escape */
        char esc[6] = {'\\', short_escape[c], '0', '0'}; /* \x or \u00XX */
        size_t len = 2;
        if (esc[1] == 0) {
            esc[1] = 'u';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            len = 6;
        }
        gw_out_bytes(o, esc, len);
        plain = plain_prefix(s + i, n - i);
        gw_out_bytes(o, s + i, plain);
        i += plain;
    }
    gw_out_char(o, '"');
}

void gw_out_integer(struct gw_out *o, json_int_t v)
{
    char digits[24];
    size_t i = sizeof digits;
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        digits[--i] = '-';
    gw_out_bytes(o, digits + i, sizeof digits - i);
}

static void put_real(struct gw_out *o, const json_t *v, size_t flags)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | (flags & JSON_REAL_PRECISION(0x1F)));
    if (text == NULL) {
        o->failed = true;
        return;
    }
    gw_out_bytes(o, text, strlen(text));
    free(text);
}

void gw_out_real(struct gw_out *o, double d)
{
    json_t *v = json_real(d);
    if (v == NULL) {
        o->failed = true;
        return;
    }
    put_real(o, v, 0);
    json_decref(v);
}

char *gw_out_finish(struct gw_out *o, size_t *len)
{
    gw_out_char(o, '\0');
    if (o->failed) {
        free(o->buf);
        *o = (struct gw_out){0};
        return NULL;
    }
    if (len != NULL)
        *len = o->len - 1;
    char *text = o->buf;
    *o = (struct gw_out){0};
    return text;
}

struct member {
    const char *key;
    size_t len;
    json_t *value;
};

/* jansson's order for JSON_SORT_KEYS: by bytes, a prefix first. */
static int by_key(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static void put_value(struct gw_out *o, const json_t *v, size_t flags, int depth);

static void put_members(struct gw_out *o, json_t *v, size_t flags, int depth)
{
    const char *k;
    size_t klen;
    json_t *m;
    if (!(flags & JSON_SORT_KEYS)) {
        bool first = true;
        json_object_keylen_foreach(v, k, klen, m)
        {
            if (!first)
                gw_out_char(o, ',');
            first = false;
            gw_out_string(o, k, klen);
            gw_out_char(o, ':');
            put_value(o, m, flags, depth + 1);
        }
        return;
    }
    size_t n = json_object_size(v), i = 0;
    struct member *ms = malloc(n * sizeof *ms);
    if (ms == NULL) {
        o->failed = true;
        return;
    }
    json_object_keylen_foreach(v, k, klen, m) ms[i++] = (struct member){k, klen, m};
    qsort(ms, n, sizeof *ms, by_key);
    for (i = 0; i < n; i++) {
        if (i > 0)
            gw_out_char(o, ',');
        gw_out_string(o, ms[i].key, ms[i].len);
        gw_out_char(o, ':');
        put_value(o, ms[i].value, flags, depth + 1);
    }
    free(ms);
}

static void put_value(struct gw_out *o, const json_t *v, size_t flags, int depth)
{
    if (o->failed)
        return;
    if (depth > MAX_DEPTH) {
        o->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        gw_out_char(o, '{');
        if (json_object_size(v) > 0)
            put_members(o, (json_t *)v, flags, depth);
        gw_out_char(o, '}');
        break;
    case JSON_ARRAY: {
        gw_out_char(o, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                gw_out_char(o, ',');
            put_value(o, json_array_get(v, i), flags, depth + 1);
        }
        gw_out_char(o, ']');
        break;
    }
    case JSON_STRING:
        gw_out_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        gw_out_integer(o, json_integer_value(v));
        break;
    case JSON_REAL:
        put_real(o, v, flags);
        break;
    case JSON_TRUE:
        gw_out_bytes(o, "true", 4);
        break;
    case JSON_FALSE:
        gw_out_bytes(o, "false", 5);
        break;
    case JSON_NULL:
        gw_out_bytes(o, "null", 4);
        break;
    }
}

char *gw_json_text(const json_t *v, size_t flags, size_t *len)
{
    if (v == NULL)
        return NULL;
    if (!(flags & JSON_COMPACT) || (flags & ~(size_t)HANDLED) != 0) {
        char *text = json_dumps(v, flags);
        if (text != NULL && len != NULL)
            *len = strlen(text);
        return text;
    }
    if (!(flags & JSON_ENCODE_ANY) && !json_is_object(v) && !json_is_array(v))
        return NULL;
    struct gw_out o = {0};
    put_value(&o, v, flags, 0);
    return gw_out_finish(&o, len);
}
