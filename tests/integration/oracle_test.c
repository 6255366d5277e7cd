/*
 * Linux is the oracle: the behaviour suite that passes against the
 * kernel's sockets (//libclient:sockets_kernel_test) runs here, unchanged,
 * against libclient attached to a real broker and core. The client runs in
 * an empty network namespace of its own, so every byte it moves can only
 * have gone through netcore; both ends of each connection use the stack's
 * own address, which lwIP loops back internally.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libclient/behaviour/api.h"
#include "tests/testbed/testbed.h"

static int run_suite(const struct nc_testbed *tb)
{
	if (unshare(CLONE_NEWNET) != 0) {
		perror("unshare");
		return 1;
	}
	setenv("NETCORE_BROKER_SOCKET", tb->broker_socket, 1);
	setenv("NETCORE_LOOPBACK4", NC_TB_STACK4, 1);
	setenv("NETCORE_LOOPBACK6", NC_TB_STACK6, 1);
	return behaviour_run(&api_netcore) == 0 ? 0 : 1;
}

int main(void)
{
	struct nc_testbed tb;
	if (nc_testbed_start_sockets(&tb, "oracle", 7, NULL) != 0) {
		fprintf(stderr, "oracle_test: the services did not start\n");
		return 1;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(run_suite(&tb));
	int status = 1;
	if (pid > 0)
		waitpid(pid, &status, 0);
	nc_testbed_stop(&tb);
	return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
