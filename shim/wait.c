/*
 * wait.c: poll, ppoll, select and pselect over a mix of kernel descriptors
 * and netcore sockets, without busy-waiting.
 *
 * A call naming no netcore socket is libc's, unchanged. Otherwise the set
 * is split: netcore sockets go to nc_poll(), kernel descriptors to the
 * kernel, and the kernel also watches libclient's doorbell (an eventfd
 * rung when any netcore socket may have changed):
 *
 *   loop: look at the netcore sockets (nc_poll, timeout 0: this consumes
 *         the doorbell and leaves a wake-up request behind);
 *         if any is ready, or time is up: look at the kernel ones too
 *         (timeout 0) and return both;
 *         else sleep in the kernel on the kernel descriptors + doorbell;
 *         kernel descriptors ready: look at netcore once more, return;
 *         only the doorbell (or the cap below): loop.
 *
 * A set of netcore sockets only (and no signal mask) is one blocking
 * nc_poll(), which cooperates with libclient's other sleepers.
 *
 * The cap. Another thread blocked inside libclient may consume the
 * doorbell between our look and our sleep (libclient wakes its own
 * sleepers then, but cannot wake a thread sleeping in the kernel here),
 * so each kernel sleep lasts at most NCI_WAIT_CAP_MS and then looks again.
 * A single-threaded program never needs it. Closing this gap needs a
 * libclient change (see docs/architecture.md, "Shim").
 *
 * select: converted to poll (Linux's POLLIN_SET/POLLOUT_SET/POLLEX_SET
 * mapping); descriptor limits are FD_SETSIZE as always, since netcore
 * sockets are real descriptors. The remaining time is written back as
 * Linux does.
 *
 * What it does not do: POLLPRI on netcore sockets (no urgent data), and a
 * signal arriving while a netcore-only set waits does not end the wait
 * (libclient's waits restart; EINTR comes only from the kernel sleep).
 */
#include "shim/nci_enter.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT          __attribute__((visibility("default")))
#define NCI_WAIT_CAP_MS 100

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ms left until deadline (-1: none), at most cap (-1: no cap). */
static int ms_left(int64_t deadline, int cap)
{
	if (deadline < 0)
		return cap;
	int64_t left = deadline - now_ms();
	if (left < 0)
		left = 0;
	if (cap >= 0 && left > cap)
		left = cap;
	return (int)left;
}

/* The split set: netcore entries, kernel entries (+ the doorbell), and
 * where each came from. */
struct split {
	struct pollfd *fds;
	nfds_t n;
	struct nc_pollfd *nc;
	struct nci_sock **held;
	nfds_t *nc_at; /* nc[i] is fds[nc_at[i]] */
	size_t n_nc;
	struct pollfd *k;
	nfds_t *k_at;
	size_t n_k;
	int nvals; /* stale sockets (a parent's, in a forked child) */
};

static short nc_events(short ev)
{
	short want = ev & (POLLIN | POLLOUT | NC_POLLRDHUP);
	if (ev & POLLRDNORM)
		want |= POLLIN;
	if (ev & POLLWRNORM)
		want |= POLLOUT;
	return want;
}

static short nc_revents(short ev, short got)
{
	short r = got & (ev | POLLERR | POLLHUP | POLLNVAL);
	if ((ev & POLLRDNORM) && (got & POLLIN))
		r |= POLLRDNORM;
	if ((ev & POLLWRNORM) && (got & POLLOUT))
		r |= POLLWRNORM;
	return r;
}

static void split_free(struct split *sp)
{
	for (size_t i = 0; i < sp->n_nc; i++)
		nci_put(sp->held[i]);
	free(sp->nc);
	free(sp->held);
	free(sp->nc_at);
	free(sp->k);
	free(sp->k_at);
}

static void split_one(struct split *sp, nfds_t i)
{
	struct pollfd *f = &sp->fds[i];
	f->revents = 0;
	bool stale;
	struct nci_sock *p = f->fd >= 0 ? nci_get_live(f->fd, &stale) : NULL;
	if (p != NULL) {
		sp->held[sp->n_nc] = p;
		sp->nc[sp->n_nc] = (struct nc_pollfd){
		    .sock = p->s, .events = nc_events(f->events)};
		sp->nc_at[sp->n_nc++] = i;
	} else if (f->fd >= 0 && stale) {
		f->revents = POLLNVAL;
		sp->nvals++;
	} else {
		sp->k[sp->n_k] = *f;
		sp->k_at[sp->n_k++] = i;
	}
}

