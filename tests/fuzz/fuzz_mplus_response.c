/*
 * libFuzzer target: MplusKASSA answers - SOAP responses, SOAP Faults and
 * whatever else comes back - read as the answer to several operations.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mplus.h"

/* Operations whose answers exercise money, quantities, dates, lists and
 * in-band results. */
static const char *const ops[] = {"getReceipts",           "getProducts",    "getStock",
                                  "getCurrentSyncMarkers", "createRelation", "getApiVersion"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        json_t *out = NULL;
        char code[64], msg[1024];
        int kind = mplus_parse_response(ops[i], (const char *)data, size, &out, code, sizeof code,
                                        msg, sizeof msg);
        if (kind < -1 || kind > MPLUS_AUTH)
            abort();
        if (memchr(code, '\0', sizeof code) == NULL || memchr(msg, '\0', sizeof msg) == NULL)
            abort();
        /* An answer read is an object; an OK one always is read. */
        if ((out != NULL && !json_is_object(out)) || (kind == MPLUS_OK && out == NULL))
            abort();
        if (kind == -1 && out != NULL)
            abort();
        if (out != NULL) {
            char *text = json_dumps(out, JSON_COMPACT);
            if (text == NULL)
                abort();
            free(text);
        }
        /* The streaming reader, where it reads the answer, reads it as the
         * tree reader does. */
        json_t *tree = NULL, *stream = NULL;
        char tcode[64], tmsg[1024], scode[64], smsg[1024];
        int tk = mplus_parse_response_tree(ops[i], (const char *)data, size, &tree, tcode,
                                           sizeof tcode, tmsg, sizeof tmsg);
        int sk = mplus_parse_response_stream(ops[i], (const char *)data, size, &stream, scode,
                                             sizeof scode, smsg, sizeof smsg);
        if (tk != kind)
            abort();
        if (sk != MPLUS_NOT_STREAMED) {
            char *a = stream ? json_dumps(stream, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            char *b = tree ? json_dumps(tree, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            if (sk != tk || strcmp(scode, tcode) != 0 || strcmp(smsg, tmsg) != 0 ||
                (stream == NULL) != (tree == NULL) || (a == NULL) != (stream == NULL) ||
                (b == NULL) != (tree == NULL) || (a && b && strcmp(a, b) != 0))
                abort();
            free(a);
            free(b);
        }
        json_decref(tree);
        json_decref(stream);
        json_decref(out);
    }
    return 0;
}
