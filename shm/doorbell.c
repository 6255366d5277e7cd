/*
 * Doorbells: eventfds.
 *
 * An eventfd counts rings; reading it clears the count. We create them
 * non-blocking, so draining never sleeps, and waiting is an explicit poll(2)
 * that can sit beside other fds (a caller with its own epoll uses the fd
 * directly). When to ring is the ring's business (nc_ring_needs_signal):
 * this file only moves the bell.
 *
 * What it does not do: decide who wakes whom, or retry a wait after EINTR
 * past its deadline (the caller's loop re-checks its rings anyway).
 */
#include "shm/shm.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int nc_doorbell_create(struct nc_doorbell *db)
{
	db->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return db->fd < 0 ? -errno : 0;
}

void nc_doorbell_adopt(struct nc_doorbell *db, int fd)
{
	db->fd = fd;
}

int nc_doorbell_ring(struct nc_doorbell *db)
{
	uint64_t one = 1;
	ssize_t n = write(db->fd, &one, sizeof(one));
	if (n == sizeof(one))
		return 0;
	/* EAGAIN: the counter is saturated, so the bell is ringing anyway. */
	return errno == EAGAIN ? 0 : -errno;
}

int nc_doorbell_drain(struct nc_doorbell *db)
{
	uint64_t count;
	if (read(db->fd, &count, sizeof(count)) == sizeof(count))
		return 0;
	return errno == EAGAIN ? 0 : -errno;
}

int nc_doorbell_wait(struct nc_doorbell *db, int timeout_ms)
{
	struct pollfd pfd = {.fd = db->fd, .events = POLLIN};
	int n = poll(&pfd, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return 0;
	int err = nc_doorbell_drain(db);
	return err ? err : 1;
}

void nc_doorbell_close(struct nc_doorbell *db)
{
	if (db->fd >= 0)
		close(db->fd);
	db->fd = -1;
}
