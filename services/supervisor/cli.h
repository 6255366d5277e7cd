/*
 * The `netcore` commands that talk to a running supervisor (status, stats,
 * restart, kill, stop): one nng req0 request on the config's control URL,
 * one reply (ctl.h), printed for people or as JSON. Private to the
 * supervisor's binary (nci_*).
 */
#ifndef NETCORE_SUPERVISOR_CLI_H
#define NETCORE_SUPERVISOR_CLI_H

#include <stdbool.h>

#include "services/supervisor/config.h"

/* Each returns the process exit code: 0, 1 (failed: message on stderr). */
int nci_cli_status(const struct nc_sup_config *c, bool json);
int nci_cli_stats(const struct nc_sup_config *c, bool json);
int nci_cli_signal(const struct nc_sup_config *c, int type, int service);
int nci_cli_stop(const struct nc_sup_config *c);

#endif /* NETCORE_SUPERVISOR_CLI_H */
