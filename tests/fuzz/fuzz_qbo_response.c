/* libFuzzer target: QuickBooks answers - fault bodies (JSON or XML) and CDC responses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc.h"
#include "fuzz_check.h"
#include "qbo.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char code[16], msg[1024];
    memset(code, 'x', sizeof code);
    memset(msg, 'x', sizeof msg);
    if (qbo_parse_fault((const char *)data, size, code, sizeof code, msg, sizeof msg) &&
        (memchr(code, '\0', sizeof code) == NULL || memchr(msg, '\0', sizeof msg) == NULL))
        abort(); /* a fault's strings end inside their buffers, whatever came in */

    static struct gw_connection conn = {.name = "shop1", .realm_id = "310687"};
    json_t *resp = json_loadb((const char *)data, size, 0, NULL);
    if (resp != NULL) {
        struct gw_batch b = {0}, again = {0};
        char latest[GW_TS_LEN], latest2[GW_TS_LEN];
        size_t rows, rows2;
        int rc = cdc_parse(&conn, resp, 1767225600000, &b, latest, sizeof latest, &rows);
        if (rc == 0) {
            if (b.n > rows)
                abort(); /* never more events than rows */
            static const char *const names[] = {"shop1", NULL};
            check_batch(&b, names);
        }
        if (cdc_parse(&conn, resp, 1767225600000, &again, latest2, sizeof latest2, &rows2) != rc)
            abort();
        if (rc == 0) {
            check_same_batches(&b, &again);
            if (rows != rows2 || strcmp(latest, latest2) != 0)
                abort();
        }
        batch_free(&b);
        batch_free(&again);
        json_decref(resp);
    }
    return 0;
}
