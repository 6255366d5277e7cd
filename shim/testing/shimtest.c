/*
 * shimtest.c: children under the shim, their output, kernel-side helpers
 * and file checks for the shim's acceptance tests (see shimtest.h).
 *
 * The children table is fixed-size and process-wide: tests are single
 * threaded and start a handful of programs each.
 */
#include "shim/testing/shimtest.h"

#include "shim/testing/run.h"
#include "tests/sha256/sha256.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 16

static struct st_proc *children[MAX_CHILDREN];

int64_t st_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

const char *st_preload_path(void)
{
	static char path[PATH_MAX];
	if (path[0] == '\0' &&
	    realpath("shim/libnetcore_preload.so", path) == NULL)
		return NULL;
	return path;
}

/*
 * Under --config=asan the preload library is instrumented too, and the
 * ASan runtime must come first in a process: so the children get the
 * sanitizer runtimes this (instrumented) test was loaded with, ahead of
 * the shim, and no leak check (the programs under test are not ours).
 * The uninstrumented programs then run with an instrumented shim.
 */
static const char *preload_value(void)
{
#ifdef __SANITIZE_ADDRESS__
	static char value[3 * PATH_MAX];
	if (value[0] != '\0')
		return value;
	FILE *maps = fopen("/proc/self/maps", "re");
	char line[PATH_MAX + 128], asan[PATH_MAX] = "", ubsan[PATH_MAX] = "";
	while (maps != NULL && fgets(line, sizeof(line), maps) != NULL) {
		char *path = strchr(line, '/');
		if (path == NULL)
			continue;
		path[strcspn(path, "\n")] = '\0';
		if (strstr(path, "/libasan.so") != NULL)
			snprintf(asan, sizeof(asan), "%s", path);
		if (strstr(path, "/libubsan.so") != NULL)
			snprintf(ubsan, sizeof(ubsan), "%s", path);
	}
	if (maps != NULL)
		fclose(maps);
	snprintf(value, sizeof(value), "%s:%s:%s", asan, ubsan,
	         st_preload_path());
	setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
	return value;
#else
	return st_preload_path();
#endif
}

bool st_sanitized(void)
{
#ifdef __SANITIZE_ADDRESS__
	return true;
#else
	return false;
#endif
}

uint16_t st_port(int k)
{
	return (uint16_t)(20000 + (getpid() % 20000) + k);
}

/* ------------------------------------------------------------ children */

static void child_body(const struct st_spawn_opts *o, int in, int out,
                       char *const argv[])
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dup2(in, 0);
	dup2(out, 1);
	dup2(out, 2);
	if (o->cwd != NULL && chdir(o->cwd) != 0)
		_exit(91);
	if (o->shim) {
		shim_run_exec(preload_value(), o->broker, o->env, argv);
	} else {
		char **e = shim_run_env(NULL, NULL, o->env);
		if (e != NULL)
			execve(argv[0], argv, e);
	}
	_exit(92);
}

static void remember(struct st_proc *p)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == NULL || children[i] == p) {
			children[i] = p;
			return;
		}
	}
}

