/* The phy loop; see phy.h. */
#include "services/phy_driver/phy.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>

#include "services/common/health.h"

#define HANDSHAKE_SLICE_MS 200
/* An idle loop still wakes this often, so its heartbeat tick stays fresh
 * (services/common/health.h). */
#define IDLE_SLICE_MS 250

/* Asks for rings until the core grants them or we are told to stop. */
static int attach(struct nc_phy_dev *d, volatile sig_atomic_t *stop)
{
	while (!*stop) {
		nc_health_tick();
		int err = nc_phy_dev_handshake(d, HANDSHAKE_SLICE_MS);
		if (err == 0)
			return 0;
		if (err != -ETIMEDOUT)
			return err;
	}
	return -EINTR;
}

/* A packet that has nowhere to go is still read, so the device drains. */
static void drop_one(struct nc_phy_dev *d, struct nc_phy_backend *b)
{
	static unsigned char scratch[NC_PHY_MAX_BUF];
	ssize_t n = b->ops->recv(b->state, scratch, sizeof(scratch));
	if (n > 0)
		d->control->phy.rx_drop_no_buffer++;
}

/* Backend -> core. Returns packets moved (drops count as work too). */
static int receive(struct nc_phy_dev *d, struct nc_phy_backend *b)
{
	int moved = 0;
	for (; moved < NC_PHY_BATCH; moved++) {
		struct nc_desc desc;
		void *buf = nc_phy_dev_rx_buffer(d, &desc);
		if (buf == NULL) {
			drop_one(d, b);
			break;
		}
		ssize_t n = b->ops->recv(b->state, buf, desc.length);
		if (n <= 0 || (size_t)n > d->params.mtu) {
			if (n > 0 || n == -EMSGSIZE)
				d->control->phy.rx_drop_oversize++;
			nc_phy_dev_rx_unused(d, &desc);
			if (n == 0 || n < 0)
				break;
			continue;
		}
		nc_phy_dev_rx_commit(d, &desc, (uint32_t)n);
	}
	return moved;
}

/* Core -> backend. */
static int transmit(struct nc_phy_dev *d, struct nc_phy_backend *b)
{
	struct nc_desc batch[NC_PHY_BATCH];
	int n = nc_phy_dev_tx(d, batch, NC_PHY_BATCH);
	for (int i = 0; i < n; i++) {
		void *pkt = nc_phy_dev_data(d, &batch[i]);
		if (pkt == NULL ||
		    b->ops->send(b->state, pkt, batch[i].length) != 0)
			d->control->phy.tx_errors++;
		else {
			d->control->phy.tx_packets++;
			d->control->phy.tx_bytes += batch[i].length;
		}
		nc_phy_dev_tx_done(d, &batch[i]);
	}
	return n;
}

static int sleep_until_work(struct nc_phy_dev *d, struct nc_phy_backend *b)
{
	if (!nc_phy_dev_prepare_wait(d))
		return 0;
	struct pollfd fds[2] = {
	    {.fd = b->ops->fd(b->state), .events = POLLIN},
	    {.fd = d->phy_bell->fd, .events = POLLIN},
	};
	int n = poll(fds, 2, IDLE_SLICE_MS);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (fds[1].revents & POLLIN)
		nc_doorbell_drain(d->phy_bell);
	if (fds[0].revents & (POLLERR | POLLNVAL))
		return -EIO;
	return 0;
}

int nc_phy_run(struct nc_phy_dev *d, struct nc_phy_backend *b,
               volatile sig_atomic_t *stop)
{
	int err = attach(d, stop);
	while (!err && !*stop) {
		nc_health_tick();
		if (!d->attached || nc_phy_dev_core_restarted(d)) {
			err = attach(d, stop);
			continue;
		}
		int work = receive(d, b);
		int sent = transmit(d, b);
		if (sent < 0) {
			d->attached = false; /* the core broke a ring */
			continue;
		}
		if (nc_phy_dev_flush(d) != 0)
			continue;
		if (work == 0 && sent == 0)
			err = sleep_until_work(d, b);
	}
	return *stop ? 0 : err;
}
