/* faultkit: see faultkit.h. */
#include "tests/integration/faultkit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/client_region.h"

int64_t fk_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(int64_t deadline_ms)
{
	int64_t left = deadline_ms - fk_now_ms();
	if (left < 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

/* ------------------------------------------------------------ children */

#define MAX_CHILDREN 64

static pid_t children[MAX_CHILDREN];
static int nchildren;

static void forget(pid_t pid)
{
	for (int i = 0; i < nchildren; i++) {
		if (children[i] == pid) {
			children[i] = children[--nchildren];
			return;
		}
	}
}

pid_t fk_fork(void)
{
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		nchildren = 0; /* the parent's children are not ours */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99); /* the parent died before the prctl */
		return 0;
	}
	if (pid > 0 && nchildren < MAX_CHILDREN)
		children[nchildren++] = pid;
	return pid;
}

int fk_wait(pid_t pid, int64_t deadline_ms, int *status)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int err;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (status != NULL)
				*status = st;
			forget(pid);
			err = 0;
			break;
		}
		if (r < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		int left = ms_left(deadline_ms);
		if (left == 0) {
			err = -ETIMEDOUT;
			break;
		}
		if (pidfd >= 0) {
			struct pollfd p = {.fd = pidfd, .events = POLLIN};
			poll(&p, 1, left);
		} else {
			struct timespec ts = {0, 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return err;
}

void fk_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	fk_wait(pid, fk_now_ms() + 10000, NULL);
	forget(pid);
}

void fk_reap_all(void)
{
	while (nchildren > 0)
		fk_kill(children[nchildren - 1]);
}

bool fk_alive(pid_t pid)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
		return false;
	return si.si_pid == 0;
}

bool fk_service_alive(pid_t pid)
{
	return pid > 0 && fk_alive(pid) && kill(pid, 0) == 0;
}

const char *fk_status_str(int status, char *buf, size_t cap)
{
	if (WIFEXITED(status))
		snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, cap, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, cap, "status 0x%x", status);
	return buf;
}

/* ------------------------------------------------------------ messages */

int fk_msg_send(int fd, int32_t kind, int64_t value)
{
	struct fk_msg m = {.kind = kind, .value = value};
	ssize_t n;
	do
		n = write(fd, &m, sizeof(m));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(m) ? 0 : -EIO;
}

int fk_msg_recv(int fd, struct fk_msg *m, int64_t deadline_ms)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, ms_left(deadline_ms));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		ssize_t n = read(fd, m, sizeof(*m));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		/* Writes of one record are atomic (less than PIPE_BUF). */
		return n == (ssize_t)sizeof(*m) ? 0 : -EIO;
	}
}

/* -------------------------------------------------------------- testbed */

int fk_testbed_start(struct nc_testbed *tb, const char *tag, const char *config,
                     char *log_path, size_t cap)
{
	char conf_path[96];
	/* Safe for nc_testbed_stop whatever happens below. */
	memset(tb, 0, sizeof(*tb));
	tb->core_bell.fd = tb->phy_bell.fd = tb->region.fd = -1;
	snprintf(log_path, cap, "/tmp/nc-fk-%s-%d.log", tag, (int)getpid());
	snprintf(conf_path, sizeof(conf_path), "/tmp/nc-fk-%s-%d.conf", tag,
	         (int)getpid());
	if (config != NULL) {
		FILE *f = fopen(conf_path, "w");
		if (f == NULL)
			return -errno;
		fputs(config, f);
		if (fclose(f) != 0)
			return -EIO;
	}
	int log =
	    open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
	         0600);
	if (log < 0)
		return -errno;
	fflush(stderr);
	int saved = fcntl(2, F_DUPFD_CLOEXEC, 10);
	dup2(log, 2);
	close(log);
	int err = nc_testbed_start_sockets(tb, tag, 7,
	                                   config != NULL ? conf_path : NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	if (config != NULL)
		unlink(conf_path); /* the broker read it at start */
	return err;
}

