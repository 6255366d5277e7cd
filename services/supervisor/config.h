/*
 * The supervisor's config file (format and every key: README.md).
 *
 * One setting per line, `key value...`; `#` starts a comment. Everything
 * has a default, and paths left unset derive from run_dir once the whole
 * file is read (nc_sup_config_finish). The broker's own settings are either
 * embedded as `broker KEY VALUE...` lines, which the supervisor checks with
 * the broker's parser and writes to RUN_DIR/broker.conf at start, or a file
 * named by `broker_config PATH`, checked at load time. A refusal names the
 * line and the problem ("line 7: mtu: 70000 is out of range 1280-65520");
 * nc_sup_config_load prefixes the file name.
 */
#ifndef NETCORE_SUPERVISOR_CONFIG_H
#define NETCORE_SUPERVISOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NC_SUP_PATH_MAX    108 /* a unix socket path must fit sun_path */
#define NC_SUP_RUN_DIR_MAX 80  /* room for "/supervisor.ctl" below it */
#define NC_SUP_ERR_MAX     320
#define NC_SUP_BROKER_TEXT 16384
#define NC_SUP_ARGS_MAX    256

enum nc_sup_service { NC_SUP_PHY, NC_SUP_CORE, NC_SUP_BROKER, NC_SUP_NSVC };

struct nc_sup_config {
	char run_dir[NC_SUP_RUN_DIR_MAX + 1];
	char control[NC_SUP_PATH_MAX + 8]; /* nng URL, ipc:// */
	char log_file[NC_SUP_PATH_MAX];
	char netns[NC_SUP_PATH_MAX]; /* "": the supervisor's own */
	char tun[16];
	char kernel_ipv4[48], stack_ipv4[48]; /* ADDR/PREFIX */
	char kernel_ipv6[64], stack_ipv6[64];
	uint32_t mtu;
	uint16_t echo_port; /* the core's diagnostic echo; 0: off */
	char attach_socket[NC_SUP_PATH_MAX];
	char broker_config[NC_SUP_PATH_MAX];  /* a file, or "" */
	char broker_text[NC_SUP_BROKER_TEXT]; /* embedded lines */
	size_t broker_len;
	uint32_t backoff_initial_ms, backoff_max_ms;
	uint32_t give_up_after, give_up_window_ms;
	uint32_t heartbeat_interval_ms, heartbeat_timeout_ms;
	uint32_t start_timeout_ms, stop_timeout_ms;
	char binary[NC_SUP_NSVC][NC_SUP_PATH_MAX]; /* "": next to netcore */
	char args[NC_SUP_NSVC][NC_SUP_ARGS_MAX];   /* extra flags */
};

/* Everything at its default (run_dir /run/netcore). */
void nc_sup_config_default(struct nc_sup_config *c);

/*
 * Parses config text on top of `c` and finishes it. Returns 0, or -EINVAL
 * with `err` saying "line N: problem" (NC_SUP_ERR_MAX bytes is enough).
 */
int nc_sup_config_parse(struct nc_sup_config *c, const char *text, size_t len,
                        char *err, size_t err_size);

/* Reads a file and parses it: 0, or -errno / -EINVAL with `err` saying
 * "FILE: line N: problem" (or "FILE: why it cannot be read"). */
int nc_sup_config_load(struct nc_sup_config *c, const char *path, char *err,
                       size_t err_size);

/* Fills what derives from run_dir and is still unset. Idempotent. */
void nc_sup_config_finish(struct nc_sup_config *c);

/* The effective config in the file format (parsing it gives `c` back). */
void nc_sup_config_write(const struct nc_sup_config *c, FILE *out);

/* "phy", "core", "broker"; and back, with the aliases phy_driver,
 * netcore_core and proxy_broker: the service or -1. */
const char *nc_sup_service_name(int svc);
int nc_sup_service_parse(const char *name);

#endif /* NETCORE_SUPERVISOR_CONFIG_H */
