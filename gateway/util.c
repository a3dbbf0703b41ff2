/*
 * util.c - checked number parsers and timestamp normalisation.
 */
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool gw_strtou64(const char *s, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (uint64_t)v;
    return true;
}

bool gw_strtou64_plain(const char *s, uint64_t *out)
{
    return s != NULL && (s[0] != '0' || s[1] == '\0') && gw_strtou64(s, out);
}

bool gw_strtoi64(const char *s, int64_t *out)
{
    if (s == NULL || s[0] == '\0')
        return false;
    const char *p = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)p[0]))
        return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gw_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void gw_appendf(char *buf, size_t len, const char *fmt, ...)
{
    size_t n = strnlen(buf, len);
    if (n + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, len - n, fmt, ap);
    va_end(ap);
}

bool gw_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t n = strlen(src);
    if (dstlen == 0)
        return n == 0;
    size_t c = n < dstlen - 1 ? n : dstlen - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
    return c == n;
}

/* Read exactly n digits at *p, advancing it. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool days_in_month_ok(int y, int mo, int d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int max = mdays[mo - 1] + (mo == 2 && leap);
    return d >= 1 && d <= max;
}

/* Timestamps outside 1970..9999 are not a business event's. */
#define GW_TS_MAX_MS 253402300799999LL

bool gw_ts_parse(const char *s, int64_t *ms)
{
    if (s == NULL || s[0] == '\0')
        return false;

    /* Epoch milliseconds: Intuit's webinar says legacy lastUpdated may be one. */
    size_t len = strlen(s);
    if (len >= 10 && len <= 16 && strspn(s, "0123456789") == len) {
        uint64_t v;
        if (!gw_strtou64(s, &v) || v > GW_TS_MAX_MS)
            return false;
        *ms = (int64_t)v;
        return true;
    }

    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || !days_in_month_ok(y, mo, d) || h > 23 || mi > 59 || sec > 60)
        return false;

    int frac_ms = 0;
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return false;
        for (; n < 3; n++)
            frac_ms *= 10;
    }

    int off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        int oh, om = 0;
        if (!digits(&p, 2, &oh))
            return false;
        if (*p == ':')
            p++;
        if (*p != '\0' && !digits(&p, 2, &om))
            return false;
        if (oh > 23 || om > 59)
            return false;
        off_min = sign * (oh * 60 + om);
    } else {
        return false; /* a timestamp without a zone is ambiguous */
    }
    if (*p != '\0')
        return false;

    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    int64_t v = ((int64_t)t - (int64_t)off_min * 60) * 1000 + frac_ms;
    if (v < 0 || v > GW_TS_MAX_MS)
        return false;
    *ms = v;
    return true;
}

static char *put_2digits(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

void gw_ts_format(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)t * 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999 || outlen < sizeof "YYYY-MM-DDTHH:MM:SS.mmmZ") {
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        return;
    }
    /* By hand, as snprintf would: an event's way through formats several,
     * and snprintf was most of their cost. */
    char *p = put_2digits(put_2digits(out, year / 100), year % 100);
    *p++ = '-';
    p = put_2digits(p, tm.tm_mon + 1);
    *p++ = '-';
    p = put_2digits(p, tm.tm_mday);
    *p++ = 'T';
    p = put_2digits(p, tm.tm_hour);
    *p++ = ':';
    p = put_2digits(p, tm.tm_min);
    *p++ = ':';
    p = put_2digits(p, tm.tm_sec);
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    p = put_2digits(p, frac % 100);
    *p++ = 'Z';
    *p = '\0';
}

bool gw_ts_normalise(const char *s, char *out, size_t outlen)
{
    int64_t ms;
    if (!gw_ts_parse(s, &ms))
        return false;
    gw_ts_format(ms, out, outlen);
    return true;
}

bool gw_media_type_is(const char *value, const char *type)
{
    if (value == NULL)
        return false;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(type);
    if (strncasecmp(value, type, n) != 0)
        return false;
    const char *rest = value + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    return *rest == '\0' || *rest == ';';
}

bool gw_ip_parse(const char *s, size_t len, struct gw_ip *out)
{
    char text[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof text)
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        memset(out->b, 0, 10);
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, text, out->b) == 1;
}

size_t gw_utf8_prefix(const char *s, size_t max_chars)
{
    size_t n = 0;
    for (size_t chars = 0; s[n] != '\0' && chars < max_chars; chars++) {
        n++;
        while (((unsigned char)s[n] & 0xC0) == 0x80)
            n++;
    }
    return n;
}