static char *read_file(const char *path, off_t from, size_t *len)
{
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < from) {
		close(fd);
		return NULL;
	}
	size_t want = (size_t)(st.st_size - from);
	char *buf = malloc(want + 1);
	size_t got = 0;
	while (buf != NULL && got < want) {
		ssize_t n = pread(fd, buf + got, want - got, from + (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (buf != NULL)
		buf[got] = '\0';
	*len = got;
	return buf;
}

void fk_testbed_stop(struct nc_testbed *tb, const char *log_path,
                     bool print_log)
{
	nc_testbed_stop(tb);
	if (print_log) {
		size_t len;
		char *text = read_file(log_path, 0, &len);
		/* The end is what tells: at most the last 16 KiB. */
		size_t from = len > 16384 ? len - 16384 : 0;
		fprintf(stderr,
		        "---- services' stderr (%s, last %zu bytes)\n%s"
		        "---- end\n",
		        log_path, len - from, text != NULL ? text + from : "");
		free(text);
	}
	unlink(log_path);
}

static int stop_one(pid_t *pid)
{
	if (*pid <= 0)
		return -1;
	int status = -1;
	kill(*pid, SIGTERM);
	/* Generous: under AddressSanitizer the leak check runs at exit. */
	if (fk_wait(*pid, fk_now_ms() + 20000, &status) != 0) {
		kill(*pid, SIGKILL);
		fk_wait(*pid, fk_now_ms() + 5000, NULL);
		status = -1;
	}
	*pid = 0;
	return status;
}

void fk_services_stop(struct nc_testbed *tb, struct fk_exits *status)
{
	status->broker = stop_one(&tb->broker_pid);
	status->phy = stop_one(&tb->phy_pid);
	status->core = stop_one(&tb->core_pid);
}

bool fk_exit_ok(int status)
{
	return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The first complete "broker core_pipes ..." line in the log after `from`. */
static bool find_dump(const char *log_path, off_t from, char *line, size_t cap)
{
	size_t len;
	char *text = read_file(log_path, from, &len);
	if (text == NULL)
		return false;
	bool found = false;
	char *at = strstr(text, "broker core_pipes ");
	if (at != NULL) {
		char *nl = strchr(at, '\n');
		if (nl != NULL) {
			size_t n = (size_t)(nl - at);
			if (n >= cap)
				n = cap - 1;
			memcpy(line, at, n);
			line[n] = '\0';
			found = true;
		}
	}
	free(text);
	return found;
}

int fk_broker_dump(const struct nc_testbed *tb, const char *log_path,
                   char *line, size_t cap, int64_t deadline_ms)
{
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in < 0)
		return -errno;
	if (inotify_add_watch(in, log_path, IN_MODIFY) < 0) {
		int err = -errno;
		close(in);
		return err;
	}
	off_t from = file_size(log_path);
	int err = -ETIMEDOUT;
	if (from < 0 || kill(tb->broker_pid, SIGUSR1) != 0)
		err = -errno;
	else {
		for (;;) {
			if (find_dump(log_path, from, line, cap)) {
				err = 0;
				break;
			}
			int left = ms_left(deadline_ms);
			if (left == 0)
				break;
			struct pollfd p = {.fd = in, .events = POLLIN};
			if (poll(&p, 1, left) > 0) {
				char ev[4096];
				while (read(in, ev, sizeof(ev)) > 0)
					;
			}
		}
	}
	close(in);
	return err;
}

long long fk_dump_field(const char *line, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), " %s ", name);
	const char *at = strstr(line, key);
	if (at == NULL)
		return -1;
	return strtoll(at + strlen(key), NULL, 10);
}

int fk_wait_broker_idle(const struct nc_testbed *tb, const char *log_path,
                        char *line, size_t cap, int64_t deadline_ms)
{
	for (;;) {
		int err = fk_broker_dump(tb, log_path, line, cap, deadline_ms);
		if (err)
			return err;
		if (fk_dump_field(line, "clients") == 0 &&
		    fk_dump_field(line, "sockets") == 0 &&
		    fk_dump_field(line, "memory") == 0 &&
		    fk_dump_field(line, "calls") == 0)
			return 0;
		if (ms_left(deadline_ms) == 0)
			return -ETIMEDOUT;
		poll(NULL, 0, 5); /* the next look; bounded by the deadline */
	}
}

