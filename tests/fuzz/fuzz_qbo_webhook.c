/* libFuzzer target: a QuickBooks webhook body (after signature checks) to events. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gw_connection conns[2] = {
        {.name = "shop1", .realm_id = "310687"},
        {.name = "shop2", .realm_id = "1185883450"},
    };
    static struct gw_config cfg = {.conns = conns, .nconns = 2};
    struct gw_batch b = {0};
    if (webhook_parse_qbo(&cfg, (const char *)data, size, 1767225600000, &b) == 0) {
        for (size_t i = 0; i < b.n; i++) {
            /* Every event must serialise: that is what the store receives. */
            char *s = json_dumps(b.ev[i].record, JSON_COMPACT);
            if (s == NULL || b.ev[i].dedupe_key == NULL)
                abort();
            free(s);
        }
    }
    batch_free(&b);
    return 0;
}
