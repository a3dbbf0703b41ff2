/* libFuzzer target: the gateway.ini reader on arbitrary files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (path[0] == '\0')
        snprintf(path, sizeof path, "/tmp/gw_fuzz_config_%d.ini", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct gw_config *cfg = NULL;
    char err[512];
    if (config_load(path, &cfg, err, sizeof err) == 0) {
        FILE *null = fopen("/dev/null", "w");
        config_print(cfg, null);
        fclose(null);
        config_free(cfg);
    }
    unlink(path);
    return 0;
}
