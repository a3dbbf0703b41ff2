/* libFuzzer target: a QuickBooks webhook body (after signature checks) to events. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_check.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gw_connection conns[2] = {
        {.name = "shop1", .realm_id = "310687"},
        {.name = "shop2", .realm_id = "1185883450"},
    };
    static struct gw_config cfg = {.conns = conns, .nconns = 2};
    struct gw_batch b = {0}, again = {0};
    int rc = webhook_parse_qbo(&cfg, (const char *)data, size, 1767225600000, &b);
    if (rc == 0) {
        /* Every event must serialise (that is what the store receives) and
         * name a configured connection, or none (an unknown realm). */
        static const char *const names[] = {"shop1", "shop2", "", NULL};
        check_batch(&b, names);
    }
    if (webhook_parse_qbo(&cfg, (const char *)data, size, 1767225600000, &again) != rc)
        abort();
    if (rc == 0)
        check_same_batches(&b, &again);
    batch_free(&b);
    batch_free(&again);
    return 0;
}
