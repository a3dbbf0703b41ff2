/*
 * util.h - small checked helpers shared by every module: number parsers that
 * reject trailing junk and overflow (instead of atoi), time in milliseconds,
 * and ISO-8601 timestamps normalised to UTC.
 */
#ifndef GW_UTIL_H
#define GW_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_ERR_LEN 256

/* The string member k of o (borrowed), or NULL: o not an object, k absent or no string. */
const char *gw_str(const json_t *o, const char *k);

/* A whole number (an Mplus article or relation number) as text: an integer
 * written into buf, a string as it is (borrowed); else NULL. */
const char *gw_num_text(const json_t *v, char *buf, size_t len);

/* n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void gw_hex(const unsigned char *in, size_t n, char *out);

/* Parse a whole decimal string into *out. False on empty input, junk, overflow. */
bool gw_strtou64(const char *s, uint64_t *out);
bool gw_strtoi64(const char *s, int64_t *out);
/* gw_strtou64 of a number as it is written: no leading zero ("0" alone is). */
bool gw_strtou64_plain(const char *s, uint64_t *out);

/* Wall-clock time in milliseconds since the epoch. */
int64_t gw_now_ms(void);

/*
 * Normalise a timestamp as Intuit sends it to "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC).
 * Accepts ISO-8601 with "Z", "+hh:mm", "+hhmm" or "+hh" offsets and any number
 * of fractional digits, and epoch milliseconds as a string of digits.
 * out must hold at least GW_TS_LEN bytes. Returns false if s is not a timestamp.
 */
#define GW_TS_LEN 32
bool gw_ts_normalise(const char *s, char *out, size_t outlen);

/* Format epoch milliseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ". */
void gw_ts_format(int64_t ms, char *out, size_t outlen);

/* Parse a timestamp (as gw_ts_normalise accepts) into epoch ms. */
bool gw_ts_parse(const char *s, int64_t *ms);

/* Financial days as yyyymmdd numbers (20261207). gw_day_parse: a strict
 * YYYY-MM-DD (a real month and day), else -1; gw_day_add: delta days on, the
 * calendar's way; gw_day_text: YYYY-MM-DD into out (16 bytes). */
struct tm;
int64_t gw_day_of(const struct tm *tm);
int64_t gw_day_parse(const char *s);
int64_t gw_day_add(int64_t day, int delta);
void gw_day_text(int64_t day, char out[16]);

/* vsnprintf into a caller's message buffer (err may be NULL: nothing written). */
void gw_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Append to the message already in buf (cut at len-1 bytes). */
void gw_appendf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copy at most dstlen-1 bytes and terminate; returns false when truncated. */
bool gw_strlcpy(char *dst, const char *src, size_t dstlen);

/* How many bytes of the UTF-8 text s make its first max_chars characters (all
 * of it when it is shorter): a cut there never splits a character. */
size_t gw_utf8_prefix(const char *s, size_t max_chars);

/* The UTF-8 text s (len bytes) without the white space at its ends, as jq's
 * \s knows it (Unicode White_Space, so the mappings' gw_nonempty trims the
 * same): where it starts in *start, and its length (0: nothing left). */
size_t gw_trim_space(const char *s, size_t len, size_t *start);

/* A JSON string of the n bytes at s, or NULL when they are not UTF-8: as
 * json_stringn(), without its byte-by-byte check when every byte is ASCII. */
json_t *gw_json_stringn(const char *s, size_t n);

/* Text s as the mappings' gw_nonempty | gw_trunc(max_chars) make it: without
 * the white space at its ends (gw_trim_space) and cut to max_chars
 * characters; JSON null when nothing is left or s is NULL. */
json_t *gw_json_trimmed(const char *s, size_t max_chars);

/* Name s as the mappings' gw_clean makes it: without ':' and '"', tabs and
 * line breaks as spaces, runs of spaces as one, trimmed as gw_trim_space
 * trims. A new string; NULL when nothing is left (or out of memory). */
char *gw_clean_name(const char *s);

/* Whether word is one of the entries of a list separated by commas and
 * white space ("1, 12 3"). */
bool gw_list_has(const char *list, const char *word);

/* Case-insensitive comparison of a header value's media type (before ';'). */
bool gw_media_type_is(const char *value, const char *type);

/* An IP address as 16 bytes, IPv4 as ::ffff:a.b.c.d, so that a peer reached
 * over an IPv6 socket compares equal to its IPv4 spelling. */
struct gw_ip {
    unsigned char b[16];
};

/* Parse the len bytes at s as a numeric IPv4 or IPv6 address (no port, no
 * brackets, no host name). False when they are anything else. */
bool gw_ip_parse(const char *s, size_t len, struct gw_ip *out);

#endif
