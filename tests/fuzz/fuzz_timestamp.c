/* libFuzzer target: timestamp normalisation; a normalised stamp must round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[128];
    if (size >= sizeof in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    char out[GW_TS_LEN], again[GW_TS_LEN];
    if (gw_ts_normalise(in, out, sizeof out)) {
        if (!gw_ts_normalise(out, again, sizeof again) || strcmp(out, again) != 0)
            abort();
    }
    return 0;
}
