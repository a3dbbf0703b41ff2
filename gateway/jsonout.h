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

#endif