int fk_log_last(const char *log_path, const char *needle, char *line,
                size_t cap)
{
	size_t len;
	char *text = read_file(log_path, 0, &len);
	if (text == NULL)
		return -ENOENT;
	int err = -ENOENT;
	for (char *at = text; at != NULL && *at != '\0';) {
		char *nl = strchr(at, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (strstr(at, needle) != NULL) {
			snprintf(line, cap, "%s", at);
			err = 0;
		}
		at = nl != NULL ? nl + 1 : NULL;
	}
	free(text);
	return err;
}

int fk_core_final(const char *log_path, struct fk_core_final *f)
{
	char line[512];
	int err =
	    fk_log_last(log_path, " core info clients ", line, sizeof(line));
	if (err)
		return err;
	const char *at = strstr(line, "clients ");
	if (sscanf(at,
	           "clients %u (added %llu removed %llu broken %llu), "
	           "sockets %u",
	           &f->clients, &f->added, &f->removed, &f->broken,
	           &f->sockets) != 5)
		return -ENOENT;
	return 0;
}

int fk_services_end(struct nc_testbed *tb, const char *log_path,
                    struct fk_core_final *final, char *summary, size_t cap)
{
	struct fk_exits x;
	fk_services_stop(tb, &x);
	char b[32], p[32], c[32];
	memset(final, 0, sizeof(*final));
	int err = fk_core_final(log_path, final);
	snprintf(summary, cap,
	         "services stopped: broker %s, phy %s, core %s; core: clients "
	         "%u (added %llu removed %llu broken %llu), sockets %u%s",
	         x.broker == -1 ? "hung"
	                        : fk_status_str(x.broker, b, sizeof(b)),
	         x.phy == -1 ? "hung" : fk_status_str(x.phy, p, sizeof(p)),
	         x.core == -1 ? "hung" : fk_status_str(x.core, c, sizeof(c)),
	         final->clients, final->added, final->removed, final->broken,
	         final->sockets, err ? " (NOT PRINTED)" : "");
	bool ok = fk_exit_ok(x.broker) && fk_exit_ok(x.phy) &&
	          fk_exit_ok(x.core) && err == 0 && final->clients == 0 &&
	          final->sockets == 0 &&
	          final->added == final->removed + final->broken;
	return ok ? 0 : -1;
}

long fk_log_count(const char *log_path, const char *needle)
{
	size_t len;
	char *text = read_file(log_path, 0, &len);
	if (text == NULL)
		return -1;
	long n = 0;
	for (char *line = text; line != NULL && *line != '\0';) {
		char *nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (strstr(line, needle) != NULL)
			n++;
		line = nl != NULL ? nl + 1 : NULL;
	}
	free(text);
	return n;
}

uint64_t fk_region_bytes(uint32_t max_sockets, uint32_t ring_slots,
                         uint32_t buf_count, uint32_t buf_size)
{
	struct nc_client_params p = {max_sockets, ring_slots, buf_count,
	                             buf_size};
	struct nc_client_layout l;
	return nc_client_layout(&p, &l) == 0 ? l.size : 0;
}

/* -------------------------------------------------------------- memory */

long fk_rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	long kib = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int fk_rss_detail(pid_t pid, long *anon, long *file, long *shmem)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -errno;
	*anon = *file = *shmem = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		sscanf(line, "RssAnon: %ld kB", anon);
		sscanf(line, "RssFile: %ld kB", file);
		sscanf(line, "RssShmem: %ld kB", shmem);
	}
	fclose(f);
	return 0;
}

int fk_mappings(pid_t pid, const char *name, long *rss_kib)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	int n = 0;
	bool in = false;
	*rss_kib = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		long kib;
		/* A mapping's first line: "lo-hi perms offset dev inode path".
		 */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = strstr(line, name) != NULL;
			n += in;
		} else if (in && sscanf(line, "Rss: %ld kB", &kib) == 1)
			*rss_kib += kib;
	}
	fclose(f);
	return n;
}

int fk_fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* -------------------------------------------------------------- pattern */

static inline uint64_t pat_word(uint64_t seed, uint64_t k)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + k + 1;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

