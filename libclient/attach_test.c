/*
 * The control path against a fake broker listening on a unix socket in a
 * temporary folder: nc_client_attach (the reply and its three descriptors,
 * refusals, a broker that breaks the protocol), errors passed through from
 * replies, a broker that goes away, nc_client_detach, and fork(): a child
 * gets EBADF on the parent's handles, attaches anew, and leaves the
 * parent's client working.
 *
 * No descriptor may leak on any failure path: each refusal test counts
 * /proc/self/fd before and after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libclient/testing/fake.h"

static struct fake F;
static char dir[256], path[300], path2[300];

static int setup(void **state)
{
	(void)state;
	/* Not $TEST_TMPDIR: a unix socket's path must fit in 108 bytes. */
	snprintf(dir, sizeof(dir), "/tmp/nc-attach-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/broker", dir);
	snprintf(path2, sizeof(path2), "%s/broker2", dir);
	struct nc_client_params p;
	fake_params_small(&p);
	if (fake_init(&F, &p) != 0 || fake_listen(&F, path) != 0) {
		/* cmocka skips teardown when setup fails: clean up here. */
		fake_stop(&F);
		unlink(path);
		rmdir(dir);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fake_stop(&F);
	unlink(path);
	unlink(path2);
	rmdir(dir);
	return 0;
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (d != NULL && readdir(d) != NULL)
		n++;
	if (d != NULL)
		closedir(d);
	return n;
}

static void attach_maps_the_region_and_detach_hangs_up(void **state)
{
	(void)state;
	struct nc_client *c;
	assert_int_equal(nc_client_attach(path, &c), 0);
	assert_int_equal(F.requests[NC_MSG_ATTACH], 1);
	assert_int_equal(F.last[NC_MSG_SOCKET].hdr.id, 0);
	assert_true(nc_client_fd(c) >= 0);
	struct nc_sock *s, *t;
	assert_int_equal(nc_socket(c, AF_INET, SOCK_STREAM, 0, &s), 0);
	assert_int_equal(nc_socket(c, AF_INET6, SOCK_DGRAM, 0, &t), 0);
	/* Ids only increase: ATTACH was 1. */
	assert_int_equal(F.last[NC_MSG_SOCKET].hdr.id, 3);
	assert_int_equal(nc_client_detach(c), 0);
	/* Detach closed both sockets, then hung up (the thread ends). */
	assert_int_equal(F.requests[NC_MSG_CLOSE], 2);
	pthread_join(F.thread, NULL);
	F.thread_running = false;
}

static void refusal(int *field, int value, int expect_errno)
{
	int before = open_fds();
	*field = value;
	struct nc_client *c = NULL;
	assert_int_equal(nc_client_attach(path, &c), -1);
	assert_int_equal(errno, expect_errno);
	/* The fake broker (this process) still holds its accepted end. */
	assert_true(F.ctl_fd >= 0);
	assert_int_equal(open_fds(), before + 1);
}

static void attach_refused_by_policy_is_eacces(void **state)
{
	(void)state;
	refusal(&F.forced[NC_MSG_ATTACH], -EACCES, EACCES);
}

static void attach_with_too_few_descriptors_is_eproto(void **state)
{
	(void)state;
	refusal(&F.attach_fds, 2, EPROTO);
}

static void attach_with_the_wrong_id_is_eproto(void **state)
{
	(void)state;
	refusal(&F.attach_id_skew, 5, EPROTO);
}

static void attach_with_params_unlike_the_region_is_eproto(void **state)
{
	(void)state;
	refusal((int *)&F.attach_params.buf_count, 32, EPROTO);
}

