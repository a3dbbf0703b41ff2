/* libFuzzer target: whatever jansson reads, gw_json_text writes as json_dumps does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t flag_sets[] = {
        JSON_COMPACT | JSON_ENCODE_ANY,
        JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY,
        JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6),
    };
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v == NULL)
        return 0;
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
        char *want = json_dumps(v, flag_sets[f]);
        size_t len = 0;
        char *got = gw_json_text(v, flag_sets[f], &len);
        if ((want == NULL) != (got == NULL) ||
            (want != NULL && (strcmp(want, got) != 0 || len != strlen(want))))
            abort();
        free(want);
        free(got);
    }
    json_decref(v);
    return 0;
}
