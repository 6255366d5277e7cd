/*
 * The behaviour suite over libclient, against a running broker and core
 * (NETCORE_BROKER_SOCKET; see api_netcore.c). Tagged "manual" until the
 * services exist: `bazel test //libclient/...` does not run it; run it
 * with `bazel test --test_env=NETCORE_BROKER_SOCKET=... \
 * //libclient:sockets_netcore_test`.
 */
#include "libclient/behaviour/api.h"

int main(void)
{
	return behaviour_run(&api_netcore) == 0 ? 0 : 1;
}
