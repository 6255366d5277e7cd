/*
 * Service output (see sup.h): each service's stdout and stderr arrive on a
 * pipe of its own. Whole lines go out in the common format (log.h) to the
 * supervisor's stderr and to the log file: a line that already has the
 * format is passed on untouched, any other line is wrapped with the time,
 * the service's name and level "info". A line longer than the buffer is
 * cut into pieces, each wrapped. A dead service's last partial line is
 * flushed when its pipe is drained for the final time.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "services/common/log.h"
#include "services/supervisor/sup.h"

static void write_all(int fd, const char *p, size_t n)
{
	while (fd >= 0 && n > 0) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void emit(struct nci_sup *s, const struct nci_svc *svc, const char *line,
                 size_t len)
{
	char out[NCI_LOG_BUF + 128];
	size_t n = 0;
	if (!nc_log_is_formatted(line, len))
		n = nc_log_prefix(out, sizeof(out),
		                  nc_sup_service_name(svc->id), NC_LOG_INFO);
	memcpy(out + n, line, len);
	n += len;
	out[n++] = '\n';
	write_all(2, out, n);
	write_all(s->log_file, out, n);
}

/* Emits every whole line in the buffer and keeps the rest. */
static void split_lines(struct nci_sup *s, struct nci_svc *svc)
{
	size_t start = 0;
	for (size_t i = 0; i < svc->log_len; i++) {
		if (svc->log_buf[i] != '\n')
			continue;
		emit(s, svc, svc->log_buf + start, i - start);
		start = i + 1;
	}
	if (start == 0 && svc->log_len == sizeof(svc->log_buf)) {
		emit(s, svc, svc->log_buf, svc->log_len); /* too long */
		start = svc->log_len;
	}
	memmove(svc->log_buf, svc->log_buf + start, svc->log_len - start);
	svc->log_len -= start;
}

void nci_logs_drain(struct nci_sup *s, struct nci_svc *svc, bool final)
{
	while (svc->log_fd >= 0) {
		ssize_t n = read(svc->log_fd, svc->log_buf + svc->log_len,
		                 sizeof(svc->log_buf) - svc->log_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		svc->log_len += (size_t)n;
		split_lines(s, svc);
	}
	if (final && svc->log_len > 0) {
		emit(s, svc, svc->log_buf, svc->log_len);
		svc->log_len = 0;
	}
}
