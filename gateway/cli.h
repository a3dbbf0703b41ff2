/*
 * cli.h - the `gateway` command line: option parsing and the commands of
 * DESIGN 4.1. Exit status: 0 success, 1 runtime failure, 2 usage or config.
 */
#ifndef GW_CLI_H
#define GW_CLI_H

int cli_main(int argc, char **argv);

#endif
