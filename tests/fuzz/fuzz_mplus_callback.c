/* libFuzzer target: an MplusKASSA till callback body to an event. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gw_connection conn = {.name = "shop1"};
    static const char *const events[] = {"completeSession", "creditSession", "scanCode"};
    struct gw_batch b = {0};
    const char *ev = events[size % 3];
    int v = webhook_parse_mplus(&conn, ev, (const char *)data, size, 1767225600000, &b);
    if (v == MPLUS_STORED && b.n != 1)
        abort();
    if (v == MPLUS_IGNORED && b.n != 0)
        abort();
    for (size_t i = 0; i < b.n; i++) {
        char *s = json_dumps(b.ev[i].record, JSON_COMPACT);
        if (s == NULL)
            abort();
        free(s);
    }
    batch_free(&b);
    return 0;
}