void fk_pat_fill(uint64_t seed, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0 && (off & 7) != 0) {
		*p++ = (uint8_t)(pat_word(seed, off >> 3) >> ((off & 7) * 8));
		off++;
		len--;
	}
	while (len >= 8) {
		uint64_t w = pat_word(seed, off >> 3);
		memcpy(p, &w, 8); /* little-endian: byte i is bits 8i.. */
		p += 8;
		off += 8;
		len -= 8;
	}
	while (len > 0) {
		*p++ = (uint8_t)(pat_word(seed, off >> 3) >> ((off & 7) * 8));
		off++;
		len--;
	}
}

long fk_pat_check(uint64_t seed, uint64_t off, const void *buf, size_t len)
{
	uint8_t want[4096];
	const uint8_t *p = buf;
	for (size_t done = 0; done < len;) {
		size_t n =
		    len - done < sizeof(want) ? len - done : sizeof(want);
		fk_pat_fill(seed, off + done, want, n);
		if (memcmp(want, p + done, n) != 0) {
			for (size_t i = 0; i < n; i++)
				if (want[i] != p[done + i])
					return (long)(done + i);
		}
		done += n;
	}
	return -1;
}

/* -------------------------------------------------------- kernel server */

#define KS_MAX_LISTEN 8
#define KS_MAX_CONNS  512
#define KS_BUF        (256 * 1024)

struct kconn {
	int fd;
	uint8_t hdr_bytes[sizeof(struct fk_hdr)];
	size_t hdr_got;
	struct fk_hdr h;
	bool started;
	uint64_t done; /* pattern bytes read (SINK) or sent (SOURCE) */
	bool bad;
	bool finished; /* result sent / FIN sent: only waits for EOF */
	uint8_t *buf;
	size_t len, off; /* pending output: buf[off..len) */
};

static void kconn_close(struct kconn *c)
{
	close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* Output pending in buf: send what the socket takes. false: closed. */
static bool kconn_flush(struct kconn *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0) {
			kconn_close(c);
			return false;
		}
		c->off += (size_t)n;
	}
	return true;
}

static void kconn_start(struct kconn *c)
{
	memcpy(&c->h, c->hdr_bytes, sizeof(c->h));
	if (c->h.magic != FK_HDR_MAGIC || c->h.mode < FK_SINK ||
	    c->h.mode > FK_ECHO) {
		kconn_close(c);
		return;
	}
	c->started = true;
	c->buf = malloc(KS_BUF);
	if (c->buf == NULL)
		kconn_close(c);
}

static void kconn_sink_done(struct kconn *c)
{
	struct fk_result r = {.magic = FK_HDR_MAGIC,
	                      .ok = !c->bad && c->done == c->h.length,
	                      .verified = c->done};
	memcpy(c->buf, &r, sizeof(r));
	c->off = 0;
	c->len = sizeof(r);
	c->finished = true;
	kconn_flush(c);
}

static void kconn_readable(struct kconn *c)
{
	if (!c->started) {
		ssize_t n =
		    recv(c->fd, c->hdr_bytes + c->hdr_got,
		         sizeof(c->hdr_bytes) - c->hdr_got, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			kconn_close(c);
			return;
		}
		c->hdr_got += (size_t)n;
		if (c->hdr_got == sizeof(c->hdr_bytes))
			kconn_start(c);
		return;
	}
	uint8_t *into = c->buf;
	size_t cap = KS_BUF;
	if (c->h.mode == FK_SINK && c->finished) {
		into = c->buf + sizeof(struct fk_result);
		cap = KS_BUF - sizeof(struct fk_result);
	}
	ssize_t n = recv(c->fd, into, cap, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF or an error (a reset): either way this one is over.
		 * ECHO: all we had was sent, as we read only when idle. */
		kconn_close(c);
		return;
	}
	switch (c->h.mode) {
	case FK_SINK:
		if (c->finished)
			return; /* after the result: ignored until EOF */
		if (!c->bad) {
			uint64_t want = c->h.length - c->done;
			size_t chk = (uint64_t)n < want ? (size_t)n : want;
			if ((uint64_t)n > want ||
			    fk_pat_check(c->h.seed, c->done, into, chk) >= 0)
				c->bad = true;
		}
		c->done += (uint64_t)n;
		if (c->done >= c->h.length)
			kconn_sink_done(c);
		break;
	case FK_ECHO:
		c->off = 0;
		c->len = (size_t)n;
		kconn_flush(c);
		break;
	default:
		break; /* SOURCE: the client sends nothing more */
	}
}

