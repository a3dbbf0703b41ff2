/*
 * jsonout.h - compact JSON text from jansson values, as json_dumps writes it
 * (byte for byte, for the flags below) at a fraction of its cost. json_dumps
 * formats each integer with snprintf, checks each object and array for a
 * cycle through a hash table keyed by its address printed with snprintf,
 * walks each string by code point, and copies the finished text once more;
 * for a document of a few hundred values that was a sixth of what the daemon
 * spent booking it.
 */
#ifndef GW_JSONOUT_H
#define GW_JSONOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * The text of v, malloc'd and NUL-terminated; its length in *len (may be
 * NULL). flags as json_dumps takes them: JSON_COMPACT with any of
 * JSON_SORT_KEYS, JSON_PRESERVE_ORDER, JSON_ENCODE_ANY and JSON_REAL_PRECISION;
 * anything else (indentation, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH,
 * JSON_EMBED) is handed to json_dumps. NULL where json_dumps gives NULL (a
 * scalar without JSON_ENCODE_ANY), on a value nested deeper than jansson
 * parses, and when out of memory.
 *
 * Strings are copied as they are, escaped as jansson escapes them: jansson
 * checked their UTF-8 when they were made (a *_nocheck string or key is its
 * maker's promise). Values must not hold themselves (json_dumps would fail).
 */
char *gw_json_text(const json_t *v, size_t flags, size_t *len);

/*
 * The writer underneath, for trees of other kinds (map.c writes jq's values
 * with it): start from a zeroed struct gw_out, append, then take the text
 * with gw_out_finish. A failed allocation is remembered: the appends after it
 * do nothing and gw_out_finish gives NULL.
 */
struct gw_out {
    char *buf;
    size_t len, cap;
    bool failed;
};
void gw_out_bytes(struct gw_out *o, const char *s, size_t n);
void gw_out_char(struct gw_out *o, char c);
/* s (n bytes of UTF-8) quoted and escaped as json_dumps does. */
void gw_out_string(struct gw_out *o, const char *s, size_t n);
void gw_out_integer(struct gw_out *o, json_int_t v);
/* A finite double as json_dumps writes a real (a non-finite one fails). */
void gw_out_real(struct gw_out *o, double d);
/* The text, NUL-terminated, its length in *len (may be NULL); the struct is
 * zeroed for reuse. NULL, with everything freed, after a failure. */
char *gw_out_finish(struct gw_out *o, size_t *len);

#endif