static int split_make(struct split *sp, struct pollfd *fds, nfds_t n)
{
	memset(sp, 0, sizeof(*sp));
	sp->fds = fds;
	sp->n = n;
	sp->nc = calloc(n + 1, sizeof(*sp->nc));
	sp->held = calloc(n + 1, sizeof(*sp->held));
	sp->nc_at = calloc(n + 1, sizeof(*sp->nc_at));
	sp->k = calloc(n + 1, sizeof(*sp->k));
	sp->k_at = calloc(n + 1, sizeof(*sp->k_at));
	if (!sp->nc || !sp->held || !sp->nc_at || !sp->k || !sp->k_at) {
		split_free(sp);
		return nci_fail(ENOMEM);
	}
	for (nfds_t i = 0; i < n; i++)
		split_one(sp, i);
	return 0;
}

/* Copies results back into the caller's array; the count of entries with
 * revents. */
static int split_merge(struct split *sp)
{
	int ready = sp->nvals;
	for (size_t i = 0; i < sp->n_nc; i++) {
		struct pollfd *f = &sp->fds[sp->nc_at[i]];
		f->revents = nc_revents(f->events, sp->nc[i].revents);
		ready += f->revents != 0;
	}
	for (size_t i = 0; i < sp->n_k; i++) {
		sp->fds[sp->k_at[i]].revents = sp->k[i].revents;
		ready += sp->k[i].revents != 0;
	}
	return ready;
}

static int kernel_look(struct split *sp, size_t count, int ms,
                       const sigset_t *mask)
{
	struct timespec ts = {.tv_sec = ms / 1000,
	                      .tv_nsec = (long)(ms % 1000) * 1000000};
	return nci_r()->ppoll(sp->k, count, ms < 0 ? NULL : &ts, mask);
}

/* The loop of the file's comment, once the set is split. */
static int wait_split(struct split *sp, struct nc_client *c, int64_t deadline,
                      const sigset_t *mask)
{
	for (;;) {
		int ready = nc_poll(c, sp->nc, sp->n_nc, 0);
		if (ready < 0)
			return -1;
		bool expired = deadline >= 0 && now_ms() >= deadline;
		if (ready > 0 || sp->nvals > 0 || expired) {
			if (sp->n_k > 0 &&
			    kernel_look(sp, sp->n_k, 0, mask) < 0)
				return -1;
			return split_merge(sp);
		}
		sp->k[sp->n_k] =
		    (struct pollfd){.fd = nc_client_fd(c), .events = POLLIN};
		int n = kernel_look(sp, sp->n_k + 1,
		                    ms_left(deadline, NCI_WAIT_CAP_MS), mask);
		if (n < 0)
			return -1;
		bool bell = sp->k[sp->n_k].revents != 0;
		if (n > (bell ? 1 : 0)) {
			if (nc_poll(c, sp->nc, sp->n_nc, 0) < 0)
				return -1;
			return split_merge(sp);
		}
	}
}