static void kconn_writable(struct kconn *c)
{
	if (c->off < c->len) {
		if (!kconn_flush(c))
			return;
		if (c->off < c->len)
			return;
	}
	if (c->h.mode != FK_SOURCE || c->finished)
		return;
	if (c->done == c->h.length) {
		shutdown(c->fd, SHUT_WR);
		c->finished = true;
		return;
	}
	uint64_t left = c->h.length - c->done;
	size_t n = left < KS_BUF ? (size_t)left : KS_BUF;
	fk_pat_fill(c->h.seed, c->done, c->buf, n);
	c->done += n;
	c->off = 0;
	c->len = n;
	kconn_flush(c);
}

static short kconn_events(const struct kconn *c)
{
	if (!c->started)
		return POLLIN;
	if (c->off < c->len)
		return POLLOUT;
	if (c->h.mode == FK_SOURCE && !c->finished)
		return POLLOUT | POLLIN;
	return POLLIN;
}

static void kserver_accept(int lfd, struct kconn *conns)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		int slot = -1;
		for (int i = 0; i < KS_MAX_CONNS && slot < 0; i++)
			if (conns[i].fd < 0)
				slot = i;
		if (slot < 0) {
			close(fd);
			continue;
		}
		memset(&conns[slot], 0, sizeof(conns[slot]));
		conns[slot].fd = fd;
	}
}

static void kserver_loop(const int *lfds, int nl)
{
	static struct kconn conns[KS_MAX_CONNS];
	static struct pollfd pfds[KS_MAX_LISTEN + KS_MAX_CONNS];
	static int which[KS_MAX_CONNS];
	for (int i = 0; i < KS_MAX_CONNS; i++)
		conns[i].fd = -1;
	for (;;) {
		int n = 0;
		for (int i = 0; i < nl; i++)
			pfds[n++] =
			    (struct pollfd){.fd = lfds[i], .events = POLLIN};
		int nc = 0;
		for (int i = 0; i < KS_MAX_CONNS; i++) {
			if (conns[i].fd < 0)
				continue;
			which[nc++] = i;
			pfds[n++] =
			    (struct pollfd){.fd = conns[i].fd,
			                    .events = kconn_events(&conns[i])};
		}
		if (poll(pfds, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < nl; i++)
			if (pfds[i].revents & POLLIN)
				kserver_accept(lfds[i], conns);
		for (int k = 0; k < nc; k++) {
			struct kconn *c = &conns[which[k]];
			short re = pfds[nl + k].revents;
			if (c->fd < 0 || re == 0)
				continue;
			if (re & POLLOUT)
				kconn_writable(c);
			if (c->fd >= 0 && (re & (POLLIN | POLLHUP | POLLERR)))
				kconn_readable(c);
		}
	}
}

pid_t fk_kserver_start(const char *addr, const uint16_t *ports, int nports)
{
	if (nports < 1 || nports > KS_MAX_LISTEN)
		return -EINVAL;
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0)
		return -errno;
	pid_t pid = fk_fork();
	if (pid < 0) {
		int err = -errno;
		close(ready[0]);
		close(ready[1]);
		return err;
	}
	if (pid == 0) {
		close(ready[0]);
		signal(SIGPIPE, SIG_IGN);
		int lfds[KS_MAX_LISTEN];
		for (int i = 0; i < nports; i++) {
			struct sockaddr_in sin = {.sin_family = AF_INET,
			                          .sin_port = htons(ports[i])};
			inet_pton(AF_INET, addr, &sin.sin_addr);
			int one = 1;
			lfds[i] = socket(
			    AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    0);
			if (lfds[i] < 0 ||
			    setsockopt(lfds[i], SOL_SOCKET, SO_REUSEADDR, &one,
			               sizeof(one)) != 0 ||
			    bind(lfds[i], (struct sockaddr *)&sin,
			         sizeof(sin)) != 0 ||
			    listen(lfds[i], 128) != 0) {
				fk_msg_send(ready[1], -1, errno);
				_exit(1);
			}
		}
		fk_msg_send(ready[1], 1, 0);
		close(ready[1]);
		kserver_loop(lfds, nports);
		_exit(0);
	}
	close(ready[1]);
	struct fk_msg m;
	int err = fk_msg_recv(ready[0], &m, fk_now_ms() + 10000);
	close(ready[0]);
	if (err == 0 && m.kind != 1)
		err = -(int)m.value;
	if (err) {
		fk_kill(pid);
		return err ? err : -EIO;
	}
	return pid;
}

