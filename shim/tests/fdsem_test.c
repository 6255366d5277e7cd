/*
 * fdsem_test: runs shim/testing/fdsem_prog, an ordinary C program, under
 * the shim in an empty network namespace against a kernel-side TCP and
 * UDP echo (python3): numbers, dup/dup2/dup3/F_DUPFD, shared O_NONBLOCK,
 * FIONBIO, FIONREAD, readv/writev, names, sendmmsg/recvmmsg, epoll, a
 * descriptor above FD_SETSIZE, fork (the child gets EBADF on the parent's
 * socket and attaches anew) and exec (close-on-exec honoured; a socket
 * without it survives only as an inert placeholder).
 */
#include "shim/testing/shimtest.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct nc_testbed tb;

static int setup(void **state)
{
	(void)state;
	return st_bed_start(&tb, "shfd", NULL);
}

static int teardown(void **state)
{
	(void)state;
	st_bed_stop(&tb, NULL);
	return 0;
}

static void descriptor_semantics_hold_under_the_shim(void **state)
{
	(void)state;
	char port[16];
	uint16_t p = st_port(5);
	snprintf(port, sizeof(port), "%u", p);
	static struct st_proc server, prog;
	assert_int_equal(st_start_echo(&server, NC_TB_KERNEL4, p), 0);
	static char path[PATH_MAX];
	assert_non_null(realpath("shim/fdsem_prog", path));
	char *cmd[] = {path, NC_TB_KERNEL4, port, NULL};
	struct st_spawn_opts shim = {.shim = true, .broker = tb.broker_socket};
	assert_int_equal(st_spawn(&prog, &shim, cmd), 0);
	int rc = st_finish(&prog, st_now_ms() + 60000);
	printf("fdsem_prog: exit %d:\n%s", rc, prog.out);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(prog.out, "ok fork child"));
	assert_non_null(strstr(prog.out, "ALL OK"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(descriptor_semantics_hold_under_the_shim),
	};
	return cmocka_run_group_tests_name("shim_fdsem", tests, setup,
	                                   teardown);
}
