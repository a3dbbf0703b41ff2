/* libFuzzer target: bytes from a client to the webhook listener's parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    struct httpd_req r;
    int rc = httpd_parse_head(buf, size, 2048, 4096, &r);
    if (rc == 1) {
        if (r.head_len > size || r.path == NULL || r.path[0] != '/')
            abort();
        for (size_t i = 0; i < r.nheaders; i++)
            if (strlen(r.headers[i].name) != r.headers[i].name_len ||
                strlen(r.headers[i].value) != r.headers[i].value_len)
                abort();
        if (r.chunked) {
            size_t blen, used;
            int d = httpd_dechunk(buf + r.head_len, size - r.head_len, 4096, &blen, &used);
            if (d == 1 && (blen > used || used > size - r.head_len || blen > 4096))
                abort();
        } else if (r.content_length > 4096) {
            abort();
        }
    } else if (rc != 0 && (rc < 400 || rc > 505)) {
        abort();
    }
    free(buf);
    return 0;
}
