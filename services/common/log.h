/*
 * nc_log: one line format for every netcore process.
 *
 *   2026-11-28T19:20:59.123Z SERVICE LEVEL message
 *
 * UTC to the millisecond, the service name set once per process
 * (nc_log_init), a level (debug, info, warn, error), then the message on
 * the same line (embedded newlines become spaces). Each line leaves in one
 * write(2), so lines from several threads never interleave. The
 * supervisor reads every service's stderr and recognises this format
 * (nc_log_is_formatted); a line without it gets wrapped.
 *
 * What it does not do: filter by level, rotate files or buffer. Before
 * nc_log_init the service name is "netcore".
 */
#ifndef NETCORE_COMMON_LOG_H
#define NETCORE_COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum nc_log_level {
	NC_LOG_DEBUG,
	NC_LOG_INFO,
	NC_LOG_WARN,
	NC_LOG_ERROR,
};

#define NC_LOG_LINE_MAX 1024 /* longer messages are cut */

/* Sets the service name (copied; at most 31 bytes are kept). */
void nc_log_init(const char *service);

/* Also writes every line to `fd` (-1: stop). The supervisor's log file. */
void nc_log_tee(int fd);

void nc_log(enum nc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "debug", "info", "warn", "error". */
const char *nc_log_level_name(enum nc_log_level level);

/* Writes "TIME SERVICE LEVEL " for now into buf (NUL-terminated) and
 * returns its length. */
size_t nc_log_prefix(char *buf, size_t cap, const char *service,
                     enum nc_log_level level);

/* True if `line` (len bytes, no newline) starts with the common format:
 * timestamp, a service name, a known level, a space. */
bool nc_log_is_formatted(const char *line, size_t len);

#endif /* NETCORE_COMMON_LOG_H */