static void attach_with_nobody_listening_is_enoent(void **state)
{
	(void)state;
	struct nc_client *c;
	assert_int_equal(nc_client_attach(path2, &c), -1);
	assert_int_equal(errno, ENOENT);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(nc_client_attach(longpath, &c), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

static void reply_errors_come_back_as_errno(void **state)
{
	(void)state;
	struct nc_client *c;
	struct nc_sock *s;
	assert_int_equal(nc_client_attach(path, &c), 0);
	assert_int_equal(nc_socket(c, AF_INET, SOCK_STREAM, 0, &s), 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
	const int cases[][2] = {
	    {NC_MSG_BIND, EADDRINUSE},     {NC_MSG_BIND, EPERM},
	    {NC_MSG_CONNECT, EACCES},      {NC_MSG_CONNECT, ECONNREFUSED},
	    {NC_MSG_CONNECT, EISCONN},     {NC_MSG_CONNECT, EALREADY},
	    {NC_MSG_CONNECT, ENETUNREACH}, {NC_MSG_CONNECT, EAGAIN},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		F.forced[cases[i][0]] = -cases[i][1];
		int r =
		    cases[i][0] == NC_MSG_BIND
		        ? nc_bind(s, (struct sockaddr *)&sin, sizeof(sin))
		        : nc_connect(s, (struct sockaddr *)&sin, sizeof(sin));
		assert_int_equal(r, -1);
		assert_int_equal(errno, cases[i][1]);
		F.forced[cases[i][0]] = 0;
	}
	/* A broker that answers outside errno's range broke the protocol. */
	F.forced[NC_MSG_LISTEN] = -100000;
	assert_int_equal(nc_listen(s, 1), -1);
	assert_int_equal(errno, EPROTO);
	F.forced[NC_MSG_LISTEN] = 0;
	assert_int_equal(nc_close(s), 0);
	assert_int_equal(nc_client_detach(c), 0);
}

static void broker_gone_for_good_makes_control_calls_eio(void **state)
{
	(void)state;
	struct nc_client *c;
	struct nc_sock *s;
	assert_int_equal(nc_client_attach(path, &c), 0);
	assert_int_equal(nc_socket(c, AF_INET, SOCK_DGRAM, 0, &s), 0);
	/* The broker dies: its end of the attach socket closes. */
	__atomic_store_n(&F.stop, true, __ATOMIC_RELEASE);
	pthread_join(F.thread, NULL);
	F.thread_running = false;
	close(F.ctl_fd);
	F.ctl_fd = -1;
	struct nc_sock *t;
	assert_int_equal(nc_socket(c, AF_INET, SOCK_DGRAM, 0, &t), -1);
	assert_int_equal(errno, EIO);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	assert_int_equal(nc_bind(s, (struct sockaddr *)&sin, sizeof(sin)), -1);
	assert_int_equal(errno, EIO);
	/* Never SIGPIPE: the test would die here. */
	assert_int_equal(nc_close(s), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(nc_client_detach(c), 0);
}

/* ---------------------------------------------------------------- fork */

#define CHILD_CHECK(cond)                                                      \
	do {                                                                   \
		if (!(cond))                                                   \
			_exit(__LINE__ & 0x7f ? __LINE__ & 0x7f : 1);          \
	} while (0)

static void child(struct nc_client *c, struct nc_sock *s)
{
	struct nc_sock *t;
	CHILD_CHECK(nc_socket(c, AF_INET, SOCK_STREAM, 0, &t) == -1);
	CHILD_CHECK(errno == EBADF);
	CHILD_CHECK(nc_send(s, "x", 1, 0) == -1 && errno == EBADF);
	CHILD_CHECK(nc_close(s) == -1 && errno == EBADF);
	CHILD_CHECK(nc_client_fd(c) == -1 && errno == EBADF);
	struct nc_pollfd pfd = {.sock = s, .events = NC_POLLIN};
	CHILD_CHECK(nc_poll(c, &pfd, 1, 0) == -1 && errno == EBADF);
	/* A client of its own. */
	struct nc_client *mine;
	CHILD_CHECK(nc_client_attach(path2, &mine) == 0);
	CHILD_CHECK(nc_socket(mine, AF_INET, SOCK_STREAM, 0, &t) == 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
	CHILD_CHECK(nc_connect(t, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHILD_CHECK(nc_send(t, "child", 5, 0) == 5);
	CHILD_CHECK(nc_client_detach(mine) == 0);
	/* Releases the child's copies of the parent's client; tells nobody. */
	CHILD_CHECK(nc_client_detach(c) == 0);
	_exit(0);
}

static void forked_child_attaches_anew_and_parent_carries_on(void **state)
{
	(void)state;
	struct fake G;
	struct nc_client_params p;
	fake_params_small(&p);
	assert_int_equal(fake_init(&G, &p), 0);
	assert_int_equal(fake_listen(&G, path2), 0);
	struct nc_client *c;
	struct nc_sock *s;
	assert_int_equal(nc_client_attach(path, &c), 0);
	assert_int_equal(nc_socket(c, AF_INET, SOCK_STREAM, 0, &s), 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
	assert_int_equal(nc_connect(s, (struct sockaddr *)&sin, sizeof(sin)),
	                 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child(c, s);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	pthread_mutex_lock(&G.lock);
	unsigned int attaches = G.requests[NC_MSG_ATTACH];
	size_t child_bytes = G.closed_tx_bytes;
	pthread_mutex_unlock(&G.lock);
	assert_int_equal(attaches, 1);
	assert_int_equal(child_bytes, 5);
	/* The parent's client noticed nothing. */
	pthread_mutex_lock(&F.lock);
	unsigned int closes = F.requests[NC_MSG_CLOSE];
	pthread_mutex_unlock(&F.lock);
	assert_int_equal(closes, 0);
	assert_int_equal(nc_send(s, "parent", 6, 0), 6);
	uint8_t got[16];
	assert_int_equal(fake_tx_take(&F, s->idx, got, sizeof(got), NULL), 6);
	assert_int_equal(fake_rx_data(&F, s->idx, "back", 4), 0);
	assert_int_equal(nc_recv(s, got, sizeof(got), 0), 4);
	assert_int_equal(nc_close(s), 0);
	assert_int_equal(nc_client_detach(c), 0);
	fake_stop(&G);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(attach_maps_the_region_and_detach_hangs_up),
	    T(attach_refused_by_policy_is_eacces),
	    T(attach_with_too_few_descriptors_is_eproto),
	    T(attach_with_the_wrong_id_is_eproto),
	    T(attach_with_params_unlike_the_region_is_eproto),
	    T(attach_with_nobody_listening_is_enoent),
	    T(reply_errors_come_back_as_errno),
	    T(broker_gone_for_good_makes_control_calls_eio),
	    T(forked_child_attaches_anew_and_parent_carries_on),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
