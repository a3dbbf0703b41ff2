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
        json_decref(out);
    }
    return 0;
}
