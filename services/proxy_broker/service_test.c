/*
 * The proxy_broker binary as a supervisor would run it: flags, config
 * errors (named by line), --print-config, serving a client against the
 * fake core, the SIGUSR1 table dump, and a clean SIGTERM exit that tells
 * the core nothing (a restarted broker takes the clients over; issue 5).
 *
 * The binary is started with posix_spawn (this process runs nng threads
 * for the fake core, and nng is not fork-safe); its path is argv[1]
 * ($(rootpath :proxy_broker)). Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "services/proxy_broker/broker.h"
#include "services/proxy_broker/fake_core.h"

extern char **environ;

static const char *binary;

struct run {
	char dir[64];
	char sock[108], conf[96], out[96], err[96];
	pid_t pid;
};

static void run_init(struct run *r, const char *config)
{
	strcpy(r->dir, "/tmp/ncbsvc-XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->sock, sizeof(r->sock), "%s/attach", r->dir);
	snprintf(r->conf, sizeof(r->conf), "%s/broker.conf", r->dir);
	snprintf(r->out, sizeof(r->out), "%s/stdout", r->dir);
	snprintf(r->err, sizeof(r->err), "%s/stderr", r->dir);
	FILE *f = fopen(r->conf, "w");
	assert_non_null(f);
	fputs(config, f);
	fclose(f);
}

static void run_cleanup(struct run *r)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", r->dir);
	assert_int_equal(system(cmd), 0);
}

static void spawn(struct run *r, char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, r->out,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, r->err,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(posix_spawn(&r->pid, binary, &fa, NULL, argv, environ),
	                 0);
	posix_spawn_file_actions_destroy(&fa);
}

/* The exit status, or -1 if it did not exit within `ms` (then killed). */
static int wait_exit(struct run *r, int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		int status;
		pid_t p = waitpid(r->pid, &status, WNOHANG);
		if (p == r->pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		usleep(10000);
	}
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	return -1;
}

static char *slurp(const char *path)
{
	static char buf[16384];
	memset(buf, 0, sizeof(buf));
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		(void)n;
		close(fd);
	}
	return buf;
}

/* Waits until `path` holds `text`; false after `ms`. */
static bool wait_for_text(const char *path, const char *text, int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		if (strstr(slurp(path), text) != NULL)
			return true;
		usleep(10000);
	}
	return false;
}

static void usage_without_flags(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "");
	char *argv[] = {(char *)binary, NULL};
	spawn(&r, argv);
	assert_int_equal(wait_exit(&r, 5000), 2);
	assert_non_null(strstr(slurp(r.err), "usage: proxy_broker"));
	run_cleanup(&r);
}

static void bad_config_is_refused_naming_the_line(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "max_sockets 8\n\nbogus 1\n");
	char *argv[] = {(char *)binary,
	                "--socket",
	                r.sock,
	                "--core-ctl",
	                "ipc:///nonexistent/ctl",
	                "--core-fds",
	                "/nonexistent/fds",
	                "--config",
	                r.conf,
	                NULL};
	spawn(&r, argv);
	assert_int_equal(wait_exit(&r, 5000), 2);
	char want[160];
	snprintf(want, sizeof(want), "%s: line 3: unknown setting 'bogus'",
	         r.conf);
	if (strstr(slurp(r.err), want) == NULL)
		fail_msg("stderr lacks '%s': %s", want, slurp(r.err));
	assert_int_equal(access(r.sock, F_OK), -1); /* never created */
	run_cleanup(&r);
}

static void print_config_writes_what_it_read(void **state)
{
	(void)state;
	const char *text = "max_sockets 16\ndeny_connect 10.0.0.0/8 any\n";
	struct run r;
	run_init(&r, text);
	char *argv[] = {(char *)binary, "--print-config", "--config", r.conf,
	                NULL};
	spawn(&r, argv);
	assert_int_equal(wait_exit(&r, 5000), 0);
	char *out = slurp(r.out);
	struct nc_broker_config want, got;
	char err[NC_BROKER_ERR_MAX];
	nc_broker_config_default(&want);
	assert_int_equal(
	    nc_broker_config_parse(&want, text, strlen(text), err, sizeof(err)),
	    0);
	nc_broker_config_default(&got);
	if (nc_broker_config_parse(&got, out, strlen(out), err, sizeof(err)))
		fail_msg("%s\n%s", err, out);
	assert_memory_equal(&want, &got, sizeof(want));
	run_cleanup(&r);
}

