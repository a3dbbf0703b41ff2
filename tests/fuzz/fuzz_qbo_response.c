/* libFuzzer target: QuickBooks answers - fault bodies (JSON or XML) and CDC responses. */
#include <stdint.h>
#include <stdlib.h>

#include "cdc.h"
#include "qbo.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char code[16], msg[1024];
    qbo_parse_fault((const char *)data, size, code, sizeof code, msg, sizeof msg);

    static struct gw_connection conn = {.name = "shop1", .realm_id = "310687"};
    json_t *resp = json_loadb((const char *)data, size, 0, NULL);
    if (resp != NULL) {
        struct gw_batch b = {0};
        char latest[GW_TS_LEN];
        size_t rows;
        if (cdc_parse(&conn, resp, 1767225600000, &b, latest, sizeof latest, &rows) == 0 &&
            b.n > rows)
            abort(); /* never more events than rows */
        batch_free(&b);
        json_decref(resp);
    }
    return 0;
}
