/*
 * The phy driver's loop: packets between a backend and the phy region.
 *
 * States: HANDSHAKING (asking the core for rings; retried for as long as it
 * takes, since the core may be restarting) and RUNNING. Each iteration
 * moves up to one batch each way: backend -> RX ring (dropping and counting
 * when the core has no buffer for it; the core is never waited for) and TX
 * ring -> backend. With nothing to do, it sleeps on the backend's fd and
 * the phy doorbell, after requesting a signal (shm.h's protocol).
 *
 * What it does not do: look inside packets (beyond their length), or hold
 * any state a restart would lose except packets in flight.
 */
#ifndef NETCORE_PHY_H
#define NETCORE_PHY_H

#include <signal.h>

#include "services/phy_driver/backend.h"
#include "services/phy_driver/phy_link.h"

/* Runs until *stop is set. Returns 0, or -errno on a backend failure. */
int nc_phy_run(struct nc_phy_dev *d, struct nc_phy_backend *b,
               volatile sig_atomic_t *stop);

#endif /* NETCORE_PHY_H */
