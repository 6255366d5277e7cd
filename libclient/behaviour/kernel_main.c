/*
 * The behaviour suite over the kernel's own sockets: Linux, the oracle.
 * Loopback only, ports from bind(0), no privileges.
 */
#include "libclient/behaviour/api.h"

int main(void)
{
	return behaviour_run(&api_kernel) == 0 ? 0 : 1;
}