/* ------------------------------------------------- libclient (children) */

int fk_nc_attach(const char *path, struct nc_client **out, int64_t deadline_ms,
                 int *retries)
{
	for (;;) {
		if (nc_client_attach(path, out) == 0)
			return 0;
		int err = errno;
		if ((err != ENOBUFS && err != ENFILE && err != EAGAIN) ||
		    ms_left(deadline_ms) == 0)
			return -err;
		if (retries != NULL)
			(*retries)++;
		poll(NULL, 0, 1); /* the next try; bounded by the deadline */
	}
}

static int set_timeouts(struct nc_sock *s, int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000,
	                     .tv_usec = (timeout_ms % 1000) * 1000};
	if (nc_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    nc_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		return -errno;
	return 0;
}

int fk_nc_connect(struct nc_client *c, const char *addr, uint16_t port,
                  int timeout_ms, struct nc_sock **out)
{
	struct nc_sock *s;
	if (nc_socket(c, AF_INET, SOCK_STREAM, 0, &s) != 0)
		return -errno;
	int err = set_timeouts(s, timeout_ms);
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port)};
	inet_pton(AF_INET, addr, &sin.sin_addr);
	if (!err && nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		err = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
	if (err) {
		nc_close(s);
		return err;
	}
	*out = s;
	return 0;
}

