/*
 * cli.h - the `gateway` command line: option parsing and the commands of
 * DESIGN 4.1. Exit status: 0 success, 1 runtime failure, 2 usage or config.
 */
#ifndef GW_CLI_H
#define GW_CLI_H

int cli_main(int argc, char **argv);

struct flow;
/* Flows `serve` adds ahead of the shipped ones (test harnesses); NULL by default. */
void cli_set_extra_flows(const struct flow *flows);

#endif