/* A raw client: connect, ATTACH, then one SOCKET; blocking, bounded. */
static int attach_and_open(const char *path, uint32_t *client)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct nc_msg_req req;
	memset(&req, 0, sizeof(req));
	nc_msg_init(&req.hdr, NC_MSG_ATTACH, 1, sizeof(req));
	assert_int_equal(send(fd, &req, sizeof(req), 0), sizeof(req));
	struct nc_msg_rep rep;
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &rep, .iov_len = sizeof(rep)};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.buf,
	                     .msg_controllen = sizeof(ctl.buf)};
	assert_int_equal(recvmsg(fd, &msg, MSG_CMSG_CLOEXEC), sizeof(rep));
	assert_int_equal(rep.result, 0);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	assert_non_null(c);
	int fds[3];
	memcpy(fds, CMSG_DATA(c), sizeof(fds));
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	*client = rep.client;
	nc_msg_init(&req.hdr, NC_MSG_SOCKET, 2, sizeof(req));
	req.domain = 2; /* AF_INET */
	req.type = SOCK_STREAM;
	assert_int_equal(send(fd, &req, sizeof(req), 0), sizeof(req));
	assert_int_equal(recv(fd, &rep, sizeof(rep), 0), sizeof(rep));
	assert_int_equal(rep.result, 0);
	assert_int_equal(rep.sock, 0);
	return fd;
}

static void serves_dumps_on_sigusr1_and_exits_on_sigterm(void **state)
{
	(void)state;
	struct run r;
	run_init(&r, "max_sockets 8\nbuffer_count 32\n");
	struct fake_core *core = fake_core_start(r.dir);
	assert_non_null(core);
	char *argv[] = {(char *)binary,
	                "--socket",
	                r.sock,
	                "--core-ctl",
	                (char *)fake_core_url(core),
	                "--core-fds",
	                (char *)fake_core_fds_path(core),
	                "--config",
	                r.conf,
	                NULL};
	spawn(&r, argv);
	struct stat st;
	for (int i = 0; i < 500 && stat(r.sock, &st) != 0; i++)
		usleep(10000);
	assert_int_equal(stat(r.sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	uint32_t client;
	int fd = attach_and_open(r.sock, &client);
	kill(r.pid, SIGUSR1);
	char want[96];
	snprintf(want, sizeof(want), "sock client %u index 0 gen 1 tcp4 open",
	         client);
	if (!wait_for_text(r.err, want, 5000))
		fail_msg("no '%s' in the dump: %s", want, slurp(r.err));
	snprintf(want, sizeof(want), "client %u state attached pid %d", client,
	         (int)getpid());
	assert_non_null(strstr(slurp(r.err), want));
	assert_non_null(
	    strstr(slurp(r.err), "broker core_pipes 1 clients 1 attached 1"));
	kill(r.pid, SIGTERM);
	assert_int_equal(wait_exit(&r, 5000), 0);
	assert_int_equal(access(r.sock, F_OK), -1); /* its socket file gone */
	struct fake_core_seen s;
	fake_core_get_seen(core, &s);
	assert_int_equal(s.nremoved, 0); /* exit tells the core nothing */
	assert_int_equal(s.clients, 1);
	close(fd);
	fake_core_stop(core);
	run_cleanup(&r);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: service_test PATH_TO_proxy_broker\n");
		return 2;
	}
	binary = argv[1];
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(usage_without_flags),
	    cmocka_unit_test(bad_config_is_refused_naming_the_line),
	    cmocka_unit_test(print_config_writes_what_it_read),
	    cmocka_unit_test(serves_dumps_on_sigusr1_and_exits_on_sigterm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
