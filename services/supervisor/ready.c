/*
 * The ready probe (see sup.h): "ready" means a client can attach and use
 * a socket, so the probe is a client. It attaches to the broker through
 * libclient, opens a TCP socket, binds port 0 and listens (each a request
 * through the broker to the core), then closes and detaches. libclient
 * starts no threads and every call is bounded by its own and the broker's
 * timeouts.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "libclient/netcore.h"
#include "services/supervisor/sup.h"

int nci_ready_probe(const char *attach_socket)
{
	struct nc_client *client;
	if (nc_client_attach(attach_socket, &client) != 0)
		return -errno;
	struct nc_sock *sock = NULL;
	struct sockaddr_in any = {.sin_family = AF_INET};
	int rc = nc_socket(client, AF_INET, SOCK_STREAM, 0, &sock);
	if (rc == 0)
		rc = nc_bind(sock, (struct sockaddr *)&any, sizeof(any));
	if (rc == 0)
		rc = nc_listen(sock, 1);
	int err = rc == 0 ? 0 : -errno;
	if (sock != NULL && nc_close(sock) != 0 && err == 0)
		err = -errno;
	nc_client_detach(client);
	return err;
}
