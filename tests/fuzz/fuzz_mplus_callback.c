/* libFuzzer target: an MplusKASSA till callback body to an event. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "fuzz_check.h"
#include "webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gw_connection conn = {.name = "shop1"};
    static const char *const events[] = {"completeSession", "creditSession", "scanCode"};
    struct gw_batch b = {0}, again = {0};
    const char *ev = events[size % 3];
    int v = webhook_parse_mplus(&conn, ev, (const char *)data, size, 1767225600000, &b);
    if (v == MPLUS_STORED && b.n != 1)
        abort();
    if (v == MPLUS_IGNORED && b.n != 0)
        abort();
    static const char *const names[] = {"shop1", NULL}; /* the connection of its URL */
    check_batch(&b, names);
    if (webhook_parse_mplus(&conn, ev, (const char *)data, size, 1767225600000, &again) != v)
        abort();
    check_same_batches(&b, &again);
    batch_free(&again);
    batch_free(&b);
    return 0;
}