int st_spawn(struct st_proc *p, const struct st_spawn_opts *o,
             char *const argv[])
{
	memset(p, 0, sizeof(*p));
	p->pidfd = p->out_fd = p->in_fd = -1;
	int outp[2], inp[2] = {-1, -1};
	if (pipe2(outp, O_CLOEXEC) != 0)
		return -errno;
	if (o->stdin_pipe
	        ? pipe2(inp, O_CLOEXEC) != 0
	        : (inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		int err = -errno;
		close(outp[0]);
		close(outp[1]);
		return err;
	}
	pid_t pid = fork();
	if (pid == 0)
		child_body(o, inp[0], outp[1], argv);
	close(outp[1]);
	close(inp[0]);
	if (pid < 0) {
		int err = -errno;
		close(outp[0]);
		if (inp[1] >= 0)
			close(inp[1]);
		return err;
	}
	p->pid = pid;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	p->out_fd = outp[0];
	p->in_fd = inp[1];
	fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	remember(p);
	return 0;
}

void st_pump(struct st_proc *p)
{
	while (p->out_fd >= 0) {
		char buf[4096];
		ssize_t n = read(p->out_fd, buf, sizeof(buf));
		if (n < 0)
			return; /* EAGAIN: nothing more for now */
		if (n == 0) {
			close(p->out_fd);
			p->out_fd = -1;
			return;
		}
		size_t room = sizeof(p->out) - 1 - p->out_len;
		size_t k = (size_t)n < room ? (size_t)n : room;
		memcpy(p->out + p->out_len, buf, k);
		p->out_len += k;
		p->out[p->out_len] = '\0';
	}
}

int st_wait_output(struct st_proc *p, const char *text, int64_t deadline_ms)
{
	for (;;) {
		st_pump(p);
		if (strstr(p->out, text) != NULL)
			return 0;
		int64_t left = deadline_ms - st_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (p->out_fd < 0)
			return -ECHILD;
		struct pollfd f = {.fd = p->out_fd, .events = POLLIN};
		poll(&f, 1, (int)(left > 1000 ? 1000 : left));
	}
}

static int reap(struct st_proc *p)
{
	int status;
	if (waitpid(p->pid, &status, 0) != p->pid)
		return -ECHILD;
	p->pid = 0;
	if (p->pidfd >= 0)
		close(p->pidfd);
	p->pidfd = -1;
	p->status =
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return p->status;
}

int st_finish(struct st_proc *p, int64_t deadline_ms)
{
	if (p->pid == 0)
		return p->status;
	for (;;) {
		st_pump(p);
		struct pollfd f[2] = {{.fd = p->pidfd, .events = POLLIN},
		                      {.fd = p->out_fd, .events = POLLIN}};
		int64_t left = deadline_ms - st_now_ms();
		if (left <= 0)
			break;
		poll(f, 2, (int)(left > 1000 ? 1000 : left));
		if ((f[0].revents & POLLIN) && p->out_fd < 0)
			return reap(p);
		if ((f[0].revents & POLLIN) && !(f[1].revents & POLLIN)) {
			st_pump(p);
			return reap(p);
		}
	}
	kill(p->pid, SIGKILL);
	reap(p);
	st_pump(p);
	return -ETIMEDOUT;
}

void st_cleanup(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct st_proc *p = children[i];
		if (p == NULL)
			continue;
		if (p->pid > 0) {
			kill(p->pid, SIGKILL);
			reap(p);
		}
		if (p->out_fd >= 0)
			close(p->out_fd);
		if (p->in_fd >= 0)
			close(p->in_fd);
		p->out_fd = p->in_fd = -1;
		children[i] = NULL;
	}
}

/* -------------------------------------------------------- kernel side */