int fk_nc_send_all(struct nc_sock *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = nc_send(s, p, len, 0);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fk_nc_recv_all(struct nc_sock *s, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = nc_recv(s, p, len, 0);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

#define XFER_CHUNK (256 * 1024)

static int begin(struct nc_client *c, const char *addr, uint16_t port,
                 enum fk_mode mode, uint64_t seed, uint64_t length,
                 int timeout_ms, struct nc_sock **s, char *why)
{
	int err = fk_nc_connect(c, addr, port, timeout_ms, s);
	if (err) {
		snprintf(why, 128, "connect %s:%u: %s", addr, port,
		         strerror(-err));
		return err;
	}
	struct fk_hdr h = {.magic = FK_HDR_MAGIC,
	                   .mode = mode,
	                   .seed = seed,
	                   .length = length};
	err = fk_nc_send_all(*s, &h, sizeof(h));
	if (err) {
		snprintf(why, 128, "send header: %s", strerror(-err));
		nc_close(*s);
	}
	return err;
}

/* EOF expected next: 0, or -errno with `why`. */
static int expect_eof(struct nc_sock *s, char *why)
{
	uint8_t b;
	ssize_t n = nc_recv(s, &b, 1, 0);
	if (n == 0)
		return 0;
	int err = n > 0 ? -EPROTO : errno == EAGAIN ? -ETIMEDOUT : -errno;
	snprintf(why, 128, "after the last byte, not EOF but %s",
	         n > 0 ? "more data" : strerror(-err));
	return err;
}

int fk_nc_upload(struct nc_client *c, const char *addr, uint16_t port,
                 uint64_t seed, uint64_t length, int timeout_ms, char *why)
{
	struct nc_sock *s;
	int err =
	    begin(c, addr, port, FK_SINK, seed, length, timeout_ms, &s, why);
	if (err)
		return err;
	uint8_t *buf = malloc(XFER_CHUNK);
	if (buf == NULL) {
		nc_close(s);
		return -ENOMEM;
	}
	for (uint64_t done = 0; done < length && !err;) {
		size_t n = length - done < XFER_CHUNK ? (size_t)(length - done)
		                                      : XFER_CHUNK;
		fk_pat_fill(seed, done, buf, n);
		err = fk_nc_send_all(s, buf, n);
		if (err)
			snprintf(why, 128, "upload: send at %llu: %s",
			         (unsigned long long)done, strerror(-err));
		done += n;
	}
	struct fk_result r;
	if (!err && (err = fk_nc_recv_all(s, &r, sizeof(r))) != 0)
		snprintf(why, 128, "upload: the server's verdict: %s",
		         strerror(-err));
	if (!err &&
	    (r.magic != FK_HDR_MAGIC || !r.ok || r.verified != length)) {
		snprintf(
		    why, 128, "upload: the server saw %llu of %llu bytes, %s",
		    (unsigned long long)r.verified, (unsigned long long)length,
		    r.ok ? "all correct" : "NOT all correct");
		err = -EIO;
	}
	free(buf);
	if (nc_close(s) != 0 && !err) {
		err = -errno;
		snprintf(why, 128, "upload: close: %s", strerror(-err));
	}
	return err;
}

int fk_nc_download(struct nc_client *c, const char *addr, uint16_t port,
                   uint64_t seed, uint64_t length, int timeout_ms, char *why)
{
	struct nc_sock *s;
	int err =
	    begin(c, addr, port, FK_SOURCE, seed, length, timeout_ms, &s, why);
	if (err)
		return err;
	uint8_t *buf = malloc(XFER_CHUNK);
	if (buf == NULL) {
		nc_close(s);
		return -ENOMEM;
	}
	for (uint64_t done = 0; done < length && !err;) {
		size_t want = length - done < XFER_CHUNK
		                  ? (size_t)(length - done)
		                  : XFER_CHUNK;
		ssize_t n = nc_recv(s, buf, want, 0);
		if (n <= 0) {
			err = n == 0            ? -EPIPE
			      : errno == EAGAIN ? -ETIMEDOUT
			                        : -errno;
			snprintf(why, 128, "download: recv at %llu: %s",
			         (unsigned long long)done,
			         n == 0 ? "early EOF" : strerror(-err));
			break;
		}
		long bad = fk_pat_check(seed, done, buf, (size_t)n);
		if (bad >= 0) {
			snprintf(why, 128, "download: byte %llu is wrong",
			         (unsigned long long)(done + (uint64_t)bad));
			err = -EIO;
		}
		done += (uint64_t)n;
	}
	if (!err)
		err = expect_eof(s, why);
	free(buf);
	nc_close(s);
	return err;
}

int fk_nc_echo(struct nc_client *c, const char *addr, uint16_t port,
               uint64_t seed, uint64_t length, int timeout_ms, char *why)
{
	struct nc_sock *s;
	int err =
	    begin(c, addr, port, FK_ECHO, seed, length, timeout_ms, &s, why);
	if (err)
		return err;
	enum { ECHO_CHUNK = 64 * 1024 };
	uint8_t *out = malloc(ECHO_CHUNK), *in = malloc(ECHO_CHUNK);
	for (uint64_t done = 0; done < length && !err && out && in;) {
		size_t n = length - done < ECHO_CHUNK ? (size_t)(length - done)
		                                      : ECHO_CHUNK;
		fk_pat_fill(seed, done, out, n);
		err = fk_nc_send_all(s, out, n);
		if (!err)
			err = fk_nc_recv_all(s, in, n);
		if (err)
			snprintf(why, 128, "echo at %llu: %s",
			         (unsigned long long)done, strerror(-err));
		else if (memcmp(in, out, n) != 0) {
			snprintf(why, 128, "echo at %llu: wrong bytes back",
			         (unsigned long long)done);
			err = -EIO;
		}
		done += n;
	}
	if (out == NULL || in == NULL)
		err = -ENOMEM;
	if (!err && nc_shutdown(s, SHUT_WR) != 0) {
		err = -errno;
		snprintf(why, 128, "echo: shutdown: %s", strerror(-err));
	}
	if (!err)
		err = expect_eof(s, why);
	free(out);
	free(in);
	nc_close(s);
	return err;
}
