/*
 * The TUN backend: bare IP packets (IFF_TUN | IFF_NO_PI) to and from the
 * host kernel.
 *
 * The device is made persistent, so a restarted phy driver re-attaches to
 * the same device with its addresses and routes intact, and the kernel side
 * never sees the link disappear. Configuration is idempotent for the same
 * reason: an address that is already there is fine.
 *
 * IPv6 duplicate address detection is switched off on the device before the
 * address is added: on a point-to-point TUN nobody else can hold it, and
 * DAD would hold the address back for a second after every start.
 *
 * What it does not do: delete the device (whoever created the namespace or
 * asked for persistence does), or route.
 */
#include "services/phy_driver/backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/ipv6.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct tun {
	int fd;
};

static ssize_t tun_recv(void *state, void *buf, size_t cap)
{
	struct tun *t = state;
	ssize_t n = read(t->fd, buf, cap);
	if (n >= 0)
		return n;
	return errno == EAGAIN ? 0 : -errno;
}

static int tun_send(void *state, const void *pkt, size_t len)
{
	struct tun *t = state;
	ssize_t n = write(t->fd, pkt, len);
	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

static int tun_fd(void *state)
{
	return ((struct tun *)state)->fd;
}

static void tun_close(void *state)
{
	struct tun *t = state;
	close(t->fd);
	free(t);
}

static const struct nc_phy_backend_ops tun_ops = {
    .recv = tun_recv,
    .send = tun_send,
    .fd = tun_fd,
    .close = tun_close,
};

static int split_cidr(const char *cidr, char *addr, size_t cap, int *prefix)
{
	const char *slash = strchr(cidr, '/');
	if (slash == NULL || (size_t)(slash - cidr) >= cap)
		return -EINVAL;
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = '\0';
	*prefix = atoi(slash + 1);
	return 0;
}

static int ioctl_ok(int fd, unsigned long req, void *arg)
{
	if (ioctl(fd, req, arg) == 0 || errno == EEXIST)
		return 0;
	return -errno;
}

static int set_ipv4(int sock, const char *dev, const char *cidr)
{
	char addr[INET_ADDRSTRLEN];
	int prefix;
	if (split_cidr(cidr, addr, sizeof(addr), &prefix) || prefix < 1 ||
	    prefix > 32)
		return -EINVAL;
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", dev);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
		return -EINVAL;
	int err = ioctl_ok(sock, SIOCSIFADDR, &ifr);
	if (err)
		return err;
	sin->sin_addr.s_addr = htonl(~0u << (32 - prefix));
	return ioctl_ok(sock, SIOCSIFNETMASK, &ifr);
}

static void disable_dad(const char *dev)
{
	char path[128];
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/accept_dad",
	         dev);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "0", 1) < 0)
			perror("phy: accept_dad");
		close(fd);
	}
}

static int set_ipv6(const char *dev, int ifindex, const char *cidr)
{
	char addr[INET6_ADDRSTRLEN];
	int prefix;
	if (split_cidr(cidr, addr, sizeof(addr), &prefix) || prefix < 1 ||
	    prefix > 128)
		return -EINVAL;
	struct in6_ifreq req = {.ifr6_prefixlen = (unsigned)prefix,
	                        .ifr6_ifindex = ifindex};
	if (inet_pton(AF_INET6, addr, &req.ifr6_addr) != 1)
		return -EINVAL;
	disable_dad(dev);
	int sock = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	int err = ioctl_ok(sock, SIOCSIFADDR, &req);
	close(sock);
	return err;
}

static int configure(const struct nc_tun_config *c)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", c->name);
	ifr.ifr_mtu = (int)c->mtu;
	int err = ioctl_ok(sock, SIOCSIFMTU, &ifr);
	if (!err)
		err = ioctl_ok(sock, SIOCGIFINDEX, &ifr);
	int ifindex = ifr.ifr_ifindex;
	if (!err && c->ipv4)
		err = set_ipv4(sock, c->name, c->ipv4);
	if (!err) {
		err = ioctl_ok(sock, SIOCGIFFLAGS, &ifr);
		ifr.ifr_flags |= IFF_UP;
		err = err ?: ioctl_ok(sock, SIOCSIFFLAGS, &ifr);
	}
	/* After the device is up: the kernel refuses IPv6 addresses before. */
	if (!err && c->ipv6)
		err = set_ipv6(c->name, ifindex, c->ipv6);
	close(sock);
	return err;
}

int nc_phy_tun_open(struct nc_phy_backend *b, const struct nc_tun_config *c)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct ifreq ifr = {0};
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", c->name);
	int err = ioctl_ok(fd, TUNSETIFF, &ifr);
	if (!err && c->persist)
		err = ioctl_ok(fd, TUNSETPERSIST, (void *)1);
	err = err ?: configure(c);
	struct tun *t = err ? NULL : malloc(sizeof(*t));
	if (t == NULL) {
		close(fd);
		return err ? err : -ENOMEM;
	}
	t->fd = fd;
	b->ops = &tun_ops;
	b->state = t;
	return 0;
}