static int64_t deadline_of(const struct timespec *ts)
{
	if (ts == NULL)
		return -1;
	return now_ms() + (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

int nci_poll_mixed(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                   const sigset_t *sigmask)
{
	struct split sp;
	if (split_make(&sp, fds, n) != 0)
		return -1;
	int r;
	struct nc_client *c = sp.n_nc > 0 ? nci_client() : NULL;
	if (sp.n_nc > 0 && c == NULL) {
		r = -1;
	} else if (sp.n_nc == 0) {
		/* Only stale sockets (POLLNVAL) and kernel descriptors. */
		r = sp.n_k > 0 ? kernel_look(&sp, sp.n_k, 0, sigmask) : 0;
		if (r >= 0)
			r = split_merge(&sp);
	} else if (sp.n_k == 0 && sp.nvals == 0 && sigmask == NULL) {
		/* netcore only: libclient's own blocking wait. */
		int64_t d = deadline_of(ts);
		r = nc_poll(c, sp.nc, sp.n_nc, ms_left(d, -1));
		if (r >= 0)
			r = split_merge(&sp);
	} else {
		r = wait_split(&sp, c, deadline_of(ts), sigmask);
	}
	int saved = errno;
	split_free(&sp);
	errno = saved;
	return r;
}

static bool any_ours(const struct pollfd *fds, nfds_t n)
{
	if (fds == NULL)
		return false; /* poll(NULL, 0, ms) is a sleep */
	for (nfds_t i = 0; i < n; i++)
		if (nci_is_ours(fds[i].fd))
			return true;
	return false;
}

/* ----------------------------------------------------------- poll */

/* glibc declares poll and ppoll with access(write_only) on the array,
 * although they read `events`; our definitions inherit that and gcc then
 * thinks reading it reads uninitialised memory. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (!any_ours(fds, n))
		return nci_r()->poll(fds, n, timeout);
	struct timespec ts = {.tv_sec = timeout / 1000,
	                      .tv_nsec = (long)(timeout % 1000) * 1000000};
	return nci_poll_mixed(fds, n, timeout < 0 ? NULL : &ts, NULL);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                 const sigset_t *mask)
{
	if (!any_ours(fds, n))
		return nci_r()->ppoll(fds, n, ts, mask);
	return nci_poll_mixed(fds, n, ts, mask);
}
#pragma GCC diagnostic pop

extern void __chk_fail(void) __attribute__((noreturn));

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len);
EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t len)
{
	if (len / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                       const sigset_t *mask, size_t len);
EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                       const sigset_t *mask, size_t len)
{
	if (len / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, ts, mask);
}

/* ---------------------------------------------------------- select */

#define POLLIN_SET  (POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR)
#define POLLOUT_SET (POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR)
#define POLLEX_SET  (POLLPRI)

static bool in_set(const fd_set *s, int fd)
{
	return s != NULL && FD_ISSET(fd, s);
}

/* The sets as a pollfd array (NULL if no descriptor of ours is named);
 * *count its length. */
static struct pollfd *sets_to_poll(int nfds, fd_set *r, fd_set *w, fd_set *e,
                                   nfds_t *count, bool *ours)
{
	struct pollfd *fds =
	    calloc((size_t)(nfds > 0 ? nfds : 1), sizeof(*fds));
	*count = 0;
	*ours = false;
	if (fds == NULL)
		return NULL;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = (in_set(r, fd) ? POLLIN : 0) |
		           (in_set(w, fd) ? POLLOUT : 0) |
		           (in_set(e, fd) ? POLLPRI : 0);
		if (ev == 0)
			continue;
		*ours = *ours || nci_is_ours(fd);
		fds[(*count)++] = (struct pollfd){.fd = fd, .events = ev};
	}
	return fds;
}

static int poll_to_sets(struct pollfd *fds, nfds_t count, fd_set *r, fd_set *w,
                        fd_set *e)
{
	int bits = 0;
	for (nfds_t i = 0; i < count; i++)
		if (fds[i].revents & POLLNVAL)
			return nci_fail(EBADF);
	for (nfds_t i = 0; i < count; i++) {
		struct pollfd *f = &fds[i];
		bool rd = in_set(r, f->fd) && (f->revents & POLLIN_SET);
		bool wr = in_set(w, f->fd) && (f->revents & POLLOUT_SET);
		bool ex = in_set(e, f->fd) && (f->revents & POLLEX_SET);
		if (r != NULL && !rd)
			FD_CLR(f->fd, r);
		if (w != NULL && !wr)
			FD_CLR(f->fd, w);
		if (e != NULL && !ex)
			FD_CLR(f->fd, e);
		bits += rd + wr + ex;
	}
	return bits;
}

/* select and pselect once the sets name one of ours. */
static int select_mixed(struct pollfd *fds, nfds_t count, fd_set *r, fd_set *w,
                        fd_set *e, const struct timespec *ts,
                        const sigset_t *mask)
{
	int n = nci_poll_mixed(fds, count, ts, mask);
	if (n < 0)
		return -1;
	return poll_to_sets(fds, count, r, w, e);
}

/* select is pselect without a mask, plus writing the remaining time back
 * into tv as Linux's select(2) does. */
EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	struct timespec ts, *tp = NULL;
	if (tv != NULL) {
		ts = (struct timespec){tv->tv_sec, tv->tv_usec * 1000};
		tp = &ts;
	}
	int64_t d = deadline_of(tp);
	int n = pselect(nfds, r, w, e, tp, NULL);
	if (tv != NULL) {
		int left = ms_left(d, -1);
		tv->tv_sec = left / 1000;
		tv->tv_usec = (left % 1000) * 1000;
	}
	return n;
}

static int real_pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
                        const struct timespec *ts, const sigset_t *mask)
{
	/* The kernel's pselect6 takes the mask with its size. */
	struct {
		const sigset_t *set;
		size_t size;
	} m = {mask, _NSIG / 8};
	struct timespec copy, *tp = NULL;
	if (ts != NULL) {
		copy = *ts;
		tp = &copy;
	}
	return (int)syscall(SYS_pselect6, nfds, r, w, e, tp,
	                    mask != NULL ? &m : NULL);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e,
                   const struct timespec *ts, const sigset_t *mask)
{
	nfds_t count;
	bool ours;
	struct pollfd *fds = sets_to_poll(nfds, r, w, e, &count, &ours);
	if (fds == NULL || !ours) {
		free(fds);
		return real_pselect(nfds, r, w, e, ts, mask);
	}
	int n = select_mixed(fds, count, r, w, e, ts, mask);
	int saved = errno;
	free(fds);
	errno = saved;
	return n;
}