/* Unicode White_Space: what onig's \s matches in UTF-8 text. */
static bool white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* The character of the UTF-8 sequence at p (n bytes of it, 1 to 4); one
 * that is not well formed (a stray continuation byte, an overlong form, a
 * surrogate) reads as U+FFFD, which is not white space. */
static uint32_t char_of(const unsigned char *p, size_t n)
{
    static const unsigned char lead_bits[] = {0x7F, 0x1F, 0x0F, 0x07};
    static const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (n == 1 && p[0] >= 0x80)
        return 0xFFFD;
    uint32_t c = p[0] & lead_bits[n - 1];
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0xFFFD;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < least[n - 1] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0xFFFD;
    return c;
}

static size_t seq_len(unsigned char b)
{
    return b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
}

json_t *gw_json_stringn(const char *s, size_t n)
{
    const uint64_t high = 0x8080808080808080u;
    uint64_t any = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        any |= w;
    }
    for (; i < n; i++)
        any |= (unsigned char)s[i];
    return (any & high) == 0 ? json_stringn_nocheck(s, n) : json_stringn(s, n);
}

json_t *gw_json_trimmed(const char *s, size_t max_chars)
{
    size_t start, len = s ? gw_trim_space(s, strlen(s), &start) : 0;
    if (len == 0)
        return json_null();
    size_t cut = gw_utf8_prefix(s + start, max_chars); /* counted from start too */
    json_t *v = gw_json_stringn(s + start, cut < len ? cut : len);
    return v ? v : json_null();
}

size_t gw_trim_space(const char *s, size_t len, size_t *start)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t a = 0, b = len;
    while (a < b) {
        size_t n = seq_len(p[a]);
        if (n > b - a || !white_space(char_of(p + a, n)))
            break;
        a += n;
    }
    while (b > a) {
        size_t k = b - 1; /* back to the first byte of the last character */
        while (k > a && b - k < 4 && (p[k] & 0xC0) == 0x80)
            k--;
        size_t n = seq_len(p[k]);
        if (n != b - k || !white_space(char_of(p + k, n)))
            break;
        b = k;
    }
    *start = a;
    return b - a;
}

char *gw_clean_name(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ':' || c == '"')
            continue;
        if (c == '\t' || c == '\n' || c == '\r')
            c = ' ';
        if (c == ' ' && (k == 0 || out[k - 1] == ' '))
            continue;
        out[k++] = c;
    }
    if (k > 0 && out[k - 1] == ' ')
        k--;
    size_t start, len = gw_trim_space(out, k, &start);
    if (len == 0) {
        free(out);
        return NULL;
    }
    memmove(out, out + start, len);
    out[len] = '\0';
    return out;
}

bool gw_list_has(const char *list, const char *word)
{
    size_t wlen = strlen(word);
    for (const char *p = list; p != NULL && *p != '\0';) {
        p += strspn(p, ", \t");
        size_t len = strcspn(p, ", \t");
        if (len == wlen && len > 0 && memcmp(p, word, len) == 0)
            return true;
        p += len;
    }
    return false;
}

int64_t gw_day_of(const struct tm *tm)
{
    return (int64_t)(tm->tm_year + 1900) * 10000 + (tm->tm_mon + 1) * 100 + tm->tm_mday;
}

int64_t gw_day_parse(const char *s)
{
    int y, m, d;
    if (s == NULL || strlen(s) != 10 || !digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &m) ||
        *s++ != '-' || !digits(&s, 2, &d) || m < 1 || m > 12 || !days_in_month_ok(y, m, d))
        return -1;
    return (int64_t)y * 10000 + m * 100 + d;
}

int64_t gw_day_add(int64_t day, int delta)
{
    struct tm tm = {0};
    tm.tm_year = (int)(day / 10000) - 1900;
    tm.tm_mon = (int)(day / 100 % 100) - 1;
    tm.tm_mday = (int)(day % 100) + delta;
    tm.tm_hour = 12;
    time_t when = timegm(&tm);
    gmtime_r(&when, &tm);
    return gw_day_of(&tm);
}

void gw_day_text(int64_t day, char out[16])
{
    snprintf(out, 16, "%04d-%02d-%02d", (int)(day / 10000), (int)(day / 100 % 100),
             (int)(day % 100));
}

const char *gw_str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

const char *gw_num_text(const json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v)) {
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return json_string_value(v);
}

void gw_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