static bool try_connect(const char *addr, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port)};
	inet_pton(AF_INET, addr, &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct timeval tv = {.tv_sec = 1};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

int st_wait_listening(const char *addr, uint16_t port, struct st_proc *p,
                      int64_t deadline_ms)
{
	while (st_now_ms() < deadline_ms) {
		if (try_connect(addr, port))
			return 0;
		if (p != NULL) {
			st_pump(p);
			struct pollfd f = {.fd = p->pidfd, .events = POLLIN};
			if (poll(&f, 1, 50) > 0)
				return -ECHILD;
		} else {
			poll(NULL, 0, 50); /* a retry interval, not a wait */
		}
	}
	return -ETIMEDOUT;
}

/* ---------------------------------------------------------------- files */

int st_mkdtemp(char *path)
{
	snprintf(path, 64, "/tmp/nc-shimtest-XXXXXX");
	return mkdtemp(path) != NULL ? 0 : -errno;
}

void st_rmdir(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' &&
		    (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(path);
}

/* splitmix64 of (seed, word index): any offset, any cut. */
static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void pattern_chunk(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	/* off is a multiple of 8 here (chunks are). */
	for (size_t k = 0; k < n; k += 8) {
		uint64_t w = word(seed, (off + k) / 8);
		for (size_t b = 0; b < 8 && k + b < n; b++)
			buf[k + b] = (uint8_t)(w >> (8 * b));
	}
}

int st_write_pattern(const char *path, uint64_t seed, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	static uint8_t buf[1 << 20];
	for (uint64_t off = 0; off < len;) {
		size_t n =
		    len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		pattern_chunk(seed, off, buf, n);
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
		off += n;
	}
	return close(fd) == 0 ? 0 : -errno;
}

int st_check_pattern(const char *path, uint64_t seed, uint64_t len,
                     uint64_t *bad)
{
	static uint8_t want[1 << 20], got[1 << 20];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	*bad = 0;
	if (fd < 0)
		return -1;
	uint64_t off = 0;
	for (;;) {
		ssize_t n = read(fd, got, sizeof(got));
		if (n <= 0)
			break;
		pattern_chunk(seed, off, want, (size_t)n);
		for (ssize_t k = 0; k < n; k++) {
			if (off + (uint64_t)k >= len || want[k] != got[k]) {
				*bad = off + (uint64_t)k;
				close(fd);
				return -1;
			}
		}
		off += (uint64_t)n;
	}
	close(fd);
	*bad = off;
	return off == len ? 0 : -1;
}

int st_sha256_file(const char *path, char *hex)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct nc_sha256 s;
	nc_sha256_init(&s);
	static uint8_t buf[1 << 20];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		nc_sha256_update(&s, buf, (size_t)n);
	close(fd);
	uint8_t d[32];
	nc_sha256_final(&s, d);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}

int st_bed_start(struct nc_testbed *tb, const char *tag, char *dir)
{
	if (dir != NULL)
		dir[0] = '\0';
	if (nc_testbed_start_sockets(tb, tag, 0, NULL) == 0 &&
	    nc_testbed_enter(tb) == 0 && (dir == NULL || st_mkdtemp(dir) == 0))
		return 0;
	st_bed_stop(tb, dir);
	return -1;
}

void st_bed_stop(struct nc_testbed *tb, const char *dir)
{
	st_cleanup();
	if (dir != NULL && dir[0] != '\0')
		st_rmdir(dir);
	nc_testbed_stop(tb);
}

/* Echoes every TCP connection and every UDP datagram on host:port. */
static const char echo_py[] =
    "import socket, socketserver, sys, threading\n"
    "host, port = sys.argv[1], int(sys.argv[2])\n"
    "class H(socketserver.BaseRequestHandler):\n"
    "    def handle(self):\n"
    "        while True:\n"
    "            d = self.request.recv(65536)\n"
    "            if not d:\n"
    "                break\n"
    "            self.request.sendall(d)\n"
    "def udp():\n"
    "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    u.bind((host, port))\n"
    "    while True:\n"
    "        d, a = u.recvfrom(65536)\n"
    "        u.sendto(d, a)\n"
    "threading.Thread(target=udp, daemon=True).start()\n"
    "socketserver.ThreadingTCPServer.allow_reuse_address = True\n"
    "socketserver.ThreadingTCPServer.daemon_threads = True\n"
    "socketserver.ThreadingTCPServer((host, port), H).serve_forever()\n";

int st_start_echo(struct st_proc *p, const char *addr, uint16_t port)
{
	char text[16];
	snprintf(text, sizeof(text), "%u", port);
	char *argv[] = {"/usr/bin/python3", "-c", (char *)echo_py,
	                (char *)addr,       text, NULL};
	const struct st_spawn_opts plain = {.shim = false};
	int err = st_spawn(p, &plain, argv);
	return err ? err
	           : st_wait_listening(addr, port, p, st_now_ms() + 20000);
}
