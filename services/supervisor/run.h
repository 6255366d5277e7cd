/*
 * `netcore run [--config FILE] [--] CMD ARGS...` (run.c): CMD in a new,
 * empty network namespace with the shim preloaded and attached to the
 * config's broker. Private to the supervisor's binary (nci_*).
 */
#ifndef NETCORE_SUPERVISOR_RUN_H
#define NETCORE_SUPERVISOR_RUN_H

#include "services/supervisor/config.h"

/* netcore's own failures exit with this (like env(1) and timeout(1)), so
 * that they differ from whatever CMD itself may return. */
#define NCI_RUN_FAILED 125

/* Becomes argv[0] (searched in PATH) on success and never returns.
 * Otherwise returns the exit code: NCI_RUN_FAILED, 126 (CMD found but not
 * executable) or 127 (CMD not found), with a message on stderr. */
int nci_run(const struct nc_sup_config *c, char *const argv[]);

#endif /* NETCORE_SUPERVISOR_RUN_H */
