/* nc_log: see log.h. */
#include "services/common/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char service_name[32] = "netcore";
static atomic_int tee_fd = -1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nc_log_init(const char *service)
{
	snprintf(service_name, sizeof(service_name), "%s", service);
}

void nc_log_tee(int fd)
{
	atomic_store(&tee_fd, fd);
}

const char *nc_log_level_name(enum nc_log_level level)
{
	if ((unsigned)level > NC_LOG_ERROR)
		return "info";
	return level_names[level];
}

size_t nc_log_prefix(char *buf, size_t cap, const char *service,
                     enum nc_log_level level)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(
	    buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ts.tv_nsec / 1000000, service, nc_log_level_name(level));
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Writes all of it; a short write to a pipe is retried, an error given up
 * (there is nowhere to report it). */
static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

void nc_log(enum nc_log_level level, const char *fmt, ...)
{
	char line[NC_LOG_LINE_MAX + 2];
	size_t n = nc_log_prefix(line, NC_LOG_LINE_MAX, service_name, level);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, NC_LOG_LINE_MAX - n, fmt, ap);
	va_end(ap);
	if (m > 0)
		n += (size_t)m < NC_LOG_LINE_MAX - n ? (size_t)m
		                                     : NC_LOG_LINE_MAX - n - 1;
	while (n > 0 && line[n - 1] == '\n')
		n--;
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	write_all(2, line, n);
	int fd = atomic_load(&tee_fd);
	if (fd >= 0)
		write_all(fd, line, n);
}

static bool digits(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (!isdigit((unsigned char)p[i]))
			return false;
	return true;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ " : 25 bytes. */
static bool timestamp(const char *p)
{
	return digits(p, 4) && p[4] == '-' && digits(p + 5, 2) && p[7] == '-' &&
	       digits(p + 8, 2) && p[10] == 'T' && digits(p + 11, 2) &&
	       p[13] == ':' && digits(p + 14, 2) && p[16] == ':' &&
	       digits(p + 17, 2) && p[19] == '.' && digits(p + 20, 3) &&
	       p[23] == 'Z' && p[24] == ' ';
}

bool nc_log_is_formatted(const char *line, size_t len)
{
	if (len < 25 || !timestamp(line))
		return false;
	size_t i = 25, start = i;
	while (i < len && line[i] != ' ' && i - start < 32)
		i++;
	if (i == start || i >= len || line[i] != ' ')
		return false;
	i++;
	for (int l = NC_LOG_DEBUG; l <= NC_LOG_ERROR; l++) {
		size_t k = strlen(level_names[l]);
		if (len - i > k && memcmp(line + i, level_names[l], k) == 0 &&
		    line[i + k] == ' ')
			return true;
	}
	return false;
}
